package sipadapter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo"

	"github.com/callpark/callpark/internal/siptransport"
	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// The contract's defaults (SIP-CONTRACT.md, "Flags and defaults").
const (
	DefaultListen        = "127.0.0.1:5060"
	DefaultParkExtension = "700"
	DefaultRTPPortMin    = 20000
	DefaultRTPPortMax    = 29999
)

// Config configures a park server. The zero value is the contract's default
// server: 127.0.0.1:5060, park extension 700, orbits 701-799, RTP ports
// 20000-29999, and Lync Server 2013's park settings.
type Config struct {
	// Lot, when set, is the host's own lot: the server parks into it. Its
	// Dialer decides how recalls ring; a host that wants them rung over SIP
	// by this server gives it a DialerFunc that calls Server.Dial (the
	// server does not exist yet when the lot is built: see
	// ExampleServer_hostLotAndUserAgent). Park must then be left zero.
	Lot *park.Lot
	// Park is the configuration of the lot the server builds when Lot is
	// nil. Its Dialer is the server's own (it rings recalls and the fallback
	// over SIP) and must be left nil; its Orbits, when nil, is built from
	// Orbits and Policy.
	Park park.Config
	// Orbits are the orbit ranges the server answers for; nil means the
	// lot's (park.Lot.Ranges), which for a lot the server builds are
	// park.DefaultOrbits. When given, its local pool ("") must hold exactly
	// the lot's ranges: a call parked where the server does not answer
	// could never be retrieved. Only the local pool is served.
	Orbits *orbit.Table
	// Policy chooses free orbits when Park.Orbits is nil.
	Policy orbit.Policy
	// ParkExtension is the Request-URI user that parks: "700" by default.
	ParkExtension string
	// UA is the sipgo user agent to serve with; nil means one of the
	// server's own. A UA passed in is not closed by Shutdown: it is the
	// host's. Shutdown leaves the server's address in its UDP connection
	// pool, on the closed listener, so that a request sent from that
	// address afterwards fails instead of making sipgo bind it anew.
	UA *sipgo.UserAgent
	// Listen is the address for SIP over UDP and TCP: DefaultListen when
	// empty. Port 0 picks a free port (tests); Addr tells which.
	Listen string
	// TLSListen, when set, is the address for SIP over TLS as well (port 0
	// picks one; TLSAddr tells which), served with TLS: its certificate
	// (Certificates, or GetCertificate to change it while running), and
	// for mutual TLS ClientAuth and ClientCAs, as Lync's Call Park Service
	// required of its peers. Recalls and the fallback to a sips: or
	// transport=tls URI are dialled over TLS with it too (RootCAs, nil:
	// the system's). Dialogs and subscriptions made over TLS stay on TLS.
	TLSListen string
	TLS       *tls.Config
	// MediaIP is the address written into SDP c= lines; zero means the
	// listen IP. RTP is bound on the listen IP, so behind a NAT MediaIP can
	// be the public address.
	MediaIP netip.Addr
	// RTPPortMin and RTPPortMax bound the RTP ports, one per call leg; zero
	// means 20000-29999.
	RTPPortMin, RTPPortMax int
	// SharedRTPPort answers every parked call with one RTP port, the first
	// free one of the range, instead of a port per leg (see
	// EngineConfig.SharedRTPPort): on Linux it is what lets the server play
	// music to thousands of parked calls on a couple of cores. Off by
	// default in the library, since it changes what a phone behind NAT
	// must do (docs/SIP-CONTRACT.md); examples/parkserver turns it on on
	// Linux.
	SharedRTPPort bool
	// Logger receives one line per park, retrieve, recall, fallback,
	// hang-up and refusal at Info, and SIP diagnostics at Debug; nil is
	// silent.
	Logger *slog.Logger
	// Limits bounds what one source address may hold or try: failed
	// retrieves (orbit guessing), dialogs and BLF subscriptions. The zero
	// value means the defaults (see Limits).
	Limits Limits
	// MaxMessageSize is the largest SIP message the server reads, in
	// bytes: DefaultMaxMessageSize when 0, at most 32,768 (sipgo reads a
	// UDP datagram into 32 KiB). A larger UDP datagram is dropped unread; a
	// larger message over TCP closes the connection, since nothing after
	// it can be framed. It applies to the server's own user agent; a UA
	// passed in keeps its parser's limit (sipgo.WithUserAgentParser).
	MaxMessageSize int
	// AcceptLateOffer takes INVITEs without SDP (delayed offer, RFC 3261
	// §13.2.1: CUCM trunks send them by default): the server's offer goes in
	// the 200, the ACK answers it, and an ACK without a usable answer ends
	// the call with a BYE. Off, such an INVITE gets 488 naming this
	// setting. It is off by default because an INVITE without SDP is also
	// what SIP scanners (svwar) send: turn it on for the trunks that need
	// it, with Park.AuthorizeRetrieve or Limits.Trusted narrowed to them.
	AcceptLateOffer bool
	// SRTP is the policy for SRTP media: EngineConfig.SRTP, default
	// media.SRTPOptional (SRTP offers get SRTP, plain ones plain RTP).
	SRTP media.SRTPPolicy
	// Announcements: what the server says, and to whom (EngineConfig's
	// fields of the same names).
	Announcements Announcements
	// Notify are sip: URIs told of every park and end of a park by
	// MESSAGE (EngineConfig.Notify).
	Notify []string
	// Paging is whom to page on each park (EngineConfig.Paging).
	Paging Paging
	// OnTelling is told of each announcement, page and MESSAGE
	// (EngineConfig.OnTelling).
	OnTelling func(Telling)
	// OutboundProxy, when set, is the sip: URI of the proxy (the PBX that
	// knows where the phones are) that recalls, the fallback and the
	// parker's MESSAGE go through; see EngineConfig.OutboundProxy.
	OutboundProxy string
	// CrossNode is how a retrieve for a call parked on another node of the
	// lot's cluster reaches it (-cross-node); see EngineConfig.CrossNode.
	CrossNode CrossNode
}

