package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// EngineConfig is what a SIP host tells the park engine. Lot, Client, Addr
// and Ports are required.
type EngineConfig struct {
	// Lot is the lot the engine parks into. Its Dialer should ring through
	// the engine (Engine.Dial), or recalls never reach SIP.
	Lot *park.Lot
	// Client sends the engine's requests: recalls, NOTIFYs, MESSAGEs, BYEs.
	// Install RouteSources on it first, so each leaves from the right
	// socket.
	Client *sipgo.Client
	// Addr is the host's SIP address: the host part of the orbit and park
	// URIs and of the engine's Contact.
	Addr netip.AddrPort
	// Ports hands out the RTP port of each call leg.
	Ports *PortPool
	// SharedRTPPort, when set, answers every parked leg with one RTP port,
	// taken from Ports for the engine's life, instead of a port per leg:
	// the legs are told apart by their peers' addresses (media.SharedPort),
	// and on Linux their music leaves in batches of packets per system
	// call, which is what lets a 2-core server play music to 5,000 parked
	// calls. A parked leg keeps the port once retrieved; retrievers,
	// recalls and other calls have ports of their own. What it changes
	// for NAT and firewalls is in docs/SIP-CONTRACT.md.
	SharedRTPPort bool
	// MediaIP is the address written into SDP c= lines: Addr's IP when
	// zero, which must then be an address phones reach.
	MediaIP netip.Addr
	// AcceptLateOffer takes INVITEs without SDP (delayed offer): the
	// engine's offer goes in the 200 and the ACK answers it (see
	// Config.AcceptLateOffer for why it is off by default).
	AcceptLateOffer bool
	// LateOfferSwitch, when AcceptLateOffer is off, is named in the 488's
	// warning as the way to turn it on ("-late-offer").
	LateOfferSwitch string
	// SRTP is the policy for SRTP media (SDES keys, RFC 4568). The zero
	// value, media.SRTPOptional, answers an RTP/SAVP offer with SRTP (hold
	// music, prompts and relayed audio encrypted for that leg) and a plain
	// one with plain RTP; media.SRTPRequired answers a plain offer 488 with
	// a Warning, and offers SRTP itself (recalls, late offers);
	// media.SRTPOff answers RTP/SAVP as before SRTP, 488 unless the offer
	// also has a plain stream. A bad or unknown a=crypto gets 488 with a
	// Warning naming the fault.
	SRTP media.SRTPPolicy
	// ContactUser is the user part of the engine's Contact and SDP origin:
	// "callpark" when empty.
	ContactUser string
	// ParkExtension is the Request-URI user that parks: "700" when empty.
	ParkExtension string
	// Orbits are the orbits the engine answers for; nil means the lot's
	// ranges (park.Lot.Ranges), which must then be known. When both are
	// known they must agree: a call the lot parks on an orbit the engine
	// does not answer for could never be retrieved.
	Orbits *orbit.Table
	// Limits bounds what one source address may hold or try; the zero
	// value means the defaults (see Limits).
	Limits Limits
	// RingTime bounds how long a call the engine places for a host rings:
	// a call between extensions (Connect), a blind transfer. 30 s when
	// zero. Recalls ring as long as the lot says (park.Config).
	RingTime time.Duration
	// Logger receives a line per park, retrieve, recall, hang-up and
	// refusal at Info; nil is silent.
	Logger *slog.Logger
	// Announcements are what the engine says to whom: the orbit spoken to
	// the parker or the parked party. The zero value says nothing.
	Announcements Announcements
	// Paging is whom to page on each park of this node: a call that
	// answers by itself hears "call parked at <orbit>" and is hung up.
	Paging Paging
	// OnTelling, when set, is told of each announcement, page and
	// MESSAGE the engine makes about a parked call, and whether it got
	// through: what an operator's view counts. It runs on the engine's
	// goroutines and must not block.
	OnTelling func(Telling)
	// TLSAddr is where the host serves SIP over TLS, if it does: dialogs
	// and subscriptions made over TLS get it as their Contact, so they
	// stay on TLS. Zero: no TLS. Give the client's SourceRouter the same
	// address (SetTLSAddr) for the Via of requests over TLS.
	TLSAddr netip.AddrPort
	// Metrics counts what the engine and its lot do, for Prometheus.
	// Nil: the engine makes its own (Engine.Metrics).
	Metrics *Metrics
	// Notify are sip: URIs (an IM group, a chat bridge) that get a
	// MESSAGE on each park and each end of a park of this node: who is
	// parked, where, by whom, and how it ended.
	Notify []string
	// CrossNode is how a retrieve for a call parked on another node of
	// the lot's cluster (park.Config.Cluster) reaches it: forwarded
	// (CrossNodeProxy, the default) or redirected (CrossNodeRedirect).
	CrossNode CrossNode
	// TrustForwarded says whether a retrieve another node forwarded here
	// (CrossNodeProxy) comes from a node of the cluster, whose Admit has
	// already named the caller: such an INVITE is not handed to Admit
	// again (a PBX's digest challenge could not be answered: the phone's
	// credentials were for the node it called), and its From names the
	// party. Nil hands every INVITE to Admit.
	TrustForwarded func(src netip.AddrPort) bool

	// What a host adds to the engine, each optional: a park server needs
	// none, a PBX all three.

	// Admit is asked about each new INVITE (not about requests inside a
	// dialog) before the engine acts on it, and names the calling party:
	// the parked party, the retriever, the caller. It returns false once
	// it has answered the request itself (a digest challenge, a refusal).
	// Nil admits every INVITE and names its From URI.
	Admit func(req *sip.Request, tx sip.ServerTransaction) (party string, ok bool)
	// Calls serves an admitted new INVITE to anything but the park
	// extension and the orbits, such as a PBX's call between extensions
	// (Engine.Connect places it). Nil answers 404.
	Calls func(req *sip.Request, tx sip.ServerTransaction, party string)
	// Allow names the methods the host serves itself beyond the engine's
	// (REGISTER, NOTIFY, MESSAGE), for the Allow header of OPTIONS answers.
	Allow []string
	// OutboundProxy, when set, is a sip: URI (the PBX that knows where the
	// phones are, sip:10.0.0.5:5060) that every recall, fallback and
	// "Parked at" MESSAGE to a URI not the host's own goes through, as a
	// loose route (RFC 3261 §8.1.2). Empty: straight to the URI.
	OutboundProxy string
	// Locate says where a URI of the host rings: a PBX's extension is its
	// registered phones (found, maybe none registered). A URI that is not
	// the host's (found false) is rung as it is, for a recall, the
	// fallback and the parker's "Parked at" MESSAGE. A REFER to a found
	// URI is a blind transfer there; to any other, 404. Nil finds nothing.
	Locate func(uri sip.Uri) (targets []Target, found bool)
}

