package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

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
// 20000-29999, and the seed's park settings.
type Config struct {
	// Lot, when set, is the host's own lot: the server parks into it. Its
	// Dialer decides how recalls ring; a host that wants them rung over SIP
	// by this server gives it a DialerFunc that calls Server.Dial (the
	// server does not exist yet when the lot is built). Park must then be
	// left zero. Orbits must list the lot's orbits.
	Lot *park.Lot
	// Park is the configuration of the lot the server builds when Lot is
	// nil. Its Dialer is the server's own (it rings recalls and the fallback
	// over SIP) and must be left nil; its Orbits, when nil, is built from
	// Orbits and Policy.
	Park park.Config
	// Orbits are the orbit ranges the server answers for; nil means
	// park.DefaultOrbits. Only the local pool ("") is served.
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
	// MediaIP is the address written into SDP c= lines; zero means the
	// listen IP. RTP is bound on the listen IP, so behind a NAT MediaIP can
	// be the public address.
	MediaIP netip.Addr
	// RTPPortMin and RTPPortMax bound the RTP ports, one per call leg; zero
	// means 20000-29999.
	RTPPortMin, RTPPortMax int
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
}

// DefaultMaxMessageSize is Config.MaxMessageSize's default: 16 KiB, four
// times a large INVITE with video and ICE candidates. A park server has no
// use for more, and a parser that accepts less cannot be made to hold much.
const DefaultMaxMessageSize = 16 << 10

// Server is a call park application server: the SIP side of a park.Lot. It
// answers INVITEs to the park extension (park) and to orbits (directed park
// and retrieve), keeps the media of every leg, and rings parkers and the
// fallback when the lot recalls a call.
type Server struct {
	cfg     Config
	lot     *park.Lot
	table   *orbit.Table
	log     *slog.Logger
	ports   *PortPool
	sched   *media.Scheduler
	mediaIP netip.Addr
	media   LegMedia // how legs get their RTP port, SDP and endpoint

	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	client   *sipgo.Client
	router   *SourceRouter // the client's: where each request leaves from
	dialogUA *sipgo.DialogUA
	addr     netip.AddrPort
	udp      *udpListener

	blf *BLF // built by Listen, which learns the address its URIs name

	guard *sourceGuard // Limits: failed retrieves and dialogs per source

	mu      sync.Mutex
	legs    map[string]*Leg // by dialog key: Call-ID, our tag, their tag
	invites map[string]*Leg // answered legs by their INVITE (inviteKey)
	// legSources names the source each answered leg is counted against
	// (Limits.DialogsPerSource), until the leg closes.
	legSources map[*Leg]netip.Addr
	// Handlers in progress, so that Shutdown returns only once none is
	// left to create or free a leg; after stopped, requests get 503.
	active  int
	stopped bool
	idle    chan struct{}  // closed when active drops to 0 after stopped
	tasks   sync.WaitGroup // notices and other fire-and-forget requests
	// tasksCtx bounds those requests; Shutdown cancels it before waiting
	// for them, so a phone that never answers cannot hold the exit.
	tasksCtx    context.Context
	cancelTasks context.CancelFunc
	cancel      context.CancelFunc
	serveErr    chan error
}

