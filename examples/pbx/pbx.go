package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/siptransport"
	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// Config is what the PBX is told by its flags. The zero value is the
// example's default: 127.0.0.1:5060, extensions 100-199 with any password,
// park extension 700, orbits 701-799 and Lync Server 2013's park settings.
type Config struct {
	// Listen is the address for SIP over UDP and TCP; port 0 picks one.
	Listen string
	// SRTP is the policy for SRTP media (sipadapter.EngineConfig.SRTP);
	// the zero value answers SRTP offers with SRTP and plain ones plain.
	SRTP media.SRTPPolicy
	// TLSListen, when set, serves SIP over TLS too, with TLS (as
	// sipadapter.Config.TLSListen): phones registered over TLS are called
	// over TLS, and their park dialogs stay on it.
	TLSListen string
	TLS       *tls.Config
	// Users is the extension directory; nil means OpenUsers().
	Users *Users
	// ParkExtension parks the call it is transferred (or dialled) to.
	ParkExtension string
	// Orbits are the orbit ranges; nil means park.DefaultOrbits.
	Orbits *orbit.Table
	// Policy chooses free orbits.
	Policy orbit.Policy
	// Park is the lot's configuration. Its Dialer and Orbits must be nil:
	// the PBX rings recalls to registered phones itself, and allocates from
	// Orbits. FallbackURI may name an extension of this PBX
	// (sip:150@<listen address>) or any SIP URI.
	Park park.Config
	// RingTimeout bounds how long a call to an extension rings before the
	// caller hears 480; zero means 30 s.
	RingTimeout time.Duration
	// MediaIP is written into SDP; zero means the listen IP.
	MediaIP netip.Addr
	// RTPPortMin and RTPPortMax bound the RTP ports, one per call leg.
	RTPPortMin, RTPPortMax int
	// Logger gets a line per registration, call, park and recall.
	Logger *slog.Logger
	// Announcements are what the PBX says to whom
	// (sipadapter.EngineConfig.Announcements).
	Announcements sipadapter.Announcements
	// Notify are sip: URIs told of parks by MESSAGE
	// (sipadapter.EngineConfig.Notify).
	Notify []string
	// Paging is whom to page on each park (sipadapter.EngineConfig.Paging).
	Paging sipadapter.Paging
	// CrossNode is how a retrieve of a call parked on another node of the
	// lot's cluster (Park.Cluster, -redis) reaches it.
	CrossNode sipadapter.CrossNode
	// TrustForwarded tells a retrieve forwarded by another node of the
	// cluster, which authenticated the caller, from one a phone sent: see
	// sipadapter.EngineConfig.TrustForwarded.
	TrustForwarded func(src netip.AddrPort) bool
}

// pbxRealm is the digest realm phones are challenged in.
const pbxRealm = "callpark-pbx"

// DefaultRingTimeout is how long a call to an extension rings.
const DefaultRingTimeout = 30 * time.Second

// PBX is a registrar and back-to-back user agent with call park built in.
// Every call between two phones is two SIP dialogs (legs) whose audio runs
// through the PBX, so a leg can be taken out of its call and parked, and
// later bridged with whoever retrieves it or answers its recall. The legs
// and every park flow are the park engine's (sipadapter.Engine), the same
// one the park server runs; the PBX adds what is its own: who may call
// (digest auth), where an extension rings (the registrar), and calls
// between extensions.
type PBX struct {
	cfg     Config
	log     *slog.Logger
	users   *Users
	auth    *Authenticator
	reg     *Registrar
	table   *orbit.Table
	lot     *park.Lot
	metrics *sipadapter.Metrics
	ports   *sipadapter.PortPool
	engine  *sipadapter.Engine
	addr    netip.AddrPort
	mediaIP netip.Addr

	mu      sync.Mutex
	closing bool
	stack   *siptransport.Stack // UA, server, client: built by Listen
}

