package parkflags

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/parkhttp"
)

// HTTPFlags are the operator's view: metrics, the admin API and the live
// page on one listener (docs/OPERATOR.md).
type HTTPFlags struct {
	Addr, Token, TokenFile string
}

// RegisterHTTP defines -http, -http-token and -http-token-file on fs.
func RegisterHTTP(fs *flag.FlagSet) *HTTPFlags {
	f := new(HTTPFlags)
	fs.StringVar(&f.Addr, "http", "", "serve the operator's view on this `address` (e.g. 127.0.0.1:8080): Prometheus metrics at /metrics, the admin API at /api/, the live page at /; over HTTPS with -tls-cert when -tls-listen is set; off when empty")
	fs.StringVar(&f.Token, "http-token", "", "bearer `token` every -http request must carry (Authorization: Bearer, or ?access_token=); then any address is served; empty: loopback clients only")
	fs.StringVar(&f.TokenFile, "http-token-file", "", "read -http-token from this `file` (its first line), so the token is not on the command line")
	return f
}

// HTTPSettings are the checked -http flags.
type HTTPSettings struct {
	Addr  string // empty: off
	Token string
}

// Resolve checks the -http flags.
func (f *HTTPFlags) Resolve() (HTTPSettings, error) {
	s := HTTPSettings{Addr: f.Addr, Token: f.Token}
	if f.TokenFile != "" {
		if f.Token != "" {
			return s, errors.New("-http-token-file: give the token once, in -http-token or in the file")
		}
		b, err := os.ReadFile(f.TokenFile)
		if err != nil {
			return s, fmt.Errorf("-http-token-file: %w", err)
		}
		s.Token, _, _ = strings.Cut(string(b), "\n")
		if s.Token = strings.TrimSpace(s.Token); s.Token == "" {
			return s, fmt.Errorf("-http-token-file %s: the first line is empty", f.TokenFile)
		}
	}
	if s.Addr == "" {
		if s.Token != "" {
			return s, errors.New("-http-token: set -http too, the address to serve on")
		}
		return s, nil
	}
	if _, _, err := net.SplitHostPort(s.Addr); err != nil {
		return s, fmt.Errorf("-http %q: want host:port, such as 127.0.0.1:8080", s.Addr)
	}
	if strings.ContainsAny(s.Token, " \t\r\n") {
		return s, errors.New("-http-token: no white space in a bearer token")
	}
	return s, nil
}

// Operator is the operator's view being served.
type Operator struct {
	srv     *http.Server
	handler *parkhttp.Handler
	cluster *Cluster
	URL     string // http://host:port/ it serves on
}

// OperatorConfig is what the view shows.
type OperatorConfig struct {
	Lot *park.Lot
	// Metrics are the program's own (sipadapter's Server.Metrics or
	// Engine.Metrics); the Go runtime's, the process's and, in a cluster,
	// Redis's are added.
	Metrics prometheus.Collector
	// Cluster, when the lot is shared: its Redis metrics, and where the
	// other nodes' APIs are (a page's recall of their calls).
	Cluster *Cluster
	// Settings are the program's settings shown at /api/config.
	Settings func() map[string]any
	// TLS, when set (-tls-listen's), serves the view over HTTPS with the
	// same certificate; no client certificate is asked for.
	TLS *tls.Config
	// Reload re-reads -config (POST /api/reload); nil: none.
	Reload func(ctx context.Context) (any, error)
	Logger *slog.Logger
}

