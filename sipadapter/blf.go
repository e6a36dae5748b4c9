package sipadapter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// Subscription lifetimes: what a SUBSCRIBE may ask for, and what it gets
// when it asks for nothing (RFC 6665 lets the notifier shorten it).
const (
	defaultSubscriptionExpiry = time.Hour
	minSubscriptionExpiry     = time.Minute
	maxSubscriptionExpiry     = time.Hour
)

// notifyTimeout bounds one NOTIFY. A watcher that has vanished would
// otherwise hold its queue, and Close, for sipgo's 32 s transaction timeout.
const notifyTimeout = 5 * time.Second

// blfConfig configures a BLF. Lot, Client and Addr are required; the zero
// value of every other field means its default.
type blfConfig struct {
	// Lot is the lot whose orbits are watched. Required.
	Lot *park.Lot
	// Client sends the NOTIFYs. Required. It is the host's, with
	// RouteSources installed (or, without it, WithClientConnectionAddr):
	// over UDP NOTIFYs must leave from the address SUBSCRIBEs arrive on,
	// since phones drop NOTIFYs from elsewhere.
	Client *sipgo.Client
	// Orbits are the orbits answered; only those of the local pool ("")
	// are. Nil means park.DefaultOrbits.
	Orbits *orbit.Table
	// TLSAddr is the host's SIP over TLS address: the Contact of
	// subscriptions made over TLS. Zero: no TLS.
	TLSAddr netip.AddrPort
	// ParkExtension is the Request-URI user whose SUBSCRIBE watches the
	// whole lot; empty means DefaultParkExtension.
	ParkExtension string
	// Addr is the host:port written into the entity and orbit URIs of the
	// dialog-info bodies and into From and Contact of the NOTIFYs: the
	// address phones reach the host on. Required, with a port.
	Addr netip.AddrPort
	// Logger receives NOTIFY failures at Debug; nil is silent.
	Logger *slog.Logger
	// SubscriptionsPerSource caps the subscriptions one source IP holds;
	// a SUBSCRIBE beyond it gets 503 with Retry-After. 0 means
	// DefaultSubscriptionsPerSource; negative means no cap.
	SubscriptionsPerSource int
	// Trusted sources have no cap (a PBX subscribing for its phones).
	Trusted []netip.Prefix
}

// blfService serves the dialog event package (RFC 4235) for a lot's orbits: the
// busy lamp fields of phones' park keys. A SUBSCRIBE to an orbit watches that
// orbit; one to the park extension watches the whole lot. Every NOTIFY
// carries the full state with a version one above the last, so a phone that
// missed one is right again with the next.
//
// It is a component of its own so that a host PBX serving SUBSCRIBE in its
// own sipgo handlers lights the same lamps as Server does: it calls
// ServeSubscribe for the users Watches names and Close when it stops.
//
// The lot's event delivery never waits on a watcher's network: each
// watcher's NOTIFYs queue and go out from a goroutine of their own, one at a
// time and in order, each bounded by 5 s.
type blfService struct {
	lot     *park.Lot
	client  *sipgo.Client
	table   atomic.Pointer[orbit.Table] // the orbits answered; a reload replaces it
	parkExt string
	addr    netip.AddrPort
	tlsAddr netip.AddrPort
	log     *slog.Logger

	stopObserving func()
	closeOnce     sync.Once
	// ctx bounds every NOTIFY; Close cancels it once it has waited long
	// enough, so a watcher that never answers cannot hold a host's exit.
	ctx    context.Context
	cancel context.CancelFunc
	// tasks are the queue pumps and the final NOTIFYs of Close: what Close
	// waits for. Go is only called under mu while not closed (or by Close
	// itself before it waits), so no Add can race the Wait.
	tasks sync.WaitGroup

	perSourceCap int            // SubscriptionsPerSource; < 0: none
	trusted      []netip.Prefix // exempt from perSourceCap

	mu   sync.Mutex
	subs map[string]*subscription // by dialog key
	// perSource counts the subscriptions in subs by source IP, for the
	// cap; trusted sources are not counted.
	perSource map[netip.Addr]int
	// refusing: new subscriptions get a terminated NOTIFY at once, while
	// the existing ones still hear the lot's last changes (Server.Shutdown
	// sets it before the lot recalls its calls).
	refusing bool
	closed   bool
}