// DefaultMaxMessageSize is Config.MaxMessageSize's default: 16 KiB, four
// times a large INVITE with video and ICE candidates. A park server has no
// use for more, and a parser that accepts less cannot be made to hold much.
const DefaultMaxMessageSize = 16 << 10

// Server is a call park application server: a SIP listener bound to a park
// Engine. It answers INVITEs to the park extension (park) and to orbits
// (directed park and retrieve), keeps the media of every leg, and rings
// parkers and the fallback when the lot recalls a call.
type Server struct {
	cfg     Config
	lot     *park.Lot
	metrics *Metrics
	tlsWant netip.AddrPort // Config.TLSListen
	table   *orbit.Table
	log     *slog.Logger
	ports   *PortPool
	mediaIP netip.Addr

	mu     sync.Mutex
	state  serverState
	stack  *siptransport.Stack // built by Listen
	engine *Engine             // built by Listen, which learns the address its URIs name
	addr   netip.AddrPort
}

// serverState is where a Server is in its life: it listens at most once,
// and never after Shutdown, as http.Server.
type serverState int

const (
	idle serverState = iota
	listening
	shutDown
)

// ErrServerClosed is what Listen returns after Shutdown.
var ErrServerClosed = errors.New("sipadapter: server closed")

// ErrListening is what a second Listen returns.
var ErrListening = errors.New("sipadapter: server already listening")