// DefaultRingTime is EngineConfig.RingTime's default.
const DefaultRingTime = 30 * time.Second

// Target is one place to ring: a phone's Contact, and the transport to
// reach it by ("" lets the URI say).
type Target struct {
	URI       sip.Uri
	Transport string
	route     *sip.Uri // the outbound proxy a request goes through, if any
	dest      *sip.Uri // else where it is sent, when not to URI: the device
}

// Engine is the park half of a SIP host: it owns the call legs and every
// park flow, so that the park server and a PBX that embeds the lot behave
// alike on the wire (docs/SIP-CONTRACT.md). A host hands it the requests it
// gets (Handle registers them on a sipgo.Server) and calls Shutdown when it
// stops; the flows themselves, park by INVITE and by REFER, directed park,
// retrieve and bridge, Replaces take-over, recall and fallback, holds,
// hang-ups and BLF, live here once.
type Engine struct {
	cfg     EngineConfig
	metrics *Metrics
	lot     *park.Lot
	table   atomic.Pointer[orbit.Table] // the orbits answered; a reload replaces it
	log     *slog.Logger
	ports   *PortPool
	media   legMedia
	music   *musicClips      // the lot's music as legs play it, built once
	sched   *media.Scheduler // paces every leg's RTP; the engine's own
	// sharedOnce closes media.Shared once (closeShared).
	sharedOnce sync.Once
	client     *sipgo.Client
	dialogUA   *sipgo.DialogUA
	tlsUA      *sipgo.DialogUA // dialogs over TLS: its Contact is the TLS address; nil without
	sipsUA     *sipgo.DialogUA // dialogs to or from a sips: URI: a sips: Contact
	addr       netip.AddrPort
	blf        *blfService
	guard      *sourceGuard // Limits: failed retrieves and dialogs per source

	mu      sync.Mutex
	legs    map[string]*callLeg // by dialog key: Call-ID, our tag, their tag
	invites map[string]*callLeg // answered legs by their INVITE (inviteKey)
	// legSources names the source each answered leg is counted against
	// (Limits.DialogsPerSource), until the leg closes.
	legSources map[*callLeg]netip.Addr
	// parked are the calls the engine parked and the lot still holds, by
	// park ID: each keeps a port for its recall (recallport.go).
	parked        map[string]*parkedCall
	proxy         *sip.Uri // EngineConfig.OutboundProxy, a loose route
	stopObserving func()
	// Handlers in progress, so that Shutdown returns only once none is
	// left to create or free a leg; after stopped, requests get 503.
	active  int
	stopped bool
	idle    chan struct{}  // closed when active drops to 0 after stopped
	tasks   sync.WaitGroup // notices and other fire-and-forget requests
	// callsCtx ends when Shutdown begins: calls still ringing (Connect,
	// transfers) stop.
	callsCtx  context.Context
	stopCalls context.CancelFunc
	// tasksCtx bounds those requests; Shutdown cancels it before waiting
	// for them, so a phone that never answers cannot hold the exit.
	tasksCtx    context.Context
	cancelTasks context.CancelFunc

	// pages holds a token per page under way (Paging.MaxPages).
	pages chan struct{}
	// Notices for EngineConfig.Notify, sent in order by sendNotices.
	noticeMu    sync.Mutex
	notices     chan notice // nil once stopped
	noticesDone chan struct{}
}