// NewPBX validates cfg and builds the PBX and its lot; Listen starts it.
func NewPBX(cfg Config) (*PBX, error) {
	if cfg.Park.Dialer != nil {
		return nil, errors.New("pbx: Config.Park.Dialer must be nil: the PBX rings recalls itself")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:5060"
	}
	if cfg.ParkExtension == "" {
		cfg.ParkExtension = sipadapter.DefaultParkExtension
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = DefaultRingTimeout
	}
	if cfg.RTPPortMin == 0 && cfg.RTPPortMax == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = sipadapter.DefaultRTPPortMin, sipadapter.DefaultRTPPortMax
	}
	if cfg.Users == nil {
		cfg.Users = OpenUsers()
	}
	listen, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("pbx: Config.Listen %q: want IP:port: %w", cfg.Listen, err)
	}
	p := &PBX{cfg: cfg, log: cfg.Logger, users: cfg.Users, table: cfg.Orbits}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.table == nil {
		if p.table, err = orbit.ParseTable(park.DefaultOrbits); err != nil {
			return nil, err
		}
	}
	if p.users.Exists(cfg.ParkExtension) || p.isOrbit(cfg.ParkExtension) {
		return nil, fmt.Errorf("pbx: Config.ParkExtension %q is also an extension or an orbit", cfg.ParkExtension)
	}
	// An extension inside an orbit range could never be called: dialling
	// it would retrieve.
	for _, r := range p.table.Ranges("") {
		for i := range r.Len() {
			if o := r.At(i); p.users.Exists(string(o)) {
				return nil, fmt.Errorf("pbx: Config.Orbits: range %s holds the extension %s", r, o)
			}
		}
	}
	p.mediaIP = cfg.MediaIP
	if !p.mediaIP.IsValid() {
		p.mediaIP = listen.Addr()
	}
	if p.mediaIP.IsUnspecified() {
		return nil, fmt.Errorf("pbx: Config.MediaIP: listening on %s, so name the address phones reach for RTP", listen.Addr())
	}
	if p.ports, err = sipadapter.NewPortPool(listen.Addr(), cfg.RTPPortMin, cfg.RTPPortMax); err != nil {
		return nil, err
	}
	p.auth = NewAuthenticator(p.users, pbxRealm, p.log)
	p.reg = NewRegistrar(p.users, p.auth, RegistrarOptions{Logger: p.log})

	pc := cfg.Park
	// Recalls ring, and calls of other nodes are taken over, through the
	// engine, which Listen builds once the PBX has an address; before that
	// there is nothing to ring with, and a call to take over is left to
	// another node.
	pc.Dialer = park.DialerFunc(func(ctx context.Context, req park.DialRequest) (park.Answered, error) {
		engine := p.listening()
		if engine == nil {
			return nil, errors.New("pbx: not listening")
		}
		return engine.Dial(ctx, req)
	})
	pc.Adopter = park.AdopterFunc(func(ctx context.Context, c *park.Call) (park.Leg, error) {
		engine := p.listening()
		if engine == nil {
			return nil, fmt.Errorf("pbx: not listening: %w", park.ErrClosed)
		}
		return engine.Adopt(ctx, c)
	})
	if pc.Logger == nil {
		pc.Logger = p.log
	}
	if pc.Orbits == nil { // else shared with a cluster (-redis)
		if pc.Orbits, err = orbit.NewMemoryAllocatorFromTable(p.table, "", orbit.MemoryOptions{Policy: cfg.Policy}); err != nil {
			return nil, err
		}
	}
	if p.lot, err = park.NewLot(pc); err != nil {
		return nil, err
	}
	p.metrics = sipadapter.NewMetrics(p.lot)
	return p, nil
}

// Lot is the PBX's park lot: its calls, its events.
func (p *PBX) Lot() *park.Lot { return p.lot }

// Metrics are the PBX's park metrics, for Prometheus (-http).
func (p *PBX) Metrics() *sipadapter.Metrics { return p.metrics }

// Registrar is the PBX's registrar: who is reachable where.
func (p *PBX) Registrar() *Registrar { return p.reg }

// Addr is where the PBX listens, once Listen has returned.
func (p *PBX) Addr() netip.AddrPort { return p.addr }

// URI makes sip:user@<PBX address>: an extension's address of record, the
// park extension, an orbit.
func (p *PBX) URI(user string) string {
	return "sip:" + sipadapter.EscapeUser(user) + "@" + p.addr.String()
}

func (p *PBX) isOrbit(user string) bool {
	if _, err := orbit.ParseOrbit(user); err != nil {
		return false
	}
	pool, ok := p.table.Owner(orbit.Orbit(user))
	return ok && pool == ""
}

// Reconfigure reloads the park's settings and orbit ranges while calls
// are parked (sipadapter.Engine.Reconfigure), once the PBX listens. New
// ranges may not hold an extension: dialling it would retrieve.
func (p *PBX) Reconfigure(pc park.Config, orbits *orbit.Table) error {
	if orbits != nil {
		for _, r := range orbits.Ranges("") {
			for i := range r.Len() {
				if o := r.At(i); p.users.Exists(string(o)) {
					return fmt.Errorf("orbits: range %s holds the extension %s", r, o)
				}
			}
		}
	}
	e := p.listening()
	if e == nil {
		return errors.New("pbx: reload before Listen")
	}
	return e.Reconfigure(pc, orbits)
}