// New validates cfg and builds a server; Listen starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Park.Dialer != nil {
		return nil, &ConfigError{"Config.Park.Dialer", "set", "must be nil: the server rings recalls itself"}
	}
	if cfg.Lot != nil && !isZeroParkConfig(cfg.Park) {
		return nil, &ConfigError{"Config.Park", "set", "must be zero when Config.Lot is given: the lot has its configuration"}
	}
	if cfg.ParkExtension == "" {
		cfg.ParkExtension = DefaultParkExtension
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.RTPPortMin == 0 && cfg.RTPPortMax == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = DefaultRTPPortMin, DefaultRTPPortMax
	}
	ap, err := netip.ParseAddrPort(cfg.Listen)
	if err != nil {
		return nil, &ConfigError{"Config.Listen", fmt.Sprintf("%q", cfg.Listen), "must be IP:port, such as 127.0.0.1:5060"}
	}
	var tlsWant netip.AddrPort
	if cfg.TLSListen != "" {
		if tlsWant, err = netip.ParseAddrPort(cfg.TLSListen); err != nil {
			return nil, &ConfigError{"Config.TLSListen", fmt.Sprintf("%q", cfg.TLSListen), "must be IP:port, such as 127.0.0.1:5061"}
		}
		if cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil) {
			return nil, &ConfigError{"Config.TLS", "no certificate", "must hold the server's certificate (Certificates or GetCertificate) when TLSListen is set"}
		}
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize < 1024 || cfg.MaxMessageSize > 32<<10 {
		return nil, &ConfigError{"Config.MaxMessageSize", cfg.MaxMessageSize, fmt.Sprintf("must be between 1024 and 32768 bytes, or 0 for %d", DefaultMaxMessageSize)}
	}
	if cfg.SRTP > media.SRTPOff {
		return nil, &ConfigError{"Config.SRTP", cfg.SRTP, "must be media.SRTPOptional, SRTPRequired or SRTPOff"}
	}
	if cfg.Limits, err = cfg.Limits.withDefaults(); err != nil {
		return nil, err
	}
	if err := checkNotify("Config.Notify", cfg.Notify); err != nil {
		return nil, err
	}
	if _, err := cfg.Paging.withDefaults("Config.Paging"); err != nil {
		return nil, err
	}
	if _, err := parseProxy(cfg.OutboundProxy, "Config.OutboundProxy"); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, table: cfg.Orbits, tlsWant: tlsWant}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.table == nil {
		if s.table, err = orbit.ParseTable(park.DefaultOrbits); err != nil {
			return nil, err
		}
	}
	if _, err := orbit.ParseOrbit(cfg.ParkExtension); err == nil && servesOrbit(s.table, orbit.Orbit(cfg.ParkExtension)) {
		return nil, &ConfigError{"Config.ParkExtension", fmt.Sprintf("%q", cfg.ParkExtension), "lies inside an orbit range; it must be outside every range"}
	}
	s.mediaIP = cfg.MediaIP
	if !s.mediaIP.IsValid() {
		s.mediaIP = ap.Addr()
	}
	if s.mediaIP.IsUnspecified() {
		// c=0.0.0.0 means "on hold" to a phone: it would never send audio.
		return nil, &ConfigError{"Config.MediaIP", "unset", fmt.Sprintf("listening on %s, so name the address phones reach for RTP", ap.Addr())}
	}
	if s.ports, err = NewPortPool(ap.Addr(), cfg.RTPPortMin, cfg.RTPPortMax); err != nil {
		return nil, err
	}
	s.lot = cfg.Lot
	if s.lot == nil {
		pc := cfg.Park
		pc.Dialer = park.DialerFunc(s.Dial)
		if pc.Adopter == nil {
			pc.Adopter = park.AdopterFunc(s.Adopt)
		}
		if pc.Logger == nil {
			pc.Logger = cfg.Logger
		}
		if pc.Orbits == nil {
			alloc, err := orbit.NewMemoryAllocatorFromTable(s.table, "", orbit.MemoryOptions{Policy: cfg.Policy})
			if err != nil {
				return nil, err
			}
			pc.Orbits = alloc
		}
		if s.lot, err = park.NewLot(pc); err != nil {
			return nil, err
		}
	}
	// The lot's own orbits, when it tells them, are the ones to answer
	// for: a mismatch would strand calls (parked where no retrieve looks).
	if s.table, err = servedOrbits(cfg.Orbits, s.lot, "Config.Orbits"); err != nil {
		return nil, err
	}
	if err := checkMusic(s.lot.Music()); err != nil {
		return nil, &ConfigError{"Config.Park.MusicOnHold", s.lot.Music().Name(), err.Error()}
	}
	s.metrics = NewMetrics(s.lot)
	return s, nil
}

// isZeroParkConfig reports whether c was left unset. park.Config holds
// interfaces whose dynamic values (a DialerFunc) panic under ==, so it is
// compared field by field.
func isZeroParkConfig(c park.Config) bool {
	return c.PickupTimeout == 0 && c.MaxPickupAttempts == 0 && c.RecallRingTime == 0 &&
		c.FallbackURI == "" && c.FallbackRingTime == 0 && !c.DisableMusicOnHold &&
		c.MusicOnHold == nil && c.Orbits == nil && c.Dialer == nil && c.Logger == nil &&
		c.AuthorizeRetrieve == nil && c.Cluster == nil
}

// Metrics returns the server's metrics, counting from New, to register in
// a Prometheus registry of your own.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Lot returns the server's lot, to observe its events or list its calls.
func (s *Server) Lot() *park.Lot { return s.lot }

// Addr returns the address the server listens on (UDP and TCP), once Listen
// has returned.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// TLSAddr returns the address SIP over TLS is served on once listening;
// zero without Config.TLSListen.
func (s *Server) TLSAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stack == nil {
		return netip.AddrPort{}
	}
	return s.stack.TLSAddr
}

// ParkURI returns the park extension's URI: sip:700@host:port.
func (s *Server) ParkURI() string { return s.uri(s.cfg.ParkExtension) }

// OrbitURI returns the URI of an orbit: sip:<orbit>@host:port.
func (s *Server) OrbitURI(o orbit.Orbit) string { return s.uri(string(o)) }

func (s *Server) uri(user string) string { return userURI(user, s.addr) }