// NewEngine checks cfg and builds the engine and its BLF.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	switch {
	case cfg.Lot == nil:
		return nil, &ConfigError{"EngineConfig.Lot", nil, "required"}
	case cfg.Client == nil:
		return nil, &ConfigError{"EngineConfig.Client", nil, "required"}
	case !cfg.Addr.IsValid():
		return nil, &ConfigError{"EngineConfig.Addr", cfg.Addr, "required"}
	case cfg.Ports == nil:
		return nil, &ConfigError{"EngineConfig.Ports", nil, "required"}
	}
	if !cfg.MediaIP.IsValid() {
		cfg.MediaIP = cfg.Addr.Addr()
	}
	if cfg.MediaIP.IsUnspecified() {
		// c=0.0.0.0 means "on hold" to a phone: it would never send audio.
		return nil, &ConfigError{"EngineConfig.MediaIP", cfg.MediaIP, "must be an address phones reach for RTP, not the unspecified address"}
	}
	if cfg.SRTP > media.SRTPOff {
		return nil, &ConfigError{"EngineConfig.SRTP", cfg.SRTP, "must be media.SRTPOptional, SRTPRequired or SRTPOff"}
	}
	if cfg.ParkExtension == "" {
		cfg.ParkExtension = DefaultParkExtension
	}
	if cfg.RingTime == 0 {
		cfg.RingTime = DefaultRingTime
	}
	if cfg.ContactUser == "" {
		cfg.ContactUser = "callpark"
	}

	var err error
	if cfg.Limits, err = cfg.Limits.withDefaults(); err != nil {
		return nil, err
	}
	if cfg.Paging, err = cfg.Paging.withDefaults("EngineConfig.Paging"); err != nil {
		return nil, err
	}
	cfg.Announcements = cfg.Announcements.withDefaults(len(cfg.Paging.URIs) > 0)
	if err := checkNotify("EngineConfig.Notify", cfg.Notify); err != nil {
		return nil, err
	}
	if err := checkMusic(cfg.Lot.Music()); err != nil {
		return nil, &ConfigError{"Lot's MusicOnHold", cfg.Lot.Music().Name(), err.Error()}
	}
	proxy, err := parseProxy(cfg.OutboundProxy, "EngineConfig.OutboundProxy")
	if err != nil {
		return nil, err
	}
	table, err := servedOrbits(cfg.Orbits, cfg.Lot, "EngineConfig.Orbits")
	if err != nil {
		return nil, err
	}
	if _, err := orbit.ParseOrbit(cfg.ParkExtension); err == nil && servesOrbit(table, orbit.Orbit(cfg.ParkExtension)) {
		return nil, &ConfigError{"EngineConfig.ParkExtension", cfg.ParkExtension, "lies inside an orbit range"}
	}
	e := &Engine{
		cfg: cfg, lot: cfg.Lot, log: cfg.Logger, ports: cfg.Ports,
		client: cfg.Client, addr: cfg.Addr, proxy: proxy, music: &musicClips{},
		guard: newSourceGuard(cfg.Limits), legs: make(map[string]*callLeg), invites: make(map[string]*callLeg),
		legSources: make(map[*callLeg]netip.Addr), parked: make(map[string]*parkedCall),
	}
	e.table.Store(table)
	if e.metrics = cfg.Metrics; e.metrics == nil {
		e.metrics = NewMetrics(cfg.Lot)
	}
	e.metrics.engine.Store(e)
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	so := media.SchedulerOptions{Logger: e.log.With("component", "rtp")}
	if cfg.Lot.Config().Cluster != nil {
		// Music stops while this node may have lost its calls to another
		// (paused past its lease): it must send nothing for them.
		so.Hold = cfg.Lot.Stalled
	}
	e.sched = media.NewScheduler(so)
	e.media = legMedia{Ports: cfg.Ports, IP: cfg.MediaIP, Username: cfg.ContactUser, Scheduler: e.sched, Logger: e.log,
		AcceptLateOffer: cfg.AcceptLateOffer, LateOfferSwitch: cfg.LateOfferSwitch, SRTP: cfg.SRTP}
	if cfg.SharedRTPPort {
		if e.media.Shared, err = newSharedPort(cfg.Ports, e.sched, e.log); err != nil {
			e.sched.Close()
			return nil, err
		}
	}
	e.tasksCtx, e.cancelTasks = context.WithCancel(context.Background())
	e.callsCtx, e.stopCalls = context.WithCancel(context.Background())
	e.dialogUA = &sipgo.DialogUA{
		Client:     e.client,
		ContactHDR: sip.ContactHeader{Address: sipURI(cfg.ContactUser, e.addr)},
	}
	if cfg.TLSAddr.IsValid() {
		e.tlsUA = &sipgo.DialogUA{
			Client:     e.client,
			ContactHDR: sip.ContactHeader{Address: tlsURI(cfg.ContactUser, cfg.TLSAddr)},
		}
		e.sipsUA = &sipgo.DialogUA{
			Client:     e.client,
			ContactHDR: sip.ContactHeader{Address: sipsURI(cfg.ContactUser, cfg.TLSAddr)},
		}
	}
	if e.blf, err = newBLF(blfConfig{
		Lot:           e.lot,
		Client:        e.client,
		Orbits:        e.table.Load(),
		TLSAddr:       cfg.TLSAddr,
		ParkExtension: cfg.ParkExtension,
		Addr:          e.addr,
		Logger:        e.log,

		SubscriptionsPerSource: cfg.Limits.SubscriptionsPerSource,
		Trusted:                cfg.Limits.Trusted,
	}); err != nil {
		e.closeShared()
		e.sched.Close()
		return nil, err
	}
	e.pages = make(chan struct{}, cfg.Paging.MaxPages)
	if len(cfg.Notify) > 0 {
		e.notices, e.noticesDone = make(chan notice, noticeQueue), make(chan struct{})
		q, done := e.notices, e.noticesDone
		e.tasks.Go(func() { e.sendNotices(q, done) })
	}
	e.stopObserving = e.lot.Observe(park.ObserverFunc(e.observeEnds))
	return e, nil
}