// contact is our Contact in sub: at the TLS address for a subscription
// over TLS, sips: when its SUBSCRIBE named a sips: URI (RFC 3261 §12.1.1,
// RFC 6665 §4.1.2.2: the NOTIFYs are a dialog's requests).
func (b *blfService) contact(sub *subscription) sip.Uri {
	if b.tlsAddr.IsValid() && strings.EqualFold(sub.network, "TLS") {
		if sub.sips {
			return sipsURI(sub.user, b.tlsAddr)
		}
		return tlsURI(sub.user, b.tlsAddr)
	}
	return sipURI(sub.user, b.addr)
}

// newBLF checks cfg, fills in its defaults and starts observing cfg.Lot.
// Errors name the field at fault.
func newBLF(cfg blfConfig) (*blfService, error) {
	if cfg.Lot == nil {
		return nil, errors.New("sipadapter: blfConfig.Lot is nil")
	}
	if cfg.Client == nil {
		return nil, errors.New("sipadapter: blfConfig.Client is nil")
	}
	if !cfg.Addr.IsValid() {
		return nil, errors.New("sipadapter: blfConfig.Addr is unset: name the host:port phones reach")
	}
	if cfg.Addr.Port() == 0 {
		return nil, fmt.Errorf("sipadapter: blfConfig.Addr %s has port 0: name the port phones reach", cfg.Addr)
	}
	b := &blfService{
		lot:     cfg.Lot,
		client:  cfg.Client,
		parkExt: cfg.ParkExtension,
		addr:    cfg.Addr,
		tlsAddr: cfg.TLSAddr,
		log:     cfg.Logger,
		subs:    make(map[string]*subscription),

		perSourceCap: cfg.SubscriptionsPerSource,
		perSource:    make(map[netip.Addr]int),
	}
	if b.perSourceCap == 0 {
		b.perSourceCap = DefaultSubscriptionsPerSource
	}
	var err error
	if b.trusted, err = maskedPrefixes("BLFConfig.Trusted", cfg.Trusted); err != nil {
		return nil, err
	}
	table := cfg.Orbits
	if table == nil {
		var err error
		if table, err = orbit.ParseTable(park.DefaultOrbits); err != nil {
			return nil, err
		}
	}
	b.table.Store(table)
	if b.parkExt == "" {
		b.parkExt = DefaultParkExtension
	}
	if servesOrbit(b.table.Load(), orbit.Orbit(b.parkExt)) {
		return nil, fmt.Errorf("sipadapter: blfConfig.ParkExtension %q lies inside an orbit range", b.parkExt)
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.stopObserving = b.lot.Observe(park.ObserverFunc(b.observe))
	return b, nil
}

// Watches reports whether a SUBSCRIBE whose Request-URI user is user is
// one for this BLF: the park extension or an orbit it serves. A host
// routing SUBSCRIBEs among its own services asks it first; ServeSubscribe
// answers 404 for any other user.
func (b *blfService) Watches(user string) bool {
	return user == b.parkExt || servesOrbit(b.table.Load(), orbit.Orbit(user))
}

// Len returns the number of subscriptions alive.
func (b *blfService) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// subscription is one BLF watcher (RFC 4235 dialog event package): of one
// orbit, or of the whole lot when it subscribed to the park extension.
type subscription struct {
	b       *blfService
	key     string
	orbit   orbit.Orbit // empty: the whole lot
	user    string      // the Request-URI user it watches: an orbit or the park extension
	entity  string
	callID  string
	ourTag  string
	remote  sip.FromHeader // the subscriber, as To of our NOTIFYs
	target  sip.Uri        // its Contact
	network string
	sips    bool       // its SUBSCRIBE named a sips: URI (over TLS: Tracked refuses it otherwise)
	conn    string     // over TLS, the watcher's connection (its SUBSCRIBE's source)
	source  netip.Addr // counted in blfService.perSource while in subs; zero: not counted

	mu      sync.Mutex // serialises NOTIFYs so versions go out in order
	cseq    uint32
	version int
	expires *time.Timer
	ended   bool

	// Lot changes queue here and one goroutine at a time sends them, so
	// the lot's event delivery never waits on a watcher's network.
	qmu     sync.Mutex
	queue   []blfUpdate
	pumping bool
}

// blfUpdate is one NOTIFY waiting to be sent: the state at the change.
type blfUpdate struct {
	dialogs []blfDialog
	state   string
}

// spawn runs f as a task Close waits for, unless the BLF service is closed.
func (b *blfService) spawn(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.tasks.Go(f)
	return true
}

// enqueue queues a NOTIFY and makes sure a goroutine is sending. Once the
// BLF is closed nothing more is queued: the final NOTIFY carries the state.
func (sub *subscription) enqueue(u blfUpdate) {
	sub.qmu.Lock()
	sub.queue = append(sub.queue, u)
	start := !sub.pumping
	sub.pumping = true
	sub.qmu.Unlock()
	if start && !sub.b.spawn(sub.pump) {
		sub.qmu.Lock()
		sub.queue, sub.pumping = nil, false
		sub.qmu.Unlock()
	}
}

func (sub *subscription) pump() {
	for {
		sub.qmu.Lock()
		// Once Close has given up waiting, the rest of the queue is
		// dropped rather than failed one NOTIFY at a time.
		if len(sub.queue) == 0 || sub.b.ctx.Err() != nil {
			sub.queue, sub.pumping = nil, false
			sub.qmu.Unlock()
			return
		}
		u := sub.queue[0]
		sub.queue = sub.queue[1:]
		sub.qmu.Unlock()
		sub.notify(sub.b.ctx, u.dialogs, u.state, false)
	}
}

// handlerContext is the parent of a NOTIFY sent from within ServeSubscribe.
// Until Close it is the BLF service's own, which Close cancels. After it, it is not
// cancelled: the NOTIFY telling a late watcher that the lot is gone still
// gets its 5 s.
func (b *blfService) handlerContext() context.Context {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return context.WithoutCancel(b.ctx)
	}
	return b.ctx
}