// Serve starts the operator's view; nil, nil when -http is off.
func (s HTTPSettings) Serve(c OperatorConfig) (*Operator, error) {
	if s.Addr == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts := parkhttp.Options{
		Token: s.Token, Settings: c.Settings, Reload: c.Reload, Logger: c.Logger,
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{c.Logger}}),
	}
	if c.Cluster != nil {
		reg.MustRegister(c.Cluster.Orbits.Collector(), c.Cluster.Directory.Collector())
		opts.Node = c.Cluster.Orbits.Node()
		opts.Peer = c.Cluster.PeerHTTP
	}
	ln, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return nil, fmt.Errorf("-http: %w", err)
	}
	o := &Operator{handler: parkhttp.NewHandler(c.Lot, opts), cluster: c.Cluster}
	o.srv = &http.Server{Handler: o.handler, ReadHeaderTimeout: 10 * time.Second}
	o.URL = "http://" + ln.Addr().String() + "/"
	if c.TLS != nil {
		conf := c.TLS.Clone()
		conf.ClientAuth, conf.ClientCAs = tls.NoClientCert, nil
		conf.NextProtos = []string{"h2", "http/1.1"}
		ln = tls.NewListener(ln, conf)
		o.URL = "https://" + ln.Addr().String() + "/"
	}
	go func() { _ = o.srv.Serve(ln) }()
	if ap, err := netip.ParseAddrPort(ln.Addr().String()); err == nil && !ap.Addr().IsLoopback() && s.Token == "" {
		c.Logger.Warn("the operator's view answers loopback clients only: set -http-token to serve others", "addr", ln.Addr().String())
	}
	if c.Cluster != nil {
		if err := c.Cluster.AdvertiseHTTP(o.URL); err != nil {
			c.Logger.Warn("advertising the operator's URL failed: other nodes' pages cannot recall or hang up this node's calls", "err", err)
		}
	}
	c.Logger.Info("operator's view", "url", o.URL)
	return o, nil
}

// Close stops serving, within ctx; nil does nothing.
func (o *Operator) Close(ctx context.Context) {
	if o == nil {
		return
	}
	_ = o.handler.Close() // ends the event streams, which Shutdown would wait for
	_ = o.srv.Shutdown(ctx)
	if o.cluster != nil {
		o.cluster.forgetHTTP()
	}
}

// slogPrinter is promhttp's error log, into the program's log.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Warn("metrics: " + fmt.Sprint(v...)) }

// httpKey is the hash of each node's operator URL in the cluster's Redis.
func (c *Cluster) httpKey() string { return redislot.Prefix(c.Orbits.Cluster()) + ":http" }

// AdvertiseHTTP records this node's operator URL for the other nodes.
func (c *Cluster) AdvertiseHTTP(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.client.HSet(ctx, c.httpKey(), c.Orbits.Node(), url).Err()
}

// PeerHTTP returns the operator URL another node advertised.
func (c *Cluster) PeerHTTP(ctx context.Context, node string) (string, error) {
	url, err := c.client.HGet(ctx, c.httpKey(), node).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("node %s serves no operator's view (-http)", node)
	}
	return url, err
}

// forgetHTTP takes this node's URL out of the cluster's list.
func (c *Cluster) forgetHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.client.HDel(ctx, c.httpKey(), c.Orbits.Node()).Err()
}

// Shown are the settings of the program that /api/config adds to the
// lot's; sip is the address it listens on.
func Shown(s Settings, cs ClusterSettings, sip netip.AddrPort) map[string]any {
	m := map[string]any{
		"park_extension":  s.ParkExtension,
		"sip":             sip.String(),
		"policy":          s.Policy.String(),
		"rtp_ports":       fmt.Sprintf("%d-%d", s.RTPPortMin, s.RTPPortMax),
		"announce_parker": s.Announcements.Parker,
		"announce_parked": s.Announcements.Parked,
		"page":            nonNil(s.Paging.URIs),
		"notify":          nonNil(s.Notify),
		"drain_seconds":   s.Drain.Seconds(),
	}
	if cs.Enabled() {
		m["cluster"] = cs.Name
		m["lease_seconds"] = cs.Lease.Seconds()
		m["cross_node"] = cs.CrossNode.String()
	}
	return m
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Print writes the -http settings for -check.
func (s HTTPSettings) Print(w io.Writer) {
	switch {
	case s.Addr == "":
		fmt.Fprintf(w, "http        (off)\n")
	case s.Token == "":
		fmt.Fprintf(w, "http        %s (loopback clients only)\n", s.Addr)
	default:
		fmt.Fprintf(w, "http        %s (bearer token)\n", s.Addr)
	}
}
