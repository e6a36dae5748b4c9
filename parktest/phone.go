package parktest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/sipreason"
	"github.com/callpark/callpark/internal/siptransport"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// PhoneOptions configures a Phone. The zero value of every optional field
// means its default.
type PhoneOptions struct {
	// User is the user part of the phone's URI ("alice" in
	// sip:alice@127.0.0.1:PORT). Required.
	User string
	// Transport is "udp" (the default) or "tcp": the phone listens on it and
	// sends every request over it.
	Transport string
	// Codecs are offered in this order and accepted in answers; empty means
	// PCMU then PCMA.
	Codecs []media.Codec
	// Logger receives the phone's and sipgo's records; nil keeps the phone
	// silent.
	Logger *slog.Logger
	// Password answers digest challenges (401 or 407, RFC 2617 MD5) to
	// REGISTER (Register) and INVITE (Call), with User as the username;
	// empty leaves challenges unanswered, as *StatusError.
	Password string
}

// AnswerMode is what a phone does with an incoming call (see AnswerPolicy).
type AnswerMode int

// The answer modes. Every incoming INVITE is answered 180 Ringing first.
const (
	// AutoAnswer answers 200 OK after AnswerPolicy.Delay.
	AutoAnswer AnswerMode = iota
	// Reject answers AnswerPolicy.Code after AnswerPolicy.Delay: a parker
	// declining a recall with 486, 603 or 480.
	Reject
	// NoAnswer rings until the caller cancels: a recall that times out.
	NoAnswer
)

// String returns the mode's name.
func (m AnswerMode) String() string {
	switch m {
	case AutoAnswer:
		return "AutoAnswer"
	case Reject:
		return "Reject"
	case NoAnswer:
		return "NoAnswer"
	}
	return fmt.Sprintf("AnswerMode(%d)", int(m))
}

// AnswerPolicy is how a phone answers incoming calls. The zero value answers
// at once and sends audio.
type AnswerPolicy struct {
	// Mode is what to do with the call.
	Mode AnswerMode
	// Delay is how long the phone rings before answering or rejecting; a
	// CANCEL during it ends the attempt (counted by Cancels).
	Delay time.Duration
	// Code is Reject's final status, 300 to 699; zero means 486 Busy Here.
	Code int
	// Mute keeps answered calls silent until Call.StartAudio; by default
	// they send a tone from the answer on, as a real phone streams RTP.
	Mute bool
	// Headers are added to the final answer, 200 or rejection: a phone
	// playing a park server answers with X-Park-Orbit.
	Headers []sip.Header
}

// check validates the policy and applies its defaults.
func (a AnswerPolicy) check() (AnswerPolicy, error) {
	switch a.Mode {
	case AutoAnswer, NoAnswer:
	case Reject:
		if a.Code == 0 {
			a.Code = sip.StatusBusyHere
		}
		if a.Code < 300 || a.Code > 699 {
			return a, fmt.Errorf("%w: AnswerPolicy.Code %d, want 300 to 699", ErrInvalidOptions, a.Code)
		}
	default:
		return a, fmt.Errorf("%w: AnswerPolicy.Mode %v", ErrInvalidOptions, a.Mode)
	}
	if a.Delay < 0 {
		return a, fmt.Errorf("%w: AnswerPolicy.Delay %v is negative", ErrInvalidOptions, a.Delay)
	}
	return a, nil
}

// Message is a MESSAGE request the phone received: the park server's
// "Parked at 701".
type Message struct {
	From        string // the From URI
	ContentType string // the Content-Type header, empty if none
	Body        string
}

// queueLen bounds the Incoming and Transfers channels and each
// subscription's notifications: far more than a test leaves unread.
const queueLen = 64

// closeHangupBudget bounds how long Close waits for the BYEs of the calls
// still up: a peer that is gone must not make Close hang for Timer F.
const closeHangupBudget = time.Second