// ServeSubscribe serves a SUBSCRIBE for the dialog event package to an
// orbit or to the park extension. It has the shape of a sipgo.RequestHandler
// (srv.OnSubscribe(blf.ServeSubscribe)); a host with its own OnSubscribe
// calls it for the users Watches names. It answers:
//
//   - 489 Bad Event with Allow-Events for any other event package;
//   - 404 for a Request-URI user not watched;
//   - 400 for a bad Expires or a SUBSCRIBE without From, Contact or Call-ID;
//   - 481 for a refresh (To tag present) of no live subscription;
//   - otherwise 200 with the granted Expires (1 min to 1 h, 1 h by default),
//     then a NOTIFY with the current state. Expires: 0 on a new SUBSCRIBE is
//     a fetch (one NOTIFY, terminated;reason=timeout); on a refresh it
//     unsubscribes with a final NOTIFY. After Close, or while Server shuts
//     down, a new subscription's first NOTIFY is its last
//     (terminated;reason=noresource).
//
// It returns once the response is sent; NOTIFYs of a fetch, an unsubscribe
// or a refusal are sent before it returns, the others are queued.
func (b *blfService) ServeSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	ev := req.GetHeader("Event")
	if ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "dialog") {
		// refer is listed too: the implicit subscription of a REFER that
		// transfers a call into park (RFC 3515).
		Reply(b.log, req, tx, 489, "Bad Event", sip.NewHeader("Allow-Events", "dialog, refer"))
		return
	}
	expiry := defaultSubscriptionExpiry
	if h := req.GetHeader("Expires"); h != nil {
		secs, err := strconv.Atoi(strings.TrimSpace(h.Value()))
		if err != nil || secs < 0 {
			Reply(b.log, req, tx, sip.StatusBadRequest, "Bad Request", warning("bad Expires"))
			return
		}
		expiry = min(max(time.Duration(secs)*time.Second, minSubscriptionExpiry), maxSubscriptionExpiry)
		if secs == 0 {
			expiry = 0
		}
	}

	// A refresh or an unsubscribe arrives inside the subscription's dialog.
	if to := req.To(); to != nil && to.Params.Has("tag") {
		key, _ := requestKey(req)
		b.mu.Lock()
		sub := b.subs[key]
		b.mu.Unlock()
		if sub == nil {
			Reply(b.log, req, tx, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog)
			return
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
		respond(b.log, tx, res)
		if expiry == 0 {
			b.end(b.handlerContext(), sub, "terminated;reason=timeout")
			return
		}
		sub.expires.Reset(expiry)
		sub.enqueue(blfUpdate{dialogs: b.dialogState(sub.orbit), state: "active;expires=" + strconv.Itoa(int(expiry/time.Second))})
		return
	}

	user := URIUser(req.Recipient)
	var o orbit.Orbit
	switch {
	case user == b.parkExt:
	case servesOrbit(b.table.Load(), orbit.Orbit(user)):
		o = orbit.Orbit(user)
	default:
		Reply(b.log, req, tx, sip.StatusNotFound, "Not Found")
		return
	}
	contact := req.Contact()
	from := req.From()
	if contact == nil || from == nil || req.CallID() == nil {
		Reply(b.log, req, tx, sip.StatusBadRequest, "Bad Request", warning("SUBSCRIBE needs From, Contact and Call-ID"))
		return
	}
	sub := &subscription{
		b:       b,
		orbit:   o,
		user:    user,
		entity:  userURI(user, b.addr),
		callID:  req.CallID().Value(),
		ourTag:  sip.GenerateTagN(16),
		remote:  sip.FromHeader{DisplayName: from.DisplayName, Address: *from.Address.Clone(), Params: from.Params.Clone()},
		target:  *contact.Address.Clone(),
		network: req.Transport(),
		sips:    strings.EqualFold(req.Recipient.Scheme, "sips"),
		cseq:    1,
	}
	if strings.EqualFold(sub.network, "TLS") {
		sub.conn = req.Source()
	}
	sub.key = dialogKey(sub.callID, sub.ourTag, fromTag(req))
	if src := requestSource(req).Addr(); expiry > 0 && !b.admit(sub, src) {
		Reply(b.log, req, tx, sip.StatusServiceUnavailable, "Service Unavailable", retryAfter(),
			warning(fmt.Sprintf("too many subscriptions from %s", src)))
		return
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	res.To().Params.Add("tag", sub.ourTag)
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expiry/time.Second))))
	res.AppendHeader(&sip.ContactHeader{Address: b.contact(sub)})
	respond(b.log, tx, res)

	if expiry == 0 {
		// A fetch (RFC 6665 §4.4.3): one NOTIFY with the state, then done.
		sub.notify(b.handlerContext(), b.dialogState(o), "terminated;reason=timeout", true)
		return
	}
	b.mu.Lock()
	if b.refusing || b.closed {
		b.releaseLocked(sub)
		b.mu.Unlock()
		sub.notify(b.handlerContext(), b.dialogState(o), "terminated;reason=noresource", true)
		return
	}
	// The first NOTIFY is queued before the subscription can see a lot
	// change, so the watcher gets the states in order. The subscription is
	// not shared yet, so its queue is filled without its lock.
	sub.queue = []blfUpdate{{dialogs: b.dialogState(o), state: "active;expires=" + strconv.Itoa(int(expiry/time.Second))}}
	sub.pumping = true
	b.subs[sub.key] = sub
	sub.expires = time.AfterFunc(expiry, func() {
		b.spawn(func() { b.end(b.ctx, sub, "terminated;reason=timeout") })
	})
	b.tasks.Go(sub.pump)
	b.mu.Unlock()
}

