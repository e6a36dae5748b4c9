package parkflags

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/redispark"
	"github.com/callpark/callpark/sipadapter"
)

// ClusterFlags are the flags of CLUSTER.md: several park servers sharing
// one lot on Redis.
type ClusterFlags struct {
	Redis, Name, Node, Advertise, CrossNode string
	Lease                                   time.Duration
	Secure                                  SecureFlags // secure.go
}

// RegisterCluster defines the cluster flags on fs.
func RegisterCluster(fs *flag.FlagSet) *ClusterFlags {
	c := new(ClusterFlags)
	fs.StringVar(&c.Redis, "redis", "", "share the lot with every node using this Redis `URL` (redis://host:port/db, rediss://user:password@host:port/db for TLS and an ACL user, or unix:///path) and the same -cluster; empty: in memory, one node")
	fs.StringVar(&c.Name, "cluster", redisorbit.DefaultCluster, "the lot's `name` in Redis (its key prefix)")
	fs.StringVar(&c.Node, "node", "", "this node's `name`, unique among live nodes (default: host name and listen port)")
	fs.StringVar(&c.Advertise, "advertise", "", "the SIP `host:port` other nodes forward retrieves to (default: the -listen address)")
	fs.DurationVar(&c.Lease, "lease", redisorbit.DefaultLease, "how long a silent node keeps its orbits: 2s to 60s")
	fs.StringVar(&c.CrossNode, "cross-node", "proxy", "how a retrieve for another node's orbit is routed: proxy (forward the INVITE) or redirect (302)")
	c.Secure.register(fs)
	return c
}

// ClusterSettings are the checked cluster flags.
type ClusterSettings struct {
	Redis     *redis.Options // nil: no cluster
	URL       string         // -redis, its password redacted
	Name      string
	Node      string
	Advertise string
	Lease     time.Duration
	CrossNode sipadapter.CrossNode
	// ClusterKey seals the handoffs in Redis (-cluster-key); nil: none.
	ClusterKey []byte
}

// Enabled reports whether -redis was given.
func (s ClusterSettings) Enabled() bool { return s.Redis != nil }

// Resolve checks the cluster flags; listen is the program's SIP address.
func (c *ClusterFlags) Resolve(listen netip.AddrPort) (ClusterSettings, error) {
	s := ClusterSettings{Name: c.Name, Lease: c.Lease, URL: redactURL(c.Redis)}
	var err error
	if s.CrossNode, err = sipadapter.ParseCrossNode(c.CrossNode); err != nil {
		return s, fmt.Errorf("-cross-node %q: want proxy or redirect", c.CrossNode)
	}
	if c.Redis == "" {
		if names, set := c.Secure.any(); set {
			return s, fmt.Errorf("%s: set -redis too, the cluster's Redis", names)
		}
		return s, nil
	}
	if s.Redis, err = redis.ParseURL(c.Redis); err != nil {
		return s, fmt.Errorf("-redis %q: want redis://host:port/db, rediss://user:password@host:port/db or unix:///path: %v", s.URL, err)
	}
	if s.ClusterKey, err = c.Secure.secure(s.Redis, c.Redis); err != nil {
		return s, err
	}
	// A silent Redis (paused, cut off) must cost a park a 503 within a
	// second, not the client's 3 s read timeout times its retries: every
	// request honours its context, and the timeouts the URL does not set
	// are a second.
	s.Redis.ContextTimeoutEnabled = true
	s.Redis.DialTimeout = cmp.Or(s.Redis.DialTimeout, time.Second)
	s.Redis.ReadTimeout = cmp.Or(s.Redis.ReadTimeout, time.Second)
	s.Redis.WriteTimeout = cmp.Or(s.Redis.WriteTimeout, time.Second)
	s.Redis.PoolTimeout = cmp.Or(s.Redis.PoolTimeout, time.Second)
	if c.Lease < redisorbit.MinLease || c.Lease > redisorbit.MaxLease {
		return s, fmt.Errorf("-lease %v: must be between %v and %v", c.Lease, redisorbit.MinLease, redisorbit.MaxLease)
	}
	s.Node = c.Node
	if s.Node == "" {
		host, _ := os.Hostname()
		s.Node = cmp.Or(host, "node") + ":" + strconv.Itoa(int(listen.Port()))
	}
	s.Advertise = c.Advertise
	switch {
	case s.Advertise != "":
		if _, port, err := net.SplitHostPort(s.Advertise); err != nil || port == "" || port == "0" {
			return s, fmt.Errorf("-advertise %q: want host:port", s.Advertise)
		}
	case listen.Addr().IsUnspecified():
		return s, fmt.Errorf("-advertise: -listen %s is every address, so name the host:port other nodes reach", listen)
	case listen.Port() != 0:
		s.Advertise = listen.String()
	}
	// Else the port is picked when the program listens: Cluster.Listening.
	return s, nil
}

// Print writes the cluster settings for -check.
func (s ClusterSettings) Print(w io.Writer) {
	if !s.Enabled() {
		fmt.Fprintf(w, "redis       (none: the lot is in memory, one node)\n")
		return
	}
	fmt.Fprintf(w, "redis       %s\n", s.URL)
	fmt.Fprintf(w, "cluster     %s\n", s.Name)
	fmt.Fprintf(w, "node        %s\n", s.Node)
	fmt.Fprintf(w, "advertise   %s\n", cmp.Or(s.Advertise, "(the address picked when listening)"))
	fmt.Fprintf(w, "lease       %v\n", s.Lease)
	fmt.Fprintf(w, "cross-node  %s\n", s.CrossNode)
	if s.Redis.TLSConfig != nil {
		roots, mutual := "the system's roots", ""
		if s.Redis.TLSConfig.RootCAs != nil {
			roots = "-redis-ca"
		}
		if len(s.Redis.TLSConfig.Certificates) > 0 {
			mutual = ", a client certificate"
		}
		fmt.Fprintf(w, "redis-tls   on (the server's certificate checked against %s%s)\n", roots, mutual)
	}
	sealed := "off (handoffs in Redis in the clear; no SRTP key is ever written)"
	if s.ClusterKey != nil {
		sealed = "on (handoffs sealed with -cluster-key)"
	}
	fmt.Fprintf(w, "cluster-key %s\n", sealed)
}

// orbitConfig is the allocator's configuration for these settings.
func (s ClusterSettings) orbitConfig(client *redis.Client, orbits *orbit.Table, policy orbit.Policy, logger *slog.Logger) redisorbit.Config {
	return redisorbit.Config{
		Client: client, Cluster: s.Name, Node: s.Node, Advertise: s.Advertise,
		Lease: s.Lease, Ranges: orbits.Ranges(""), Policy: policy, Logger: logger,
	}
}

// Check reaches Redis and compares the cluster's orbit table with ours,
// joining nothing: what -check adds in a cluster.
func (s ClusterSettings) Check(ctx context.Context, orbits *orbit.Table, policy orbit.Policy) error {
	client := redis.NewClient(s.Redis)
	defer client.Close()
	return joinError(s.URL, redisorbit.CheckTable(ctx, s.orbitConfig(client, orbits, policy, nil)))
}

// Cluster is a node's membership of a shared lot: its allocator and
// directory, for park.Config.Orbits and park.Config.Cluster.
type Cluster struct {
	Orbits     *redisorbit.Allocator
	Directory  *redispark.Directory
	client     *redis.Client
	lot        atomic.Pointer[park.Lot]
	advertised bool // -advertise, or -listen with a port: known before listening

}