// Phone is a scripted SIP phone on a loopback port, built on sipgo. It calls
// (Call), answers by policy (SetAnswer, Incoming), transfers (Call.Refer),
// subscribes (Subscribe), and plays the server's side of REFER and SUBSCRIBE
// for tests that have no server (OnRefer, ServeSubscriptions). A Phone is safe
// for concurrent use.
type Phone struct {
	user      string
	password  string
	transport string // "UDP" or "TCP", as sipgo writes them
	codecs    []media.Codec
	log       *slog.Logger
	addr      netip.AddrPort
	uri       sip.Uri
	contact   sip.ContactHeader

	ua       *sipgo.UserAgent
	client   *sipgo.Client
	listener io.Closer
	udp      *siptransport.Listener // the UDP listener, nil over TCP
	served   chan struct{}          // closed when the serve goroutine returns
	sched    *media.Scheduler
	tone     *media.Clip

	draining atomic.Bool // Close has begun dropping whatever arrives over TCP

	incoming  chan *Call
	transfers chan *Call
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup // operations and handlers in progress

	mu       sync.Mutex
	closed   bool
	calls    map[string]*Call
	subs     map[string]*Subscription
	watchers map[string]*watcher
	events   map[string]servedEvent
	answer   AnswerPolicy
	refer    ReferHandler
	invites  int
	cancels  int
	messages []Message
	changed  chan struct{} // closed and replaced on every counter change

	// registrations holds the Call-ID and CSeq of the phone's REGISTERs,
	// by registrar URI (see Register).
	registrations map[string]*registration
}

// NewPhone starts a phone (see StartPhone), registers its Close with
// t.Cleanup and fails the test if it cannot start.
func NewPhone(t testing.TB, opts PhoneOptions) *Phone {
	t.Helper()
	p, err := StartPhone(opts)
	if err != nil {
		t.Fatalf("parktest.NewPhone: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// StartPhone starts a phone listening on 127.0.0.1 on a free port of
// opts.Transport. Close it when done. Use NewPhone in tests; StartPhone is for
// code that has no testing.TB, such as examples and tools.
func StartPhone(opts PhoneOptions) (*Phone, error) {
	transport, err := checkPhoneOptions(&opts)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Phone{
		user:      opts.User,
		password:  opts.Password,
		transport: transport,
		codecs:    opts.Codecs,
		log:       log,
		served:    make(chan struct{}),
		incoming:  make(chan *Call, queueLen),
		transfers: make(chan *Call, queueLen),
		closing:   make(chan struct{}),
		calls:     make(map[string]*Call),
		subs:      make(map[string]*Subscription),
		watchers:  make(map[string]*watcher),
		events:    make(map[string]servedEvent),
		changed:   make(chan struct{}),

		registrations: make(map[string]*registration),
	}
	if len(p.codecs) == 0 {
		p.codecs = []media.Codec{media.PCMU, media.PCMA}
	}
	p.tone, err = media.Tone("parktest 440 Hz", 440, time.Second)
	if err != nil {
		return nil, fmt.Errorf("parktest: tone: %w", err)
	}
	if err := p.start(); err != nil {
		return nil, err
	}
	return p, nil
}

// checkPhoneOptions validates opts and returns the transport as sipgo
// spells it.
func checkPhoneOptions(opts *PhoneOptions) (string, error) {
	if opts.User == "" {
		return "", fmt.Errorf("%w: PhoneOptions.User is empty", ErrInvalidOptions)
	}
	if strings.ContainsAny(opts.User, " \t\r\n<>@:;?\"") {
		return "", fmt.Errorf("%w: PhoneOptions.User %q: want a SIP user part without spaces or <>@:;?\"", ErrInvalidOptions, opts.User)
	}
	var transport string
	switch strings.ToLower(opts.Transport) {
	case "", "udp":
		transport = "UDP"
	case "tcp":
		transport = "TCP"
	default:
		return "", fmt.Errorf("%w: PhoneOptions.Transport %q, want udp or tcp", ErrInvalidOptions, opts.Transport)
	}
	for _, c := range opts.Codecs {
		if !c.Valid() {
			return "", fmt.Errorf("%w: PhoneOptions.Codecs holds %v, want PCMU or PCMA", ErrInvalidOptions, c)
		}
	}
	return transport, nil
}

// start opens the listener and the sipgo stack and serves requests.
func (p *Phone) start() error {
	loopback := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	var (
		tcp   *net.TCPListener
		local netip.AddrPort
	)
	if p.transport == "UDP" {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return fmt.Errorf("parktest: listen udp: %w", err)
		}
		p.udp = siptransport.NewListener(c)
		local = c.LocalAddr().(*net.UDPAddr).AddrPort()
		p.listener = c
	} else {
		l, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
		if err != nil {
			return fmt.Errorf("parktest: listen tcp: %w", err)
		}
		tcp = l
		local = l.Addr().(*net.TCPAddr).AddrPort()
		p.listener = l
	}
	p.addr = local
	p.uri = sip.Uri{Scheme: "sip", User: p.user, Host: local.Addr().String(), Port: int(local.Port())}
	if p.transport == "TCP" {
		p.uri.UriParams = sip.NewParams()
		p.uri.UriParams.Add("transport", "tcp")
	}
	p.contact = sip.ContactHeader{Address: *p.uri.Clone()}

	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("parktest"),
		sipgo.WithUserAgentHostname(local.Addr().String()),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(p.log),
			sip.WithTransactionLayerUnhandledResponseHandler(p.onStrayResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(p.log),
			sip.WithTransportLayerReadFilter(p.readFilter),
		),
	)
	if err != nil {
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo user agent: %w", err)
	}
	clientOpts := []sipgo.ClientOption{sipgo.WithClientLogger(p.log)}
	if p.transport == "UDP" {
		// Requests leave from the listening socket, so the peer's responses
		// and its later requests (to our Contact) reach the same port.
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(local.String()))
	}
	client, err := sipgo.NewClient(ua, clientOpts...)
	if err != nil {
		_ = ua.Close()
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo client: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(p.log))
	if err != nil {
		_ = ua.Close()
		_ = p.listener.Close()
		return fmt.Errorf("parktest: sipgo server: %w", err)
	}
	p.ua, p.client = ua, client
	srv.OnInvite(p.handler(p.onInvite))
	srv.OnAck(p.handler(p.onAck))
	srv.OnBye(p.handler(p.onBye))
	srv.OnCancel(p.handler(p.onCancel))
	srv.OnRefer(p.handler(p.onRefer))
	srv.OnNotify(p.handler(p.onNotify))
	srv.OnSubscribe(p.handler(p.onSubscribe))
	srv.OnMessage(p.handler(p.onMessage))
	srv.OnOptions(p.handler(p.onOptions))
	srv.OnNoRoute(p.handler(p.onNoRoute))

	sched := media.NewScheduler(media.SchedulerOptions{Shards: 1, Logger: p.log})
	p.sched = sched
	go func() {
		defer close(p.served)
		var err error
		if p.udp != nil {
			defer p.udp.Stopped()
			err = srv.ServeUDP(p.udp)
		} else {
			err = srv.ServeTCP(tcp)
		}
		if err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.Warn("parktest: serve stopped", "error", err)
		}
	}()
	if p.udp != nil {
		// sipgo registers the socket for sending only once it reads it; a
		// request sent before would fail to bind the same address.
		select {
		case <-p.udp.Reading():
		case <-p.served:
			_ = ua.Close()
			sched.Close()
			return fmt.Errorf("parktest: serve udp %v stopped at start", local)
		}
	}
	return nil
}