// Listen binds UDP and TCP on the configured address and serves SIP until
// Shutdown. It returns once both are bound. ctx bounds the setup only, as in
// net.ListenConfig.Listen: the server keeps serving after ctx ends, and
// stops with Shutdown. A second Listen returns ErrListening, and Listen after
// Shutdown ErrServerClosed.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case listening:
		s.mu.Unlock()
		return ErrListening
	case shutDown:
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.state = listening
	s.mu.Unlock()
	if err := s.listen(ctx); err != nil {
		s.mu.Lock()
		s.state = idle
		s.mu.Unlock()
		return err
	}
	return nil
}

func (s *Server) listen(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	want, _ := netip.ParseAddrPort(s.cfg.Listen)
	stack, err := siptransport.Listen(siptransport.Options{
		Addr:           want,
		UA:             s.cfg.UA,
		UserAgent:      "callpark",
		MaxMessageSize: s.cfg.MaxMessageSize,
		Logger:         s.log.With("component", "sip"),
		TLSAddr:        s.tlsWant,
		TLS:            s.cfg.TLS,
	})
	if err != nil {
		return fmt.Errorf("sipadapter: %w", err)
	}
	engine, err := NewEngine(EngineConfig{
		Lot:             s.lot,
		Client:          stack.Client,
		Addr:            stack.Addr,
		Ports:           s.ports,
		SharedRTPPort:   s.cfg.SharedRTPPort,
		MediaIP:         s.mediaIP,
		AcceptLateOffer: s.cfg.AcceptLateOffer,
		LateOfferSwitch: "Config.AcceptLateOffer, -late-offer",
		SRTP:            s.cfg.SRTP,
		ParkExtension:   s.cfg.ParkExtension,
		Orbits:          s.table,
		TLSAddr:         stack.TLSAddr,
		Limits:          s.cfg.Limits,
		Logger:          s.log,
		OutboundProxy:   s.cfg.OutboundProxy,
		CrossNode:       s.cfg.CrossNode,
		Announcements:   s.cfg.Announcements,
		Notify:          s.cfg.Notify,
		Paging:          s.cfg.Paging,
		OnTelling:       s.cfg.OnTelling,
		Metrics:         s.metrics,
	})
	if err != nil {
		stack.Close()
		return err
	}
	engine.Handle(stack.Server)
	s.mu.Lock()
	s.stack, s.engine, s.addr = stack, engine, stack.Addr
	s.mu.Unlock()
	if err := stack.Serve(); err != nil {
		return err
	}
	attrs := []any{"addr", s.addr, "park_extension", s.cfg.ParkExtension, "orbits", s.table.String(), "media_ip", s.mediaIP}
	if stack.TLSAddr.IsValid() {
		attrs = append(attrs, "tls", stack.TLSAddr)
	}
	s.log.Info("park server listening", attrs...)
	return nil
}

// Shutdown stops taking parks (new park INVITEs get 503) and recalls every
// parked call at once (then the fallback, else BYE), returns when the lot is
// empty, then ends the BLF subscriptions, ends the calls still bridged
// through the server and stops listening. If ctx ends first the remaining
// calls are dropped. Calling it again is harmless: it finds nothing left to
// end. A server shut down does not listen again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.state = shutDown
	engine, stack := s.engine, s.stack
	s.mu.Unlock()
	if engine == nil {
		return s.lot.Shutdown(ctx)
	}
	err := engine.Shutdown(ctx)
	stack.Close()
	s.ports.Close() // the RTP sockets kept between calls
	return err
}

// Dial rings a recall or fallback target over SIP, as a park.Dialer (see
// Engine.Dial). A host that brings its own lot wires it in with a
// park.DialerFunc that calls this method of the server it builds next. Before
// Listen there is nothing to ring with.
func (s *Server) Dial(ctx context.Context, req park.DialRequest) (park.Answered, error) {
	s.mu.Lock()
	engine := s.engine
	s.mu.Unlock()
	if engine == nil {
		return nil, ErrNotListening
	}
	return engine.Dial(ctx, req)
}

// ErrNotListening is what Dial returns before Listen.
var ErrNotListening = errors.New("sipadapter: the server is not listening")

// Adopt continues here a call another node of the lot's cluster parked, as
// a park.Adopter (see Engine.Adopt); the server wires it into the lot it
// builds. Before Listen it takes nothing (an error wrapping
// park.ErrClosed), and the call goes to another node.
func (s *Server) Adopt(ctx context.Context, c *park.Call) (park.Leg, error) {
	s.mu.Lock()
	engine := s.engine
	s.mu.Unlock()
	if engine == nil {
		return nil, fmt.Errorf("%w: %w", ErrNotListening, park.ErrClosed)
	}
	return engine.Adopt(ctx, c)
}