// New validates cfg and builds a server; Listen starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Park.Dialer != nil {
		return nil, errors.New("sipadapter: Config.Park.Dialer must be nil: the server rings recalls itself")
	}
	if cfg.Lot != nil && !isZeroParkConfig(cfg.Park) {
		return nil, errors.New("sipadapter: Config.Park must be zero when Config.Lot is given: the lot has its configuration")
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
		return nil, fmt.Errorf("sipadapter: Config.Listen %q: want IP:port: %w", cfg.Listen, err)
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize < 1024 || cfg.MaxMessageSize > 32<<10 {
		return nil, fmt.Errorf("sipadapter: Config.MaxMessageSize = %d: must be between 1024 and 32768 bytes, or 0 for %d", cfg.MaxMessageSize, DefaultMaxMessageSize)
	}
	if cfg.Limits, err = cfg.Limits.withDefaults(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, legs: make(map[string]*Leg), invites: make(map[string]*Leg), table: cfg.Orbits,
		guard: newSourceGuard(cfg.Limits), legSources: make(map[*Leg]netip.Addr)}
	s.tasksCtx, s.cancelTasks = context.WithCancel(context.Background())
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.table == nil {
		if s.table, err = orbit.ParseTable(park.DefaultOrbits); err != nil {
			return nil, err
		}
	}
	if _, err := orbit.ParseOrbit(cfg.ParkExtension); err == nil && s.isOrbit(orbit.Orbit(cfg.ParkExtension)) {
		return nil, fmt.Errorf("sipadapter: Config.ParkExtension %q lies inside an orbit range", cfg.ParkExtension)
	}
	s.mediaIP = cfg.MediaIP
	if !s.mediaIP.IsValid() {
		s.mediaIP = ap.Addr()
	}
	if s.mediaIP.IsUnspecified() {
		// c=0.0.0.0 means "on hold" to a phone: it would never send audio.
		return nil, fmt.Errorf("sipadapter: Config.MediaIP: listening on %s, so name the address phones reach for RTP", ap.Addr())
	}
	if s.ports, err = NewPortPool(ap.Addr(), cfg.RTPPortMin, cfg.RTPPortMax); err != nil {
		return nil, err
	}
	s.lot = cfg.Lot
	if s.lot == nil {
		pc := cfg.Park
		pc.Dialer = park.DialerFunc(s.Dial)
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
	return s, nil
}

// isZeroParkConfig reports whether c was left unset. park.Config holds
// interfaces whose dynamic values (a DialerFunc) panic under ==, so it is
// compared field by field.
func isZeroParkConfig(c park.Config) bool {
	return c.PickupTimeout == 0 && c.MaxPickupAttempts == 0 && c.RecallRingTime == 0 &&
		c.FallbackURI == "" && c.FallbackRingTime == 0 && !c.DisableMusicOnHold &&
		c.MusicOnHold == nil && c.Orbits == nil && c.Dialer == nil && c.Logger == nil &&
		c.AuthorizeRetrieve == nil
}

// Lot returns the server's lot, to observe its events or list its calls.
func (s *Server) Lot() *park.Lot { return s.lot }

// Addr returns the address the server listens on (UDP and TCP), once Listen
// has returned.
func (s *Server) Addr() netip.AddrPort { return s.addr }

// ParkURI returns the park extension's URI: sip:700@host:port.
func (s *Server) ParkURI() string { return s.uri(s.cfg.ParkExtension) }

// OrbitURI returns the URI of an orbit: sip:<orbit>@host:port.
func (s *Server) OrbitURI(o orbit.Orbit) string { return s.uri(string(o)) }

func (s *Server) uri(user string) string { return userURI(user, s.addr) }

// Listen binds UDP and TCP on the configured address and serves SIP until
// Shutdown. It returns once both are bound.
func (s *Server) Listen(ctx context.Context) error {
	want, _ := netip.ParseAddrPort(s.cfg.Listen)
	udp, tcp, err := ListenPair(want)
	if err != nil {
		return err
	}
	s.addr = udp.LocalAddr().(*net.UDPAddr).AddrPort()

	sipLog := s.log.With("component", "sip")
	ua := s.cfg.UA
	if ua == nil {
		parser := sip.NewParser()
		parser.MaxMessageLength = s.cfg.MaxMessageSize
		if ua, err = sipgo.NewUA(
			sipgo.WithUserAgent("callpark"),
			sipgo.WithUserAgentParser(parser),
			sipgo.WithUserAgentHostname(s.addr.Addr().String()),
			sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
			sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(sipLog)),
		); err != nil {
			udp.Close()
			tcp.Close()
			return err
		}
	}
	s.ua = ua
	if s.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(sipLog)); err != nil {
		udp.Close()
		tcp.Close()
		return err
	}
	if s.client, err = sipgo.NewClient(ua,
		sipgo.WithClientLogger(sipLog),
		sipgo.WithClientHostname(s.addr.Addr().String()),
		sipgo.WithClientPort(int(s.addr.Port())),
	); err != nil {
		udp.Close()
		tcp.Close()
		return err
	}
	s.router = RouteSources(s.client, ua, s.addr)
	if s.blf, err = NewBLF(BLFConfig{
		Lot:           s.lot,
		Client:        s.client,
		Orbits:        s.table,
		ParkExtension: s.cfg.ParkExtension,
		Addr:          s.addr,
		Logger:        s.log,

		SubscriptionsPerSource: s.cfg.Limits.SubscriptionsPerSource,
		Trusted:                s.cfg.Limits.Trusted,
	}); err != nil {
		udp.Close()
		tcp.Close()
		return err
	}
	s.dialogUA = &sipgo.DialogUA{
		Client:     s.client,
		ContactHDR: sip.ContactHeader{Address: sipURI("callpark", s.addr)},
	}
	s.sched = media.NewScheduler(media.SchedulerOptions{Logger: s.log.With("component", "rtp")})
	s.media = LegMedia{Ports: s.ports, IP: s.mediaIP, Username: "callpark", Scheduler: s.sched, Logger: s.log,
		AcceptLateOffer: s.cfg.AcceptLateOffer, LateOfferSwitch: "Config.AcceptLateOffer, -late-offer"}

	s.srv.OnInvite(s.tracked(s.onInvite))
	s.srv.OnAck(s.tracked(s.onAck))
	s.srv.OnBye(s.tracked(s.onBye))
	s.srv.OnCancel(func(*sip.Request, sip.ServerTransaction) {}) // the transaction layer answers CANCEL
	s.srv.OnOptions(s.tracked(s.onOptions))
	s.srv.OnRefer(s.tracked(s.onRefer))
	s.srv.OnSubscribe(s.tracked(s.blf.ServeSubscribe))

	ctx, s.cancel = context.WithCancel(ctx)
	s.serveErr = make(chan error, 2)
	s.udp = newUDPListener(udp)
	go func() {
		defer close(s.udp.served)
		s.serveErr <- s.srv.ServeUDP(s.udp)
	}()
	go func() { s.serveErr <- s.srv.ServeTCP(tcp) }()
	go func() {
		<-ctx.Done()
		udp.Close()
		tcp.Close()
	}()
	s.log.Info("park server listening", "addr", s.addr, "park_extension", s.cfg.ParkExtension, "orbits", s.table.String(), "media_ip", s.mediaIP)
	return nil
}