// parseProxy reads an outbound proxy's URI: a sip: URI with a host, made a
// loose route (;lr). Empty is none.
func parseProxy(v, field string) (*sip.Uri, error) {
	if v == "" {
		return nil, nil
	}
	var u sip.Uri
	if err := sip.ParseUri(v, &u); err != nil || u.Host == "" || !strings.EqualFold(u.Scheme, "sip") {
		return nil, &ConfigError{field, fmt.Sprintf("%q", v), "must be a sip: URI such as sip:10.0.0.5:5060"}
	}
	if u.UriParams == nil {
		u.UriParams = sip.NewParams()
	}
	if !u.UriParams.Has("lr") {
		u.UriParams.Add("lr", "")
	}
	u.User = ""
	return &u, nil
}

// servedOrbits is the table of orbits a host answers for: the one it was
// given, which must hold exactly the lot's ranges when the lot knows them,
// or else the lot's ranges.
func servedOrbits(given *orbit.Table, lot *park.Lot, field string) (*orbit.Table, error) {
	ranges := lot.Ranges()
	if ranges == nil {
		if given == nil {
			return nil, &ConfigError{field, nil, "required: the lot's allocator does not tell its ranges (orbit.Ranger)"}
		}
		return given, nil
	}
	entries := make([]orbit.Entry, len(ranges))
	for i, r := range ranges {
		entries[i] = orbit.Entry{Range: r}
	}
	lots, err := orbit.NewTable(entries...)
	if err != nil || given == nil {
		return lots, err
	}
	if !slices.Equal(given.Ranges(""), ranges) {
		return nil, &ConfigError{field, given.String(), fmt.Sprintf("must list the lot's orbits, %s: a call parked on an orbit the server does not answer for could never be retrieved", lots)}
	}
	return given, nil
}