// readFilter sees every datagram or stream chunk before sipgo parses it:
// once Close drains the phone it drops everything that comes over TCP (the
// UDP listener drops datagrams itself, see drain).
func (p *Phone) readFilter(props sip.TransportReadProps, data []byte) ([]byte, error) {
	if p.draining.Load() {
		return nil, nil
	}
	return data, nil
}

// drain stops the phone from taking anything in, so that no request read
// before Close can make sipgo open a socket after it: over UDP, the
// shared listener's Drain and Pin (siptransport) point every sender, and
// the phone's own address, at a stand-in for the listener in sipgo's pool.
func (p *Phone) drain() {
	p.draining.Store(true)
	if p.udp == nil {
		return
	}
	peers := p.udp.Drain()
	p.udp.Pin(p.ua.TransportLayer().Pool("udp"), peers)
}

// URI returns the phone's SIP URI, sip:USER@127.0.0.1:PORT, with
// ;transport=tcp over TCP: what to dial to reach it, and what it puts in From
// and Contact.
func (p *Phone) URI() string { return p.uri.String() }

// Addr returns the address the phone listens on.
func (p *Phone) Addr() netip.AddrPort { return p.addr }

// SetAnswer sets how the phone answers the INVITEs that arrive from now on.
// An invalid policy (a Reject code out of 300-699, a negative delay) leaves
// the current one and returns an error wrapping ErrInvalidOptions.
func (p *Phone) SetAnswer(policy AnswerPolicy) error {
	policy, err := policy.check()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.answer = policy
	p.mu.Unlock()
	return nil
}

// Incoming delivers the incoming calls the phone answered, once their ACK has
// arrived. It holds up to 64 calls that nobody has read; calls beyond that are
// still answered but not delivered (and logged).
func (p *Phone) Incoming() <-chan *Call { return p.incoming }

// Transfers delivers the calls the phone set up by following a REFER (see
// ReferReply.Follow), same capacity as Incoming.
func (p *Phone) Transfers() <-chan *Call { return p.transfers }

// Invites returns how many new INVITEs (not re-INVITEs) have arrived.
func (p *Phone) Invites() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.invites
}

// Cancels returns how many ringing INVITEs the caller cancelled.
func (p *Phone) Cancels() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cancels
}

// Messages returns the MESSAGE requests received so far, oldest first.
func (p *Phone) Messages() []Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.messages)
}

// WaitInvites waits until at least n new INVITEs have arrived.
func (p *Phone) WaitInvites(ctx context.Context, n int) error {
	return p.waitUntil(ctx, func() bool { return p.invites >= n })
}

// WaitCancels waits until at least n ringing INVITEs have been cancelled.
func (p *Phone) WaitCancels(ctx context.Context, n int) error {
	return p.waitUntil(ctx, func() bool { return p.cancels >= n })
}

// WaitMessages waits until at least n MESSAGEs have arrived and returns them
// all.
func (p *Phone) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	if err := p.waitUntil(ctx, func() bool { return len(p.messages) >= n }); err != nil {
		return nil, err
	}
	return p.Messages(), nil
}

// waitUntil waits until cond, evaluated under p.mu, holds.
func (p *Phone) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		p.mu.Lock()
		ok, changed := cond(), p.changed
		p.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-p.closing:
			return ErrPhoneClosed
		}
	}
}

// bumpLocked wakes the waiters of waitUntil; p.mu must be held.
func (p *Phone) bumpLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Options sends an out-of-dialog OPTIONS to target and returns its final
// response, whatever its status.
func (p *Phone) Options(ctx context.Context, target string) (*sip.Response, error) {
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	u, headers, err := parseTarget(target)
	if err != nil {
		return nil, err
	}
	req := p.newUACDialog(u).newRequest(sip.OPTIONS)
	for _, h := range headers {
		req.AppendHeader(h)
	}
	req.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	return p.do(ctx, req)
}

// Send is the escape hatch for requests a test builds by hand, odd or
// malformed on purpose (an unknown method, a SUBSCRIBE without Event, an
// INVITE to a bad orbit). It adds only what RFC 3261 §8.1.1 requires and req
// lacks (From with a tag, To, Call-ID, CSeq, Max-Forwards; Via when sent),
// sends it over the phone's transport out of any dialog, and returns the
// final response, whatever its status. A 2xx to an INVITE is not
// acknowledged: use Call for calls. ACK and CANCEL are refused, having no
// response to wait for. In-dialog requests go through Call.Send.
func (p *Phone) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.IsAck() || req.IsCancel() {
		return nil, fmt.Errorf("%w: Send: method %s has no response to wait for", ErrInvalidOptions, req.Method)
	}
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	d := p.newUACDialog(req.Recipient)
	model := d.newRequest(req.Method)
	for _, name := range []string{"From", "To", "Call-ID", "Max-Forwards"} {
		if req.GetHeader(name) == nil {
			req.AppendHeader(sip.HeaderClone(model.GetHeader(name)))
		}
	}
	if req.CSeq() == nil {
		req.AppendHeader(sip.HeaderClone(model.CSeq()))
	}
	if req.ContentLength() == nil {
		req.SetBody(req.Body())
	}
	req.SetTransport(p.transport)
	return p.do(ctx, req)
}

// do sends req in a client transaction and returns its final response.
func (p *Phone) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	target := req.Recipient.String()
	tx, err := p.client.TransactionRequest(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s: %v", ErrTransaction, req.Method, target, err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.IsProvisional() {
				continue
			}
			return res, nil
		case <-tx.Done():
			return nil, txError(req.Method, target, tx.Err())
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-p.closing:
			return nil, ErrPhoneClosed
		}
	}
}

// txError reports a transaction that ended without a final response.
func txError(method sip.RequestMethod, target string, err error) error {
	if err == nil {
		return fmt.Errorf("%w: %s %s: transaction ended", ErrTransaction, method, target)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrTransaction, method, target, err)
}