// listening returns the engine once Listen has built it, nil before.
func (p *PBX) listening() *sipadapter.Engine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.engine
}

// Listen binds UDP and TCP and serves until Shutdown; ctx bounds the
// setup only. Listening twice, or after Shutdown, is an error.
func (p *PBX) Listen(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closing:
		return sipadapter.ErrServerClosed
	case p.stack != nil:
		return sipadapter.ErrListening
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	want, _ := netip.ParseAddrPort(p.cfg.Listen)
	opts := siptransport.Options{Addr: want, UserAgent: "callpark-pbx", Logger: p.log.With("component", "sip")}
	if p.cfg.TLSListen != "" {
		var err error
		if opts.TLSAddr, err = netip.ParseAddrPort(p.cfg.TLSListen); err != nil {
			return fmt.Errorf("pbx: Config.TLSListen %q: want IP:port", p.cfg.TLSListen)
		}
		opts.TLS = p.cfg.TLS
	}
	stack, err := siptransport.Listen(opts)
	if err != nil {
		return fmt.Errorf("pbx: %w", err)
	}
	p.addr = stack.Addr
	engine, err := sipadapter.NewEngine(sipadapter.EngineConfig{
		Lot:    p.lot,
		Client: stack.Client,
		Addr:   p.addr,
		// Delayed offer stays off: a call between extensions offers the
		// caller's codec to the callee.
		Ports:          p.ports,
		MediaIP:        p.mediaIP,
		ContactUser:    "pbx",
		ParkExtension:  p.cfg.ParkExtension,
		Orbits:         p.table,
		RingTime:       p.cfg.RingTimeout,
		Logger:         p.log,
		Admit:          p.admit,
		Calls:          p.call,
		Locate:         p.locate,
		Allow:          []string{"REGISTER", "NOTIFY"},
		CrossNode:      p.cfg.CrossNode,
		TrustForwarded: p.cfg.TrustForwarded,
		Announcements:  p.cfg.Announcements,
		Notify:         p.cfg.Notify,
		Paging:         p.cfg.Paging,
		SRTP:           p.cfg.SRTP,
		Metrics:        p.metrics,
		TLSAddr:        stack.TLSAddr,
	})
	if err != nil {
		stack.Close()
		return err
	}
	srv := stack.Server
	engine.Handle(srv)
	srv.OnSubscribe(engine.Tracked(p.onSubscribe))
	srv.OnRegister(p.reg.ServeRegister)
	srv.OnNotify(p.onNotify)
	p.stack, p.engine = stack, engine
	if err := stack.Serve(); err != nil {
		return err
	}
	attrs := []any{"addr", p.addr, "users", p.users.String(), "park_extension", p.cfg.ParkExtension, "orbits", p.table.String()}
	if stack.TLSAddr.IsValid() {
		attrs = append(attrs, "tls", stack.TLSAddr)
	}
	p.log.Info("pbx listening", attrs...)
	return nil
}

// Shutdown drains the PBX (sipadapter.Engine.Shutdown): new calls get 503,
// every parked call is recalled at once, and the calls still connected go
// on until their parties hang up or ctx ends, when they get BYE. Then the
// PBX stops listening. Calling it again is harmless.
func (p *PBX) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closing = true // new calls get 503 from here on
	engine, stack := p.engine, p.stack
	p.mu.Unlock()
	if engine == nil {
		return p.lot.Shutdown(ctx)
	}
	err := engine.Shutdown(ctx)
	stack.Close()
	p.ports.Close() // the RTP sockets kept between calls
	return err
}

// onNotify takes NOTIFYs phones send for REFERs of their own; the PBX never
// refers a phone, so it just acknowledges them.
func (p *PBX) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	sipadapter.Reply(p.log, req, tx, sip.StatusOK, "OK")
}

// onSubscribe serves BLF on orbits and on the park extension, with the
// park server's own code; phones of a PBX that demands passwords must
// authenticate first, since the NOTIFYs name who is parked.
func (p *PBX) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		if _, ok := p.auth.Authenticate(req, tx); !ok {
			return
		}
	}
	p.engine.ServeSubscribe(req, tx)
}