// Lot returns the engine's lot.
func (e *Engine) Lot() *park.Lot { return e.lot }

// Metrics returns the engine's metrics, to register in a Prometheus
// registry (EngineConfig.Metrics, or the engine's own).
func (e *Engine) Metrics() *Metrics { return e.metrics }

// ServeOptions answers OPTIONS as the contract says (flow 10): 200 with
// Allow (the engine's methods and EngineConfig.Allow), Supported: replaces
// and Allow-Events: refer, dialog.
func (e *Engine) ServeOptions(req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	allow := append([]string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REFER", "SUBSCRIBE"}, e.cfg.Allow...)
	res.AppendHeader(sip.NewHeader("Allow", strings.Join(allow, ", ")))
	res.AppendHeader(sip.NewHeader("Supported", "replaces"))
	res.AppendHeader(sip.NewHeader("Allow-Events", "refer, dialog"))
	e.respond(tx, res)
}

// ServeSubscribe serves a SUBSCRIBE for BLF (RFC 4235) on an orbit, or on
// the park extension for the whole lot: 200, a full NOTIFY at once, a new
// one on every change. Handle registers it; a host that authenticates
// SUBSCRIBEs first calls it itself.
func (e *Engine) ServeSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	e.blf.ServeSubscribe(req, tx)
}

// Subscriptions returns the number of live BLF subscriptions: zero after
// Shutdown, a leak check as Len is.
func (e *Engine) Subscriptions() int { return e.blf.Len() }

// Len returns the number of call legs the engine holds: zero once every
// call has ended, which makes it a leak check for a host's tests.
func (e *Engine) Len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.legs)
}