// end forgets a subscription and sends its final NOTIFY.
func (b *blfService) end(ctx context.Context, sub *subscription, state string) {
	b.mu.Lock()
	if b.subs[sub.key] != sub {
		b.mu.Unlock()
		return
	}
	delete(b.subs, sub.key)
	b.releaseLocked(sub)
	b.mu.Unlock()
	sub.expires.Stop()
	sub.notify(ctx, b.dialogState(sub.orbit), state, true)
}

// admit counts sub against its source's cap, or reports false when the
// source holds the cap already. A trusted or unknown source is not counted.
func (b *blfService) admit(sub *subscription, src netip.Addr) bool {
	if b.perSourceCap < 0 || trusts(b.trusted, src) {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.perSource[src] >= b.perSourceCap {
		return false
	}
	b.perSource[src]++
	sub.source = src
	return true
}

// releaseLocked gives back what admit counted for sub; b.mu is held.
func (b *blfService) releaseLocked(sub *subscription) {
	if !sub.source.IsValid() {
		return
	}
	if b.perSource[sub.source]--; b.perSource[sub.source] <= 0 {
		delete(b.perSource, sub.source)
	}
	sub.source = netip.Addr{}
}

// refuseNew makes new subscriptions end at once while the existing ones go
// on: Server.Shutdown calls it before the lot recalls its calls, since a
// phone subscribing then would watch a lot about to go.
func (b *blfService) refuseNew() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refusing = true
}

// Close ends the BLF: it stops observing the lot, sends every watcher a
// final NOTIFY (terminated;reason=noresource, RFC 6665: the resource is
// gone, so phones do not resubscribe at once) and waits for the NOTIFYs
// still queued, but no longer than ctx: then it cancels those in flight and
// returns ctx's error. SUBSCRIBEs served afterwards are answered with a
// terminated NOTIFY. A host closes the BLF service once its lot has shut down, so
// that watchers have heard the lot empty first. Calling Close again waits
// again.
func (b *blfService) Close(ctx context.Context) error {
	b.closeOnce.Do(b.stopObserving)
	b.mu.Lock()
	b.closed = true
	subs := b.subs
	b.subs = make(map[string]*subscription)
	for _, sub := range subs {
		b.releaseLocked(sub)
		sub.expires.Stop()
		b.tasks.Go(func() {
			sub.notify(b.ctx, b.dialogState(sub.orbit), "terminated;reason=noresource", true)
		})
	}
	b.mu.Unlock()

	done := make(chan struct{})
	go func() {
		b.tasks.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	b.cancel()
	<-done
	return err
}

// observe turns lot events into NOTIFYs for the orbit's watchers and the
// whole lot's.
func (b *blfService) observe(e park.Event) {
	if e.Kind != park.EventParked && e.Kind != park.EventEnded {
		return
	}
	b.mu.Lock()
	if b.closed {
		// The lot may deliver an event it had in hand when Close stopped
		// the observation.
		b.mu.Unlock()
		return
	}
	var watchers []*subscription
	for _, sub := range b.subs {
		if sub.orbit == "" || sub.orbit == e.Call.Orbit {
			watchers = append(watchers, sub)
		}
	}
	b.mu.Unlock()
	// One snapshot per watched orbit (or the whole lot), however many watch it.
	states := make(map[orbit.Orbit][]blfDialog, 2)
	for _, sub := range watchers {
		state, ok := states[sub.orbit]
		if !ok {
			state = b.dialogState(sub.orbit)
			states[sub.orbit] = state
		}
		state = slices.Clip(state) // each watcher appends its own terminated entry
		if e.Kind == park.EventEnded {
			state = append(state, blfDialog{ID: e.Call.ParkID, Orbit: e.Call.Orbit, Party: e.Call.Party, State: "terminated"})
		}
		sub.enqueue(blfUpdate{dialogs: state, state: "active"})
	}
}
