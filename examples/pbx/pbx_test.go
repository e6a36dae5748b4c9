package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
)

func TestMain(m *testing.M) {
	// sipgo logs a few transport warnings to its package logger (such as
	// "TCP ref went negative" when a test phone closes); not the PBX's.
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m,
		// sipgo's transport layer keeps package-level idle connection
		// janitors; they belong to the library, not to a leaked call.
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*connectionPool).startIdleCheck"),
	)
}

// testPBX runs a PBX on a free loopback port with a small RTP range and a
// short tone for music, and checks at the end that nothing was left: no
// dialog, no RTP port, no parked call, no BLF subscription.
func testPBX(t *testing.T, cfg Config) *PBX {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 16000, 16999
	}
	if cfg.Park.MusicOnHold == nil && !cfg.Park.DisableMusicOnHold {
		music, err := media.Tone("test music", 523, time.Second)
		require.NoError(t, err)
		cfg.Park.MusicOnHold = music
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = 5 * time.Second
	}
	if os.Getenv("CALLPARK_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	p, err := NewPBX(cfg)
	require.NoError(t, err)
	require.NoError(t, p.Listen(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, p.Shutdown(ctx))
		require.Zero(t, p.Lot().Len(), "parked calls left")
		require.Zero(t, p.legCount(), "SIP dialogs left")
		require.Zero(t, p.ports.InUse(), "RTP ports left")
		require.Zero(t, p.engine.Subscriptions(), "BLF subscriptions left")
	})
	return p
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// phone starts a scripted phone for ext and registers it with the PBX.
func phone(t *testing.T, p *PBX, ext string, opts parktest.PhoneOptions) *parktest.Phone {
	t.Helper()
	opts.User = ext
	ph := parktest.NewPhone(t, opts)
	_, err := ph.Register(ctxFor(t, 5*time.Second), "sip:"+p.Addr().String(), time.Hour)
	require.NoError(t, err)
	return ph
}

func statusOf(t *testing.T, err error) int {
	t.Helper()
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	return se.Code
}

// waitUntil polls cond (PBX state has no event to wait on).
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// talking checks that audio flows both ways through the PBX: each side
// receives n more packets than it had.
func talking(t *testing.T, ctx context.Context, a, b *parktest.Call, n uint64) {
	t.Helper()
	require.NoError(t, a.WaitReceived(ctx, a.Received()+n), "first party hears the second")
	require.NoError(t, b.WaitReceived(ctx, b.Received()+n), "second party hears the first")
}

// connected places a call from caller to the callee's extension and returns
// both ends.
func connected(t *testing.T, ctx context.Context, p *PBX, caller, callee *parktest.Phone, ext string) (*parktest.Call, *parktest.Call) {
	t.Helper()
	out, err := caller.Call(ctx, p.URI(ext), parktest.CallOptions{})
	require.NoError(t, err)
	return out, incoming(t, ctx, callee)
}

// ended waits until the call is over.
func ended(t *testing.T, ctx context.Context, c *parktest.Call) {
	t.Helper()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the call never ended")
	}
}

// incoming waits for the next call the phone answered.
func incoming(t *testing.T, ctx context.Context, ph *parktest.Phone) *parktest.Call {
	t.Helper()
	select {
	case in := <-ph.Incoming():
		return in
	case <-ctx.Done():
		t.Fatal("no call came in")
	}
	return nil
}

func TestCallBetweenExtensions(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{Codecs: []media.Codec{media.PCMA}})

	a, b := connected(t, ctx, p, alice, bob, "102")
	require.Equal(t, media.PCMA, b.Negotiated().Codec, "each leg keeps its own codec; the PBX transcodes")
	talking(t, ctx, a, b, 50)
	require.Contains(t, b.Header("From"), "sip:101@", "the callee sees the caller's extension")

	require.NoError(t, a.Hangup(ctx))
	select {
	case <-b.Done():
		require.True(t, b.EndedByRemote())
	case <-ctx.Done():
		t.Fatal("the callee never got the BYE")
	}
	waitUntil(t, 5*time.Second, "both legs are freed", func() bool { return p.legCount() == 0 })
}

func TestCallFailures(t *testing.T) {
	p := testPBX(t, Config{RingTimeout: time.Second})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	busy := phone(t, p, "102", parktest.PhoneOptions{})
	require.NoError(t, busy.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 486}))
	away := phone(t, p, "103", parktest.PhoneOptions{})
	require.NoError(t, away.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))

	_, err := alice.Call(ctx, p.URI("102"), parktest.CallOptions{})
	require.Equal(t, 486, statusOf(t, err), "busy")
	_, err = alice.Call(ctx, p.URI("103"), parktest.CallOptions{})
	require.Equal(t, 480, statusOf(t, err), "no answer within the ring time")
	require.NoError(t, away.Inbox().WaitCancels(ctx, 1), "the unanswered phone is cancelled")
	_, err = alice.Call(ctx, p.URI("150"), parktest.CallOptions{})
	require.Equal(t, 480, statusOf(t, err), "an extension with no phone registered")
	_, err = alice.Call(ctx, p.URI("999"), parktest.CallOptions{})
	require.Equal(t, 404, statusOf(t, err), "no such extension")
	_, err = alice.Call(ctx, p.URI("701"), parktest.CallOptions{})
	require.Equal(t, 404, statusOf(t, err), "an empty orbit")
}

func TestCallerCancelsWhileRinging(t *testing.T) {
	p := testPBX(t, Config{})
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	ctx := ctxFor(t, 10*time.Second)

	callCtx, cancel := context.WithCancel(ctx)
	go func() {
		_ = bob.Inbox().WaitInvites(ctx, 1)
		time.Sleep(100 * time.Millisecond) // let the 180 reach alice, so CANCEL is allowed
		cancel()
	}()
	_, err := alice.Call(callCtx, p.URI("102"), parktest.CallOptions{})
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 1), "the callee's phone stops ringing")
	waitUntil(t, 5*time.Second, "both legs are freed", func() bool { return p.legCount() == 0 && p.ports.InUse() == 0 })
}

func TestEveryRegisteredPhoneRingsAndTheFirstAnswerWins(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 10*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	desk := phone(t, p, "102", parktest.PhoneOptions{})
	require.NoError(t, desk.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	soft := phone(t, p, "102", parktest.PhoneOptions{})
	require.Len(t, p.Registrar().Contacts("102"), 2)

	a, err := alice.Call(ctx, p.URI("102"), parktest.CallOptions{})
	require.NoError(t, err)
	b := incoming(t, ctx, soft)
	require.NoError(t, desk.Inbox().WaitCancels(ctx, 1), "the phone that did not answer is cancelled")
	talking(t, ctx, a, b, 20)
	require.NoError(t, b.Hangup(ctx))
	ended(t, ctx, a)
}

// The flow: alice calls bob, bob transfers alice to 700, carol
// dials the orbit and talks to alice.
func TestBlindTransferToParkThenRetrieve(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	carol := phone(t, p, "103", parktest.PhoneOptions{Codecs: []media.Codec{media.PCMA}})

	a, b := connected(t, ctx, p, alice, bob, "102")
	talking(t, ctx, a, b, 10)
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, 202, res.Accepted)
	require.Equal(t, 200, res.FinalStatus, "notifies: %q", res.Notifies)
	require.Equal(t, "701", res.Orbit)
	require.True(t, strings.HasPrefix(res.Notifies[0], "SIP/2.0 100"), "NOTIFY 100 first: %q", res.Notifies)
	msgs, err := bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at 701", msgs[0].Body)
	require.NoError(t, b.Hangup(ctx), "the referrer leaves, the parked call stays")

	info, ok := p.Lot().Lookup("701")
	require.True(t, ok)
	require.Equal(t, p.URI("102"), info.Parker, "bob is the parker, so a recall rings his phones")
	require.Equal(t, p.URI("101"), info.Party)
	require.NoError(t, a.WaitReceived(ctx, a.Received()+25), "alice hears music while parked")
	select {
	case <-a.Done():
		t.Fatal("the parked call ended")
	default:
	}

	c, err := carol.Call(ctx, p.URI("701"), parktest.CallOptions{})
	require.NoError(t, err)
	talking(t, ctx, a, c, 50)
	require.Zero(t, p.Lot().Len())
	require.NoError(t, c.Hangup(ctx))
	ended(t, ctx, a)
}

// Either party may park the other: here the caller parks the callee, in
// the orbit it chose.
func TestCallerParksTheCalleeInAChosenOrbit(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := a.Refer(ctx, p.URI("750"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus, "notifies: %q", res.Notifies)
	require.Equal(t, "750", res.Orbit)
	require.NoError(t, a.Hangup(ctx))
	info, ok := p.Lot().Lookup("750")
	require.True(t, ok)
	require.Equal(t, p.URI("102"), info.Party)

	// A second park into the same orbit is refused and that call stays up.
	carol := phone(t, p, "103", parktest.PhoneOptions{})
	dave := phone(t, p, "104", parktest.PhoneOptions{})
	c, d := connected(t, ctx, p, carol, dave, "104")
	res, err = c.Refer(ctx, p.URI("750"))
	require.NoError(t, err)
	require.Equal(t, 486, res.FinalStatus, "notifies: %q", res.Notifies)
	talking(t, ctx, c, d, 20)
	require.NoError(t, c.Hangup(ctx))
	ended(t, ctx, d)
	require.NoError(t, b.Hangup(ctx), "the parked party hangs up")
	waitUntil(t, 5*time.Second, "the orbit is free", func() bool { return p.Lot().Len() == 0 })
}

// Attended transfer into park: bob consults the park extension (his own
// call is parked), then refers alice with Replaces; alice takes over the
// orbit and bob's consult call ends.
func TestAttendedTransferIntoPark(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	carol := phone(t, p, "103", parktest.PhoneOptions{})

	a, b := connected(t, ctx, p, alice, bob, "102")
	consult, err := bob.Call(ctx, p.URI("700"), parktest.CallOptions{})
	require.NoError(t, err)
	require.Equal(t, "701", consult.Orbit())
	res, err := b.Refer(ctx, consult.ReplacingURI(p.URI("700")))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus, "notifies: %q", res.Notifies)
	require.Equal(t, "701", res.Orbit)
	select {
	case <-consult.Done():
		require.True(t, consult.EndedByRemote(), "the PBX ends the consult call")
	case <-ctx.Done():
		t.Fatal("the consult call was not ended")
	}
	require.NoError(t, b.Hangup(ctx))
	info, ok := p.Lot().Lookup("701")
	require.True(t, ok)
	require.Equal(t, p.URI("101"), info.Party, "alice holds the orbit now")
	require.Equal(t, p.URI("102"), info.Parker)

	c, err := carol.Call(ctx, p.URI("701"), parktest.CallOptions{})
	require.NoError(t, err)
	talking(t, ctx, a, c, 30)
	require.NoError(t, a.Hangup(ctx))
	ended(t, ctx, c)
}

// Nobody retrieves: the recall rings the parker's registered phone, which
// answers and talks to the parked party.
func TestRecallRingsTheParkersPhone(t *testing.T) {
	t.Parallel()
	p := testPBX(t, Config{Park: park.Config{PickupTimeout: park.MinPickupTimeout, RecallRingTime: 5 * time.Second}})
	ctx := ctxFor(t, 40*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	require.NoError(t, b.Hangup(ctx))
	parkedAt := time.Now()

	var recall *parktest.Call
	select {
	case recall = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("no recall")
	}
	waited := time.Since(parkedAt)
	require.GreaterOrEqual(t, waited, park.MinPickupTimeout-time.Second)
	require.Contains(t, recall.Header("From"), "Park 701", "the recall says which orbit it comes from")
	talking(t, ctx, a, recall, 30)
	require.NoError(t, recall.Hangup(ctx))
	ended(t, ctx, a)
	t.Logf("recall rang %.1f s after the park", waited.Seconds())
}

// A recall nobody answers goes to the fallback extension.
func TestRecallFallsBackToAnExtension(t *testing.T) {
	t.Parallel()
	// No port: the PBX's own address, whatever port the test got.
	p := testPBX(t, Config{Park: park.Config{PickupTimeout: park.MinPickupTimeout, RecallRingTime: time.Second, FallbackURI: "sip:105@127.0.0.1"}})
	ctx := ctxFor(t, 40*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	operator := phone(t, p, "105", parktest.PhoneOptions{})

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	require.NoError(t, b.Hangup(ctx))
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))

	var fallback *parktest.Call
	select {
	case fallback = <-operator.Incoming():
	case <-ctx.Done():
		t.Fatal("the fallback never rang")
	}
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 1), "the recall rang bob first")
	talking(t, ctx, a, fallback, 20)
	require.NoError(t, a.Hangup(ctx))
	ended(t, ctx, fallback)
}

func TestBLFOnAnOrbit(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	carol := phone(t, p, "103", parktest.PhoneOptions{})

	sub, err := carol.Subscribe(ctx, p.URI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	next := func() parktest.DialogInfo {
		t.Helper()
		select {
		case n := <-sub.Notifies():
			info, err := parktest.ParseDialogInfo(n.Body)
			require.NoError(t, err)
			return info
		case <-ctx.Done():
			t.Fatal("no NOTIFY")
		}
		return parktest.DialogInfo{}
	}
	require.Empty(t, next().Dialogs, "the orbit starts empty")

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, "701", res.Orbit)
	info := next()
	require.Len(t, info.Dialogs, 1)
	require.Equal(t, "confirmed", info.Dialogs[0].State, "the lamp lights")
	require.NoError(t, b.Hangup(ctx))

	c, err := carol.Call(ctx, p.URI("701"), parktest.CallOptions{})
	require.NoError(t, err)
	info = next()
	require.True(t, len(info.Dialogs) == 0 || info.Dialogs[0].State == "terminated", "the lamp goes out: %+v", info)
	require.NoError(t, sub.Unsubscribe(ctx))
	require.NoError(t, c.Hangup(ctx))
	ended(t, ctx, a)
}

func TestShutdownRecallsParkedCalls(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	require.NoError(t, b.Hangup(ctx))

	done := make(chan error, 1)
	go func() { done <- p.Shutdown(ctx) }()
	var recall *parktest.Call
	select {
	case recall = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("shutdown did not recall the parked call")
	}
	// The recalled call is bridged: the PBX drains, waiting for it to end
	// (issue 11, point 7), with audio both ways meanwhile.
	require.NoError(t, recall.WaitReceived(ctx, recall.Received()+10))
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a call still connected", err)
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, a.WaitReceived(ctx, a.Received()+10), "alice still hears bob")
	require.NoError(t, recall.Hangup(ctx))
	require.NoError(t, <-done, "Shutdown returns once the call has ended")
	ended(t, ctx, a)
}

// A drain has its limit: when Shutdown's context ends, the calls still
// connected get BYE and Shutdown says it was cut short.
func TestShutdownDrainTimeHangsUpConnectedCalls(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	a, b := connected(t, ctx, p, alice, bob, "102")
	drain, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	require.ErrorIs(t, p.Shutdown(drain), context.DeadlineExceeded)
	require.GreaterOrEqual(t, time.Since(start), 2*time.Second, "the call went on for the drain time")
	ended(t, ctx, a)
	ended(t, ctx, b)
	require.True(t, a.EndedByRemote() && b.EndedByRemote(), "both got BYE from the PBX")
}