// Join connects to Redis and joins the lot. A node given other orbits or
// another policy than the cluster's gets an error wrapping
// redisorbit.ErrMismatch (the programs exit 2).
func (s ClusterSettings) Join(ctx context.Context, orbits *orbit.Table, policy orbit.Policy, logger *slog.Logger) (*Cluster, error) {
	redis.SetLogger(redisLog{logger}) // go-redis's own pool messages, into the program's log
	c := &Cluster{client: redis.NewClient(s.Redis), advertised: s.Advertise != ""}
	cfg := s.orbitConfig(c.client, orbits, policy, logger.With("component", "cluster"))
	cfg.OnLost = func(lost []orbit.Orbit) {
		lot := c.lot.Load()
		if lot == nil {
			return
		}
		for _, o := range lost {
			// Taken over by another node (forgotten here), or back to
			// the parker: its orbit may be another call's now.
			_ = lot.Disown(o)
		}
	}
	var err error
	if c.Orbits, err = redisorbit.New(ctx, cfg); err != nil {
		_ = c.client.Close()
		return nil, joinError(s.URL, err)
	}
	if c.Directory, err = redispark.New(redispark.Config{Orbits: c.Orbits, Logger: cfg.Logger, HandoffKey: s.ClusterKey}); err != nil {
		_ = c.Orbits.Close(ctx)
		_ = c.client.Close()
		return nil, err
	}
	return c, nil
}

// Listening advertises the address the program listens on, when no
// -advertise was given and -listen asked for any free port.
func (c *Cluster) Listening(addr netip.AddrPort) error {
	if c.advertised {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Orbits.SetAdvertise(ctx, addr.String())
}

// TrustForwarded reports whether src's IP is one a live node of the cluster
// advertises (redisorbit.Allocator.RecentPeers), for
// sipadapter.EngineConfig.TrustForwarded. An -advertise given as a host
// name is not trusted: name nodes by IP address.
func (c *Cluster) TrustForwarded(src netip.AddrPort) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, p := range c.Orbits.RecentPeers(ctx) {
		if ap, err := netip.ParseAddrPort(p.Advertise); err == nil && ap.Addr().Unmap() == src.Addr().Unmap() {
			return true
		}
	}
	return false
}

// Apply puts the cluster into a lot's configuration.
func (c *Cluster) Apply(pc *park.Config) {
	pc.Orbits, pc.Cluster = c.Orbits, c.Directory
}

// Bind names the lot whose calls are recalled when the node loses their
// orbits.
func (c *Cluster) Bind(lot *park.Lot) { c.lot.Store(lot) }

// Close leaves the cluster: call it once the lot is empty (after the
// program's drain), so nothing it still holds is freed under a call.
func (c *Cluster) Close(ctx context.Context) error {
	_ = c.Directory.Close()
	err := c.Orbits.Close(ctx)
	_ = c.client.Close()
	return err
}

// redisLog sends go-redis's messages to the program's log, at Debug: they
// repeat what the cluster logs once, in its own words.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// RunCheck is -check's part for a cluster: Redis answers, and its orbit
// table is ours. It returns the exit status: 2 (naming both tables) when
// it is not, 1 when Redis cannot be reached.
func (s ClusterSettings) RunCheck(prog string, orbits *orbit.Table, policy orbit.Policy, stdout, stderr io.Writer) int {
	if !s.Enabled() {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Check(ctx, orbits, policy); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		if errors.Is(err, redisorbit.ErrMismatch) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "cluster-table matches Redis (or is not stored yet)\n")
	return 0
}

// JoinOrExit joins the shared lot when -redis is set and puts it into pc,
// or returns the exit status: 2 for a table that is not the cluster's, 1
// when Redis cannot be reached. Without -redis it returns nil, 0.
func (s ClusterSettings) JoinOrExit(prog string, orbits *orbit.Table, policy orbit.Policy, pc *park.Config, logger *slog.Logger, stderr io.Writer) (*Cluster, int) {
	if !s.Enabled() {
		return nil, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.Join(ctx, orbits, policy, logger)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		if errors.Is(err, redisorbit.ErrMismatch) {
			return nil, 2
		}
		return nil, 1
	}
	c.Apply(pc)
	logger.Info("joined the cluster", "cluster", s.Name, "node", s.Node, "advertise", s.Advertise, "redis", s.URL, "sealed", s.ClusterKey != nil)
	return c, 0
}

// Leave leaves the cluster once the lot is empty, logging a failure: what
// the node held is then freed when its lease runs out.
func (c *Cluster) Leave(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Close(ctx); err != nil {
		logger.Warn("leaving the cluster failed; the others free this node's orbits when its lease runs out", "err", err)
	}
}