// Shutdown stops taking parks (new park INVITEs get 503) and recalls every
// parked call at once (then the fallback, else BYE), returns when the lot is
// empty, then ends the BLF subscriptions (BLF.Close), ends the calls still
// bridged through the server and stops listening. If ctx ends first the
// remaining calls are dropped. Calling it again is harmless: it finds
// nothing left to end.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.blf != nil {
		s.blf.refuseNew()
	}
	err := s.lot.Shutdown(ctx)

	// Watchers hear the last state, then that the lot is gone. The final
	// NOTIFYs get their own few seconds even when ctx has run out on the
	// lot: a lamp left lit would show a call that is not there.
	if s.blf != nil {
		blfCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
		if err := s.blf.Close(blfCtx); err != nil {
			s.log.Warn("shutdown: BLF NOTIFYs still unanswered", "err", err)
		}
		cancel()
	}

	// Calls the server still relays (retrieved, recalled) end with it;
	// then no new request is taken, the ones in progress finish, and any
	// leg they left is ended too.
	byeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	s.hangupAll(byeCtx)
	s.waitHandlers(byeCtx)
	s.hangupAll(byeCtx)
	s.cancelTasks()
	s.tasks.Wait()
	s.mu.Lock()
	stopServing := s.cancel
	s.cancel = nil // a second Shutdown finds the listeners gone already
	s.mu.Unlock()
	if stopServing != nil {
		s.router.Close()
		// Nothing is waited for any more: stop taking datagrams in, then
		// make sure sipgo cannot open a socket of its own for the requests
		// it read before and handles after the listener is gone (pinUDP).
		// A host's user agent keeps reaching those peers its own way, so
		// only the server's address is pinned in it.
		peers := s.udp.drain()
		if s.cfg.UA != nil {
			peers = nil
		}
		pinned := pinUDP(s.ua.TransportLayer().Pool("udp"), s.udp, peers)
		stopServing()
		for range 2 {
			<-s.serveErr
		}
		if s.cfg.UA == nil {
			s.closeUA(pinned, peers)
		}
		s.sched.Close()
	}
	return err
}

// closeUA closes the server's own user agent as UserAgent.Close does, but
// keeps the stand-ins of pinUDP: clearing the UDP pool would drop them. That
// pool holds no other socket, since every request leaves from the listener
// (SourceRouter) and responses go out on it; should one ever be there
// (sipgo sending on its own), the pool is cleared, which closes it, and
// pinned again.
func (s *Server) closeUA(pinned int, peers []string) {
	s.ua.TransactionLayer().Close()
	tl := s.ua.TransportLayer()
	for _, network := range []string{"tcp", "tls", "ws", "wss"} {
		_ = tl.Pool(network).Clear()
	}
	if pool := tl.Pool("udp"); pool.Size() > pinned {
		_ = pool.Clear()
		pinUDP(pool, s.udp, peers)
	}
}

// hangupAll sends BYE on every leg the server holds and frees them.
func (s *Server) hangupAll(ctx context.Context) {
	s.mu.Lock()
	var legs []*Leg
	for _, l := range s.legs {
		legs = append(legs, l)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range legs {
		wg.Go(func() { l.Hangup(ctx) })
	}
	wg.Wait()
}

// tracked counts a handler in progress and turns requests away once the
// server has stopped.
func (s *Server) tracked(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			if !req.IsAck() {
				s.reply(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
			}
			return
		}
		s.active++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.active--
			if s.active == 0 && s.idle != nil {
				close(s.idle)
				s.idle = nil
			}
			s.mu.Unlock()
		}()
		h(req, tx)
		if endsWithHandler(req) {
			tx.Terminate()
		}
	}
}

// endsWithHandler reports whether a request's server transaction can end as
// soon as its handler returns. Over UDP sipgo keeps a finished transaction
// for 32 s (RFC 3261 Timers J and L) to answer retransmissions; at a
// thousand parks a second that is 100,000 transactions, half the server's
// heap and the garbage collector's work. An INVITE handler returns once the
// ACK of its 2xx is in (or never came), so a retransmission can no longer
// come (a late copy is caught as a merged request, 482); a re-INVITE
// retransmitted after its 200 is answered again, alike; a BYE or OPTIONS
// retransmitted after its answer gets 481 or 200 anew, which is harmless.
// REFER and SUBSCRIBE keep their transactions: a retransmission must not
// park or subscribe twice.
func endsWithHandler(req *sip.Request) bool {
	switch req.Method {
	case sip.INVITE, sip.BYE, sip.OPTIONS:
		return true
	}
	return false
}

// waitHandlers stops taking requests and waits for those in progress.
func (s *Server) waitHandlers(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	var idle chan struct{}
	if s.active > 0 {
		s.idle = make(chan struct{})
		idle = s.idle
	}
	s.mu.Unlock()
	if idle == nil {
		return
	}
	select {
	case <-idle:
	case <-ctx.Done():
		s.log.Warn("shutdown: requests still in progress", "err", ctx.Err())
	}
}

// isOrbit reports whether o is one of the orbits this server serves.
func (s *Server) isOrbit(o orbit.Orbit) bool { return servesOrbit(s.table, o) }

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, SUBSCRIBE"))
	res.AppendHeader(sip.NewHeader("Supported", "replaces"))
	res.AppendHeader(sip.NewHeader("Allow-Events", "refer, dialog"))
	s.respond(tx, res)
}

func (s *Server) respond(tx sip.ServerTransaction, res *sip.Response) { respond(s.log, tx, res) }

func (s *Server) reply(req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	Reply(s.log, req, tx, code, reason, headers...)
}

// notifyParker tells the parker where the call waits, out of dialog. A
// failure changes nothing: the orbit was also in the 200 OK.
func (s *Server) notifyParker(parker string, o orbit.Orbit) {
	var uri sip.Uri
	if err := sip.ParseUri(parker, &uri); err != nil {
		return
	}
	s.tasks.Go(func() {
		ctx, cancel := context.WithTimeout(s.tasksCtx, 5*time.Second)
		defer cancel()
		req := sip.NewRequest(sip.MESSAGE, uri)
		req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
		req.SetBody([]byte("Parked at " + string(o)))
		from := sip.FromHeader{Address: sipURI(s.cfg.ParkExtension, s.addr), Params: sip.NewParams()}
		from.Params.Add("tag", sip.GenerateTagN(16))
		req.AppendHeader(&from)
		res, err := ClientDo(ctx, s.client, req)
		if err != nil {
			s.log.Debug("parker notice failed", "parker", parker, "orbit", o, "err", err)
			return
		}
		if !res.IsSuccess() {
			s.log.Debug("parker notice refused", "parker", parker, "orbit", o, "status", res.StatusCode)
		}
	})
}