// The transferor may hang up the moment it has the 202: the transferred
// party must stay parked, not get the BYE (the call is parked before the
// 202 goes out).
func TestTransferorHangsUpRightAfter202(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	for range 5 { // the race it guards against lost 7 runs in 10
		a, b := connected(t, ctx, p, alice, bob, "102")
		refer := sip.NewRequest(sip.REFER, sip.Uri{})
		refer.AppendHeader(sip.NewHeader("Refer-To", "<"+p.URI("700")+">"))
		res, err := b.Send(ctx, refer)
		require.NoError(t, err)
		require.Equal(t, 202, res.StatusCode)
		require.NoError(t, b.Hangup(ctx), "bob hangs up at once")
		calls := p.lot.Calls()
		require.Len(t, calls, 1, "alice is parked by the time of the 202")
		require.Equal(t, "sip:102@"+p.Addr().String(), calls[0].Parker)
		select {
		case <-a.Done():
			t.Fatal("bob's BYE reached alice")
		default:
		}
		require.NoError(t, a.Hangup(ctx))
		waitUntil(t, 5*time.Second, "the lot empties", func() bool { return p.lot.Len() == 0 })
	}
}

// Orbits with # travel as %23 in URIs (RFC 3261): a transfer to one parks
// there, and dialling it escaped retrieves.
func TestHashOrbitsAreEscaped(t *testing.T) {
	table, err := orbit.ParseTable("#1000-#1009")
	require.NoError(t, err)
	p := testPBX(t, Config{Orbits: table})
	ctx := ctxFor(t, 20*time.Second)
	alice := phone(t, p, "101", parktest.PhoneOptions{})
	bob := phone(t, p, "102", parktest.PhoneOptions{})
	carol := phone(t, p, "103", parktest.PhoneOptions{})

	require.Contains(t, p.URI("#1005"), "sip:%231005@")
	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := a.Refer(ctx, p.URI("#1005"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus, "notifies: %q", res.Notifies)
	require.Equal(t, "#1005", res.Orbit)
	require.NoError(t, a.Hangup(ctx))
	got, err := carol.Call(ctx, p.URI("#1005"), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, got.Hangup(ctx))
	ended(t, ctx, b)
}

// Phones on TCP: the PBX's own requests (the INVITE to the callee, the
// parker's "Parked at" MESSAGE, the BYEs) go to their target by a
// connection to it. sipgo files every accepted connection under the
// listener's address too, so requests pinned to that address used to ride
// the connection accepted last: the callee's INVITE went to another phone.
func TestPhonesOnTCP(t *testing.T) {
	p := testPBX(t, Config{})
	ctx := ctxFor(t, 20*time.Second)
	tcpPhone := func(ext string) *parktest.Phone {
		ph := parktest.NewPhone(t, parktest.PhoneOptions{User: ext, Transport: "tcp"})
		_, err := ph.Register(ctx, "sip:"+p.Addr().String()+";transport=tcp", time.Hour)
		require.NoError(t, err)
		return ph
	}
	bob := tcpPhone("102")
	carol := tcpPhone("103")
	alice := tcpPhone("101") // registered last: hers is the connection accepted last

	a, b := connected(t, ctx, p, alice, bob, "102")
	res, err := b.Refer(ctx, p.URI("700"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	msgs, err := bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+res.Orbit, msgs[0].Body)
	require.NoError(t, b.Hangup(ctx))

	c, err := carol.Call(ctx, p.URI(res.Orbit), parktest.CallOptions{})
	require.NoError(t, err)
	before := a.Received()
	require.NoError(t, c.WaitReceived(ctx, 25), "carol hears alice")
	require.NoError(t, a.WaitReceived(ctx, before+25), "and alice hears carol")
	require.NoError(t, c.Hangup(ctx))
	ended(t, ctx, a)
	require.Empty(t, alice.Inbox().Messages(), "nothing meant for bob reached alice")
	require.Equal(t, 0, carol.Inbox().Invites())
}