// enter registers an operation or a request handler with Close, which waits
// for them; it reports false once the phone is closing.
func (p *Phone) enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

func (p *Phone) leave() { p.wg.Done() }

// handler wraps a request handler so that Close waits for it, and answers
// 503 once the phone is closing.
func (p *Phone) handler(h func(*sip.Request, sip.ServerTransaction)) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if !p.enter() {
			if !req.IsAck() {
				p.respond(tx, req, sip.StatusServiceUnavailable, "Service Unavailable", nil)
			}
			return
		}
		defer p.leave()
		h(req, tx)
	}
}

// respond answers req; a failure (the peer went away) is only logged.
func (p *Phone) respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, body []byte, headers ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range headers {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		p.log.Debug("parktest: respond failed", "request", req.StartLine(), "status", code, "error", err)
	}
}

// allowHeader lists the methods the phone handles, for 405 and OPTIONS.
func allowHeader() sip.Header {
	return sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, SUBSCRIBE, MESSAGE")
}

func (p *Phone) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	p.respond(tx, req, sip.StatusOK, "OK", nil, allowHeader(),
		sip.NewHeader("Accept", "application/sdp"), sip.NewHeader("Allow-Events", "refer, dialog"))
}

func (p *Phone) onNoRoute(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	p.respond(tx, req, sip.StatusMethodNotAllowed, "Method Not Allowed", nil, allowHeader())
}

func (p *Phone) onMessage(req *sip.Request, tx sip.ServerTransaction) {
	m := Message{From: req.From().Address.String(), Body: string(req.Body())}
	if ct := req.ContentType(); ct != nil {
		m.ContentType = ct.Value()
	}
	p.mu.Lock()
	p.messages = append(p.messages, m)
	p.bumpLocked()
	p.mu.Unlock()
	p.respond(tx, req, sip.StatusOK, "OK", nil)
}

// onCancel sees only CANCELs that match no INVITE transaction: sipgo answers
// the others itself and tells the INVITE's handler (see answerIncoming).
func (p *Phone) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	p.respond(tx, req, sip.StatusCallTransactionDoesNotExists, sipreason.NoDialog, nil)
}

// onStrayResponse gets the responses no client transaction wants: the
// retransmitted 2xx of an INVITE whose transaction the phone already ended,
// because its ACK was lost. It sends that ACK again (RFC 3261 §13.2.2.4).
func (p *Phone) onStrayResponse(res *sip.Response) {
	if !p.enter() {
		return
	}
	defer p.leave()
	cseq := res.CSeq()
	if !res.IsSuccess() || cseq == nil || cseq.MethodName != sip.INVITE || res.CallID() == nil || res.From() == nil {
		p.log.Debug("parktest: stray response ignored", "response", res.Short())
		return
	}
	tag, _ := res.From().Params.Get("tag")
	p.mu.Lock()
	c := p.calls[dialogKey(res.CallID().Value(), tag)]
	p.mu.Unlock()
	if c == nil {
		p.log.Debug("parktest: stray 2xx for no call", "response", res.Short())
		return
	}
	c.resendAck(cseq.SeqNo)
}

// Close hangs up the phone's calls (waiting at most a second for the BYEs'
// answers), stops its listener and waits for every goroutine it started.
// Waits in progress return ErrPhoneClosed. It is idempotent and returns nil.
func (p *Phone) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		calls := make([]*Call, 0, len(p.calls))
		for _, c := range p.calls {
			calls = append(calls, c)
		}
		p.mu.Unlock()

		// Say goodbye while the transport still runs.
		ctx, cancel := context.WithTimeout(context.Background(), closeHangupBudget)
		var byes sync.WaitGroup
		for _, c := range calls {
			byes.Go(func() { _ = c.hangup(ctx) })
		}
		byes.Wait()
		cancel()

		close(p.closing)
		p.wg.Wait()
		p.drain()
		_ = p.listener.Close()
		<-p.served
		if p.udp != nil {
			// Not ua.Close: clearing the UDP pool would drop the stand-ins
			// of drain. The pool holds no other socket: every request
			// leaves from the listener.
			p.ua.TransactionLayer().Close()
		} else {
			_ = p.ua.Close()
		}
		for _, c := range calls {
			c.end(false)
		}
		p.sched.Close()
	})
	return nil
}