// Handle registers the engine's handlers on srv: INVITE, ACK, BYE, CANCEL,
// REFER, SUBSCRIBE and OPTIONS. A host that needs to see a request first (a
// PBX authenticating) registers its own handler afterwards and calls the
// engine's from it.
func (e *Engine) Handle(srv *sipgo.Server) {
	srv.OnOptions(e.Tracked(e.ServeOptions))
	srv.OnInvite(e.Tracked(e.ServeInvite))
	srv.OnAck(e.Tracked(e.ServeAck))
	srv.OnBye(e.Tracked(e.ServeBye))
	srv.OnCancel(func(*sip.Request, sip.ServerTransaction) {}) // the transaction layer answers CANCEL
	srv.OnRefer(e.Tracked(e.ServeRefer))
	srv.OnSubscribe(e.Tracked(e.ServeSubscribe))
}

// Tracked counts a handler in progress, so that Shutdown waits for it, and
// turns requests away with 503 once the engine has stopped. Handle wraps
// the engine's handlers in it; a host wraps its own that touch legs.
func (e *Engine) Tracked(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		e.mu.Lock()
		if e.stopped {
			e.mu.Unlock()
			if !req.IsAck() {
				e.reply(req, tx, sip.StatusServiceUnavailable, "Service Unavailable")
			}
			return
		}
		e.active++
		e.mu.Unlock()
		if insecureSIPS(req) && !req.IsAck() {
			e.reply(req, tx, 416, "Unsupported URI Scheme", warning("a sips: Request-URI needs TLS on every hop (RFC 3261 26.2.2)"))
			e.mu.Lock()
			e.active--
			e.mu.Unlock()
			return
		}
		defer func() {
			e.mu.Lock()
			e.active--
			if e.active == 0 && e.idle != nil {
				close(e.idle)
				e.idle = nil
			}
			e.mu.Unlock()
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

// uaFor is the dialog user agent for a dialog over transport: the TLS one
// for "TLS" when there is one.
func (e *Engine) uaFor(transport string) *sipgo.DialogUA {
	if e.tlsUA != nil && strings.EqualFold(transport, "TLS") {
		return e.tlsUA
	}
	return e.dialogUA
}

// uaForRequest is uaFor the request's transport, with a sips: Contact for a
// sips: Request-URI (RFC 3261 §12.1.1).
func (e *Engine) uaForRequest(req *sip.Request) *sipgo.DialogUA {
	if e.sipsUA != nil && strings.EqualFold(req.Recipient.Scheme, "sips") && strings.EqualFold(req.Transport(), "TLS") {
		return e.sipsUA
	}
	return e.uaFor(req.Transport())
}

// isOrbit reports whether o is one of the orbits the engine answers for,
// or, after a reload removed its range, one a call still waits in here.
func (e *Engine) isOrbit(o orbit.Orbit) bool {
	if servesOrbit(e.table.Load(), o) {
		return true
	}
	c, ok := e.lot.Lookup(o)
	return ok && c.Node == ""
}

func (e *Engine) respond(tx sip.ServerTransaction, res *sip.Response) { respond(e.log, tx, res) }

func (e *Engine) reply(req *sip.Request, tx sip.ServerTransaction, code int, reason string, headers ...sip.Header) {
	e.metrics.refused(code, reason)
	Reply(e.log, req, tx, code, reason, headers...)
}

// ErrInvalidConfig is wrapped by every configuration error of this package.
var ErrInvalidConfig = errors.New("sipadapter: invalid configuration")

// ConfigError names the configuration field that breaks a rule, as
// park.ConfigError does for the lot.
type ConfigError struct {
	Field string // e.g. "Config.Listen"
	Value any    // the rejected value
	Rule  string // what the value must be
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("sipadapter: %s = %v: %s", e.Field, e.Value, e.Rule)
}

// Unwrap makes every ConfigError match ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }
