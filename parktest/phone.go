package parktest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/siptransport"
	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// queueLen bounds the Incoming and Transfers channels and each
// subscription's notifications: far more than a test leaves unread.
const queueLen = 64

// closeHangupBudget bounds how long Close waits for the BYEs of the calls
// still up: a peer that is gone must not make Close hang for Timer F.
const closeHangupBudget = time.Second

// Phone is a scripted SIP phone on a loopback port, built on sipgo. It calls
// (Call), answers by policy (SetAnswer, Incoming), counts what reaches it
// (Inbox), transfers (Call.Refer, Transfers), registers (Register) and
// subscribes (Subscribe). A Phone is safe for concurrent use.
type Phone struct {
	user          string
	password      string
	reinviteDelay time.Duration // PhoneOptions.ReInviteAnswerDelay
	transport     string        // "UDP", "TCP" or "TLS", as sipgo writes them
	tlsConfig     *tls.Config   // PhoneOptions.TLS
	codecs        []media.Codec
	log           *slog.Logger
	addr          netip.AddrPort
	uri           sip.Uri
	contact       sip.ContactHeader

	ua       *sipgo.UserAgent
	client   *sipgo.Client
	listener io.Closer
	udp      *siptransport.Listener // the UDP listener, nil over TCP
	served   chan struct{}          // closed when the serve goroutine returns
	sched    *media.Scheduler
	tone     *media.Clip

	draining atomic.Bool // Close has begun dropping whatever arrives over TCP

	inbox     *Inbox
	refer     ReferHandler         // PhoneOptions.OnRefer, fixed at start
	events    map[string]*Notifier // PhoneOptions.Serve by package, fixed at start
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
	answer   AnswerPolicy

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
	events, err := checkServe(opts.Serve)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Phone{
		user:          opts.User,
		password:      opts.Password,
		reinviteDelay: opts.ReInviteAnswerDelay,
		transport:     transport,
		tlsConfig:     opts.TLS,
		codecs:        opts.Codecs,
		log:           log,
		served:        make(chan struct{}),
		incoming:      make(chan *Call, queueLen),
		transfers:     make(chan *Call, queueLen),
		closing:       make(chan struct{}),
		refer:         opts.OnRefer,
		calls:         make(map[string]*Call),
		subs:          make(map[string]*Subscription),
		watchers:      make(map[string]*watcher),
		events:        events,

		registrations: make(map[string]*registration),
	}
	p.inbox = newInbox(p.closing)
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
	var bound []*Notifier
	for _, n := range events {
		if !n.phone.CompareAndSwap(nil, p) {
			for _, b := range bound {
				b.phone.Store(nil)
			}
			_ = p.Close()
			return nil, fmt.Errorf("%w: PhoneOptions.Serve: Notifier %q already serves another phone", ErrInvalidOptions, n.Event)
		}
		bound = append(bound, n)
	}
	return p, nil
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

// Inbox returns what reached the phone from outside its calls: INVITEs,
// CANCELs and MESSAGEs, counted and waited for.
func (p *Phone) Inbox() *Inbox { return p.inbox }

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
