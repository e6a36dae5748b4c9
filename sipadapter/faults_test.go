package sipadapter_test

// Fault scenarios of "Reliability: nothing lost": every parked call leaves
// the lot exactly once, with the outcome the contract gives the fault, and
// the server keeps nothing afterwards (testServer's cleanup checks dialogs,
// RTP ports, parked calls and subscriptions; TestMain runs goleak).
//
// Each test observes the lot from before the first call (faultServer) and,
// once the server has shut down and delivered every event, checks that
// every park ID got exactly one EventEnded.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// outcomes records a lot's events to check the single-outcome rule.
type outcomes struct {
	mu      sync.Mutex
	order   []string                  // park IDs, in the order they were parked
	orbits  map[string]orbit.Orbit    // park ID -> its orbit
	ended   map[string][]park.Outcome // park ID -> every EventEnded it got
	failed  map[string][]park.Event   // park ID -> its EventRingFailed
	expect  map[string]park.Outcome   // checked at the end (expectAtEnd)
	changed chan struct{}             // closed and replaced on every event
}

// faultServer is testServer with an outcomes recorder on its lot, attached
// before any call can arrive. Its final check is registered before
// testServer's cleanup, so it runs after it: after Shutdown, which returns
// once every event has been delivered, and after the leak checks.
func faultServer(t *testing.T, cfg sipadapter.Config) (*sipadapter.Server, *outcomes) {
	t.Helper()
	oc := newOutcomes()
	t.Cleanup(func() { oc.check(t) })
	srv := testServer(t, cfg)
	srv.Lot().Observe(park.ObserverFunc(oc.observe))
	return srv, oc
}

func newOutcomes() *outcomes {
	return &outcomes{
		orbits:  make(map[string]orbit.Orbit),
		ended:   make(map[string][]park.Outcome),
		failed:  make(map[string][]park.Event),
		expect:  make(map[string]park.Outcome),
		changed: make(chan struct{}),
	}
}

func (oc *outcomes) observe(e park.Event) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	id := e.Call.ParkID
	switch e.Kind {
	case park.EventParked:
		if _, seen := oc.orbits[id]; !seen {
			oc.order = append(oc.order, id)
		}
		oc.orbits[id] = e.Call.Orbit
	case park.EventEnded:
		oc.ended[id] = append(oc.ended[id], e.Outcome)
	case park.EventRingFailed:
		oc.failed[id] = append(oc.failed[id], e)
	}
	close(oc.changed)
	oc.changed = make(chan struct{})
}

// check is the single-outcome rule: every call parked ended exactly once
// with a known outcome, and nothing ended that was never parked.
func (oc *outcomes) check(t interface{ Errorf(string, ...any) }) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	for _, id := range oc.order {
		got := oc.ended[id]
		switch {
		case len(got) != 1:
			t.Errorf("single outcome: park ID %s (orbit %s) ended %d times: %v", id, oc.orbits[id], len(got), got)
		case got[0] == park.NoOutcome:
			t.Errorf("single outcome: park ID %s (orbit %s) ended without an outcome", id, oc.orbits[id])
		}
		if want, ok := oc.expect[id]; ok && len(got) > 0 && got[0] != want {
			t.Errorf("park ID %s (orbit %s) ended %v, want %v", id, oc.orbits[id], got[0], want)
		}
	}
	for id, got := range oc.ended {
		if _, ok := oc.orbits[id]; !ok {
			t.Errorf("single outcome: park ID %s ended (%v) but was never parked", id, got)
		}
	}
}

// waitFor waits until cond, evaluated under oc.mu, holds: on every event,
// and every 10 ms for the conditions that look beyond the lot.
func (oc *outcomes) waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		oc.mu.Lock()
		ok, changed := cond(), oc.changed
		oc.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting until %s; lot events so far: %s", d, what, oc)
		}
	}
}

// waitEnded waits until n calls have ended.
func (oc *outcomes) waitEnded(t *testing.T, n int, d time.Duration) {
	t.Helper()
	oc.waitFor(t, d, fmt.Sprintf("%d calls have ended", n), func() bool { return len(oc.ended) >= n })
}

// parked returns the park IDs so far, in park order.
func (oc *outcomes) parked() []string {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return append([]string(nil), oc.order...)
}

// outcome returns how the call id ended, failing unless it ended exactly
// once.
func (oc *outcomes) outcome(t *testing.T, id string) park.Outcome {
	t.Helper()
	oc.mu.Lock()
	got := append([]park.Outcome(nil), oc.ended[id]...)
	oc.mu.Unlock()
	require.Len(t, got, 1, "park ID %s must end exactly once", id)
	return got[0]
}

// counts returns how many calls ended with each outcome.
func (oc *outcomes) counts() map[park.Outcome]int {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	n := make(map[park.Outcome]int)
	for _, got := range oc.ended {
		for _, o := range got {
			n[o]++
		}
	}
	return n
}

// idAt returns the park ID of the call parked (last) in orbit o.
func (oc *outcomes) idAt(t *testing.T, o string) string {
	t.Helper()
	oc.mu.Lock()
	defer oc.mu.Unlock()
	for i := len(oc.order) - 1; i >= 0; i-- {
		if id := oc.order[i]; oc.orbits[id] == orbit.Orbit(o) {
			return id
		}
	}
	t.Fatalf("no call was parked in orbit %q", o)
	return ""
}

// ringFailures returns the EventRingFailed of the call id.
func (oc *outcomes) ringFailures(id string) []park.Event {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return append([]park.Event(nil), oc.failed[id]...)
}

// expectAtEnd makes the final check require that id ended with want: for a
// call that ends only in the server's Shutdown.
func (oc *outcomes) expectAtEnd(id string, want park.Outcome) {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	oc.expect[id] = want
}

func (oc *outcomes) String() string {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	var b strings.Builder
	for _, id := range oc.order {
		fmt.Fprintf(&b, "[%s orbit=%s ended=%v ring-failures=%d] ", id, oc.orbits[id], oc.ended[id], len(oc.failed[id]))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// waitEnd waits for a phone's call to end, failing the test after ctx.
func waitEnd(t *testing.T, ctx context.Context, c *parktest.Call, what string) {
	t.Helper()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatalf("%s: the call did not end", what)
	}
}

// waitIncoming returns the next call a phone answered.
func waitIncoming(t *testing.T, ctx context.Context, p *parktest.Phone, what string) *parktest.Call {
	t.Helper()
	select {
	case c := <-p.Incoming():
		return c
	case <-ctx.Done():
		t.Fatalf("%s: no call was answered", what)
	}
	return nil
}

// skipShort skips tests that wait out Lync Server 2013's 10 s minimum pickup
// timeout.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
}

// Scenario 1. Flow 4 says a BYE from the referrer right after the 202 is
// normal: the referrer hangs up the moment it has the 202, before any
// NOTIFY (TestReparkByRefer hangs up only after the final NOTIFY). The other
// party must stay parked, with the referrer as parker and a fresh timer, and
// then leave once: retrieved, or recalled to the referrer.
func TestFaultReferrerHangsUpRightAfter202(t *testing.T) {
	t.Parallel()
	for _, then := range []park.Outcome{park.Retrieved, park.Recalled} {
		t.Run(then.String(), func(t *testing.T) {
			t.Parallel()
			if then == park.Recalled {
				skipShort(t)
			}
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"}) // answers the recall
			srv, oc := faultServer(t, sipadapter.Config{Park: park.Config{
				PickupTimeout:  park.MinPickupTimeout,
				RecallRingTime: 5 * time.Second,
			}})
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
			carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
			ctx := ctxFor(t, 40*time.Second)

			parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
			require.NoError(t, err)
			talk, err := bob.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
			require.NoError(t, err)

			referThenHangUp(t, ctx, talk, srv.ParkURI())

			oc.waitFor(t, 5*time.Second, "alice is parked again or her call ends", func() bool {
				select {
				case <-parked.Done():
					return true
				default:
					return len(oc.order) == 2
				}
			})
			select {
			case <-parked.Done():
				t.Fatalf("the referrer's BYE right after the 202 ended the call being re-parked (BYE from the server: %v); lot events: %s",
					parked.EndedByRemote(), oc)
			default:
			}
			ids := oc.parked()
			require.Len(t, ids, 2)
			require.Equal(t, park.Retrieved, oc.outcome(t, ids[0]), "bob's retrieve")
			calls := srv.Lot().Calls()
			require.Len(t, calls, 1)
			require.Equal(t, ids[1], calls[0].ParkID)
			require.Equal(t, bob.URI(), calls[0].Parker, "the referrer is the parker")
			n := parked.Received()
			require.NoError(t, parked.WaitReceived(ctx, n+10), "alice hears the music again")

			switch then {
			case park.Retrieved:
				got, err := carol.Call(ctx, srv.OrbitURI(calls[0].Orbit), parktest.CallOptions{Mute: true})
				require.NoError(t, err)
				require.NoError(t, got.Hangup(ctx))
			case park.Recalled:
				recall := waitIncoming(t, ctx, bob, "the recall to the referrer")
				require.NoError(t, recall.Hangup(ctx))
			}
			waitEnd(t, ctx, parked, "alice")
			require.True(t, parked.EndedByRemote(), "the BYE is passed on to alice")
			oc.waitEnded(t, 2, 5*time.Second)
			require.Equal(t, then, oc.outcome(t, ids[1]))
		})
	}

	// Flow 7 for REFER with the same hurry: the lot is full, so the re-park
	// fails and the call stays bridged; the referrer's BYE then ends it, so
	// the other party gets a BYE too, and nothing is left of either leg.
	t.Run("lot full", func(t *testing.T) {
		t.Parallel()
		srv, oc := faultServer(t, sipadapter.Config{Orbits: orbitsTable(t, "701-701")})
		ctx := ctxFor(t, 20*time.Second)
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
		carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
		parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		other, err := carol.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
		require.NoError(t, err)

		referThenHangUp(t, ctx, talk, srv.ParkURI())

		waitEnd(t, ctx, parked, "alice, whose re-park failed")
		require.True(t, parked.EndedByRemote(), "the referrer's BYE is passed on")
		waitUntil(t, 5*time.Second, "alice's and bob's legs are freed", func() bool {
			return srv.OpenLegs() == 1 && srv.PortsInUse() == 1
		})
		require.Len(t, oc.parked(), 2, "alice was not parked again")
		require.NoError(t, other.Hangup(ctx))
		oc.waitEnded(t, 2, 5*time.Second)
		require.Equal(t, map[park.Outcome]int{park.Retrieved: 1, park.Abandoned: 1}, oc.counts())
	})
}

// Scenario 2. The parked party hangs up while its recall rings the parker
// (who lets it ring): the recall INVITE is CANCELled, the call is
// abandoned, no further attempt starts, and the recall's dialog and RTP port
// are freed. (TestParkedHangUp covers a hang-up before any recall,
// TestRetrieveDuringRecall a retrieve during one.)
func TestFaultParkedHangsUpWhileRecallRings(t *testing.T) {
	t.Parallel()
	skipShort(t)
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	srv, oc := faultServer(t, sipadapter.Config{Park: park.Config{
		PickupTimeout:     park.MinPickupTimeout,
		MaxPickupAttempts: 3,
		RecallRingTime:    30 * time.Second,
	}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 40*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.NoError(t, err)
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1), "the recall rings bob")
	require.Equal(t, 2, srv.PortsInUse(), "the parked leg and the ringing recall hold a port each")

	require.NoError(t, parked.Hangup(ctx))
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 1), "the ringing recall is cancelled")
	oc.waitEnded(t, 1, 5*time.Second)
	require.Equal(t, park.Abandoned, oc.outcome(t, oc.parked()[0]))
	waitUntil(t, 5*time.Second, "the recall's dialog and port are freed", func() bool {
		return srv.OpenLegs() == 0 && srv.PortsInUse() == 0
	})
	time.Sleep(time.Second) // a second attempt would start at once
	require.Equal(t, 1, bob.Inbox().Invites(), "no further attempt once the party has left")
}

// Scenario 3. Fifty retrieves race for one orbit (TestRacingRetrievesHaveOneWinner
// runs eight): exactly one 200; every other gets a final failure, 404 (or
// 403 from a per-source limiter of failed retrieves: all racers are on
// 127.0.0.1). The call is retrieved once, and the refused legs leave
// nothing behind.
func TestFaultFiftyRacingRetrieves(t *testing.T) {
	t.Parallel()
	srv, oc := faultServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 30*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	target := srv.OrbitURI(orbit.Orbit(parked.Orbit()))

	const phones, perPhone = 10, 5
	var winners []*parktest.Call
	losers := map[int]int{}
	for _, r := range callAtOnce(t, ctx, "racer", phones, perPhone, target) {
		if r.err == nil {
			winners = append(winners, r.call)
			continue
		}
		code := statusOf(t, r.err)
		require.Contains(t, []int{404, 403}, code, "a losing retrieve gets a final failure")
		losers[code]++
	}
	t.Logf("losers by status: %v", losers)
	require.Len(t, winners, 1, "exactly one retrieve wins")
	require.Equal(t, phones*perPhone-1, losers[404]+losers[403])
	waitUntil(t, 5*time.Second, "the refused legs are freed", func() bool {
		return srv.OpenLegs() == 2 && srv.PortsInUse() == 2
	})
	oc.waitEnded(t, 1, 5*time.Second)
	require.Equal(t, park.Retrieved, oc.outcome(t, oc.parked()[0]))

	require.NoError(t, winners[0].Hangup(ctx))
	waitEnd(t, ctx, parked, "alice")
	require.True(t, parked.EndedByRemote())
}

// recallServer is faultServer with Lync Server 2013's minimum pickup timeout and
// pc's recall settings.
func recallServer(t *testing.T, pc park.Config) (*sipadapter.Server, *outcomes) {
	t.Helper()
	pc.PickupTimeout = park.MinPickupTimeout
	return faultServer(t, sipadapter.Config{Park: pc})
}

// parkFrom parks a call from a new phone named user, with parker as
// Referred-By ("" for none).
func parkFrom(t *testing.T, srv *sipadapter.Server, user, parker string) *parktest.Call {
	t.Helper()
	p := parktest.NewPhone(t, parktest.PhoneOptions{User: user})
	var headers []sip.Header
	if parker != "" {
		headers = append(headers, referredBy(parker))
	}
	c, err := p.Call(ctxFor(t, 5*time.Second), srv.ParkURI(), parktest.CallOptions{Headers: headers, Mute: true})
	require.NoError(t, err)
	return c
}

// closedPort returns a loopback port of network ("udp4" or "tcp4") that was
// free a moment ago and that nothing listens on now.
func closedPort(t *testing.T, network string) int {
	t.Helper()
	var port int
	if network == "udp4" {
		c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		port = c.LocalAddr().(*net.UDPAddr).Port
		require.NoError(t, c.Close())
	} else {
		l, err := net.ListenTCP(network, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		port = l.Addr().(*net.TCPAddr).Port
		require.NoError(t, l.Close())
	}
	return port
}

// Scenario 4. The recall target cannot be reached; each attempt ends as
// flow 5 says (no answer: CANCEL at the ring time; a final non-2xx: at once;
// no 1xx at all: at the ring time), the next attempt starts, then the
// fallback or the drop, exactly once. TestRecallThenFallback covers
// unanswered recalls with an answering fallback, TestRecallToSilentParker a
// parker that sends nothing back; these add the outcomes and the drop path.
func TestFaultRecallTargetUnreachable(t *testing.T) {
	t.Parallel()
	skipShort(t)

	// (a) The parker's phone rings and nobody answers: each attempt is
	// CANCELled at the ring time. (c) The parker URI names a closed
	// loopback UDP port: the INVITE draws ICMP port unreachable, which the
	// server's unconnected UDP socket is not told of, so each attempt ends
	// at the ring time too (not at sipgo's 32 s Timer B). With no fallback
	// both calls are dropped, and the server keeps serving.
	t.Run("rings unanswered or port unreachable", func(t *testing.T) {
		t.Parallel()
		bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
		require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
		closed := fmt.Sprintf("sip:dave@127.0.0.1:%d", closedPort(t, "udp4"))
		const ring = time.Second
		srv, oc := recallServer(t, park.Config{MaxPickupAttempts: 2, RecallRingTime: ring})
		ctx := ctxFor(t, 30*time.Second)
		start := time.Now()
		ringing := parkFrom(t, srv, "alice", bob.URI())
		icmp := parkFrom(t, srv, "erin", closed)

		oc.waitEnded(t, 2, 25*time.Second)
		elapsed := time.Since(start)
		require.GreaterOrEqual(t, elapsed, park.MinPickupTimeout+2*ring, "two full rings came first")
		require.Less(t, elapsed, park.MinPickupTimeout+2*ring+5*time.Second, "two ring times, not two transaction timeouts")
		for _, c := range []*parktest.Call{ringing, icmp} {
			id := oc.idAt(t, c.Orbit())
			require.Equal(t, park.Dropped, oc.outcome(t, id))
			require.Len(t, oc.ringFailures(id), 2)
			waitEnd(t, ctx, c, "the dropped call")
			require.True(t, c.EndedByRemote(), "BYE to the parked party")
		}
		require.Equal(t, 2, bob.Inbox().Invites())
		require.NoError(t, bob.Inbox().WaitCancels(ctx, 2), "each unanswered recall is cancelled")

		other := parktest.NewPhone(t, parktest.PhoneOptions{User: "other"})
		res, err := other.Options(ctx, srv.ParkURI())
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode, "the server still serves after the ICMP errors")
	})

	// (b) The parker answers 408, or (c) over TCP its address refuses the
	// connection: each attempt ends at once, not at the ring time, the
	// next one too, then the fallback answers.
	t.Run("answers 408 or refuses the connection", func(t *testing.T) {
		t.Parallel()
		bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
		require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 408}))
		refusing := fmt.Sprintf("sip:dave@127.0.0.1:%d;transport=tcp", closedPort(t, "tcp4"))
		operator := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
		const ring = 5 * time.Second
		srv, oc := recallServer(t, park.Config{MaxPickupAttempts: 2, RecallRingTime: ring, FallbackURI: operator.URI()})
		ctx := ctxFor(t, 30*time.Second)
		start := time.Now()
		refused := parkFrom(t, srv, "alice", bob.URI())
		unreachable := parkFrom(t, srv, "erin", refusing)

		answered := []*parktest.Call{
			waitIncoming(t, ctx, operator, "the fallback"),
			waitIncoming(t, ctx, operator, "the fallback"),
		}
		require.Less(t, time.Since(start), park.MinPickupTimeout+ring, "every attempt ended at once, none at the ring time")
		require.Equal(t, 2, bob.Inbox().Invites())
		require.Zero(t, bob.Inbox().Cancels(), "a refused recall is not cancelled")
		oc.waitEnded(t, 2, 5*time.Second)
		for _, c := range []*parktest.Call{refused, unreachable} {
			id := oc.idAt(t, c.Orbit())
			require.Equal(t, park.Forwarded, oc.outcome(t, id))
			require.Len(t, oc.ringFailures(id), 2)
		}
		require.Zero(t, srv.Lot().Len())
		for _, a := range answered {
			require.NoError(t, a.Hangup(ctx))
		}
		for _, c := range []*parktest.Call{refused, unreachable} {
			waitEnd(t, ctx, c, "the forwarded call")
			require.True(t, c.EndedByRemote())
		}
	})
}

// Scenario 5. The recall is declined (603) and the fallback answers 404:
// the call is dropped, with a BYE to the parked party, exactly once.
func TestFaultFallbackAnswers404(t *testing.T) {
	t.Parallel()
	skipShort(t)
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 603}))
	operator := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
	require.NoError(t, operator.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 404}))
	const ring = 5 * time.Second
	srv, oc := recallServer(t, park.Config{RecallRingTime: ring, FallbackURI: operator.URI()})
	ctx := ctxFor(t, 30*time.Second)
	start := time.Now()
	parked := parkFrom(t, srv, "alice", bob.URI())

	waitEnd(t, ctx, parked, "the call refused everywhere")
	require.Less(t, time.Since(start), park.MinPickupTimeout+ring, "both refusals end at once")
	require.True(t, parked.EndedByRemote(), "BYE to the parked party")
	oc.waitEnded(t, 1, 5*time.Second)
	id := oc.parked()[0]
	require.Equal(t, park.Dropped, oc.outcome(t, id))
	fails := oc.ringFailures(id)
	require.Len(t, fails, 2)
	require.Equal(t, park.Recall, fails[0].Purpose)
	require.Equal(t, park.Fallback, fails[1].Purpose)
	require.Equal(t, 1, bob.Inbox().Invites())
	require.Equal(t, 1, operator.Inbox().Invites())
}

// fillPorts parks calls from p until the server refuses one (at most tries
// calls) and returns the parked calls and the refusal.
func fillPorts(t *testing.T, ctx context.Context, srv *sipadapter.Server, p *parktest.Phone, tries int) ([]*parktest.Call, *parktest.StatusError) {
	t.Helper()
	var parked []*parktest.Call
	for range tries {
		c, err := p.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
		if err != nil {
			var se *parktest.StatusError
			require.ErrorAs(t, err, &se)
			return parked, se
		}
		parked = append(parked, c)
	}
	t.Fatalf("%d calls parked and none refused", tries)
	return nil, nil
}

// Scenario 6. The RTP range is full: a park INVITE gets 503 with a Warning
// (StatusFor(ErrNoRTPPort)), and the calls already parked stay parked
// (nothing lost). A parked call keeps a port for its recall, so with four
// ports two calls park and the third is refused; a retrieve may take the
// port its call kept, a new call may not; a call that ends gives its ports
// back at once, and the next INVITE is answered.
func TestFaultRTPPortsExhausted(t *testing.T) {
	t.Parallel()
	// Four even ports, 10100 to 10106: apart from every other test's range,
	// and below Linux's ephemeral ports (32768-60999), which the sockets of
	// phones and load tests on the machine take at random.
	srv, oc := faultServer(t, sipadapter.Config{RTPPortMin: 10100, RTPPortMax: 10107})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})

	parked, refused := fillPorts(t, ctx, srv, alice, 3)
	require.Len(t, parked, 2, "each parked call holds a port and keeps one for its recall")
	require.Equal(t, 503, refused.Code)
	require.Contains(t, refused.Response.GetHeader("Warning").Value(), "RTP port")
	require.Equal(t, len(parked), srv.PortsInUse())
	require.Equal(t, len(parked), srv.Lot().Len())
	for _, c := range parked {
		n := c.Received()
		require.NoError(t, c.WaitReceived(ctx, n+5), "parked calls keep their music")
	}

	// The retrieve takes the port parked[0] kept for its recall.
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked[0].Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "a retrieve may take its call's recall port")
	require.Equal(t, len(parked)-1, srv.Lot().Len())
	require.NoError(t, got.Hangup(ctx))
	waitEnd(t, ctx, parked[0], "the retrieved call")

	waitUntil(t, 5*time.Second, "the retrieved call's ports return", func() bool { return srv.PortsInUse() == 1 })
	again, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "freed ports serve the next call")
	require.NoError(t, parked[1].Hangup(ctx))
	require.NoError(t, again.Hangup(ctx))

	oc.waitEnded(t, len(parked)+1, 5*time.Second)
	require.Equal(t, map[park.Outcome]int{park.Abandoned: 2, park.Retrieved: 1}, oc.counts())
	waitUntil(t, 5*time.Second, "every port returns", func() bool { return srv.PortsInUse() == 0 })
}

// Scenario 6, at recall time: a call that could not be recalled is not
// parked. With one RTP port, which the call's own leg would take, no port
// would be left for its recall or fallback: the park is refused (503) at
// once, and nobody is ever rung for a call that was never parked. (Before
// parked calls kept a port, this call was parked and then dropped at its
// recall, each step failing for want of a port.)
func TestFaultRecallWithoutRTPPort(t *testing.T) {
	t.Parallel()
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"}) // would answer
	operator := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
	srv, oc := faultServer(t, sipadapter.Config{
		RTPPortMin: 10200, RTPPortMax: 10201, // one even port, below the ephemeral ports
		Park: park.Config{
			PickupTimeout:     park.MinPickupTimeout,
			MaxPickupAttempts: 2,
			RecallRingTime:    5 * time.Second,
			FallbackURI:       operator.URI(),
		},
	})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 30*time.Second)
	_, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.Equal(t, 503, statusOf(t, err), "no port for the recall: not parked")
	require.Zero(t, srv.Lot().Len())
	waitUntil(t, 5*time.Second, "the refused leg's port is back", func() bool { return srv.PortsInUse() == 0 })
	require.Empty(t, oc.parked())
	require.Zero(t, bob.Inbox().Invites())
	require.Zero(t, operator.Inbox().Invites())
}

// Scenario 7. Thirty parks race for five orbits (TestLotFull parks one at a
// time into two): exactly five are parked, the other 25 get 486 with a
// Warning and a Reason, their legs and ports are freed at once; then the
// parked calls leave, retrieved or hung up, once each.
func TestFaultOrbitExhaustionUnderLoad(t *testing.T) {
	t.Parallel()
	srv, oc := faultServer(t, sipadapter.Config{Orbits: orbitsTable(t, "701-705")})
	ctx := ctxFor(t, 30*time.Second)

	const phones, perPhone, orbits = 10, 3, 5
	var parked []*parktest.Call
	refused := 0
	for _, r := range callAtOnce(t, ctx, "caller", phones, perPhone, srv.ParkURI()) {
		if r.err == nil {
			parked = append(parked, r.call)
			continue
		}
		var se *parktest.StatusError
		require.ErrorAs(t, r.err, &se)
		require.Equal(t, 486, se.Code)
		require.Contains(t, se.Response.GetHeader("Warning").Value(), "full")
		require.NotNil(t, se.Response.GetHeader("Reason"))
		refused++
	}
	require.Len(t, parked, orbits, "exactly one call per orbit")
	require.Equal(t, phones*perPhone-orbits, refused)
	waitUntil(t, 5*time.Second, "the refused legs are freed", func() bool {
		return srv.OpenLegs() == orbits && srv.PortsInUse() == orbits
	})
	require.Equal(t, orbits, srv.Lot().Len())
	require.Len(t, oc.parked(), orbits, "no refused call ever entered the lot")

	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	for i, c := range parked {
		if i%2 == 0 {
			got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(c.Orbit())), parktest.CallOptions{Mute: true})
			require.NoError(t, err)
			require.NoError(t, got.Hangup(ctx))
			waitEnd(t, ctx, c, "a retrieved call")
		} else {
			require.NoError(t, c.Hangup(ctx))
		}
	}
	oc.waitEnded(t, orbits, 5*time.Second)
	require.Equal(t, map[park.Outcome]int{park.Retrieved: 3, park.Abandoned: 2}, oc.counts())
}

// tcpParty is a caller on a TCP connection of its own, speaking SIP written
// by hand, so that a test can cut the connection as a crashed phone or a
// NAT box does: no BYE, a reset (SO_LINGER 0). Its Contact names its
// connection's address with transport=tcp, where nothing listens, so the
// server's later requests (BYE, re-INVITE) are refused at once. Its RTP
// socket stays open until the test ends, counting what the server sends.
type tcpParty struct {
	conn     *net.TCPConn
	rtp      *net.UDPConn
	received atomic.Int64
	orbit    orbit.Orbit
}

// parkOverTCP parks a tcpParty at srv's park extension, with Referred-By
// parker unless it is "".
func parkOverTCP(t *testing.T, srv *sipadapter.Server, parker string) *tcpParty {
	t.Helper()
	conn, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(srv.Addr()))
	require.NoError(t, err)
	rtp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	p := &tcpParty{conn: conn, rtp: rtp}
	var reader sync.WaitGroup
	reader.Go(func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := rtp.ReadFrom(buf); err != nil {
				return
			}
			p.received.Add(1)
		}
	})
	t.Cleanup(func() {
		conn.Close()
		rtp.Close()
		reader.Wait()
	})

	local := conn.LocalAddr().String()
	callID, tag := sip.GenerateTagN(16), sip.GenerateTagN(8)
	from := fmt.Sprintf("<sip:tcpcaller@%s;transport=tcp>;tag=%s", local, tag)
	extra := ""
	if parker != "" {
		extra = "Referred-By: <" + parker + ">\r\n"
	}
	sdp := fmt.Sprintf("v=0\r\no=tcpcaller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", rtp.LocalAddr().(*net.UDPAddr).Port)
	invite := fmt.Sprintf("INVITE %[1]s SIP/2.0\r\nVia: SIP/2.0/TCP %[2]s;branch=z9hG4bK%[3]s\r\nMax-Forwards: 70\r\n"+
		"From: %[4]s\r\nTo: <%[1]s>\r\nCall-ID: %[5]s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:tcpcaller@%[2]s;transport=tcp>\r\n%[6]sContent-Type: application/sdp\r\nContent-Length: %[7]d\r\n\r\n%[8]s",
		srv.ParkURI(), local, sip.GenerateTagN(12), from, callID, extra, len(sdp), sdp)
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = conn.Write([]byte(invite))
	require.NoError(t, err)

	rd := bufio.NewReader(conn)
	var res *sip.Response
	for res == nil || res.IsProvisional() {
		res = readSIPResponse(t, rd)
	}
	require.Equal(t, 200, res.StatusCode, "the park INVITE over TCP")
	toTag, _ := res.To().Params.Get("tag")
	require.NotNil(t, res.Contact())
	p.orbit = orbit.Orbit(res.GetHeader("X-Park-Orbit").Value())
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
		"From: %s\r\nTo: <%s>;tag=%s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		res.Contact().Address.String(), local, sip.GenerateTagN(12), from, srv.ParkURI(), toTag, callID)
	_, err = conn.Write([]byte(ack))
	require.NoError(t, err)
	require.NoError(t, conn.SetDeadline(time.Time{}))
	return p
}

// readSIPResponse reads one response from a SIP stream: the header block,
// then Content-Length bytes of body.
func readSIPResponse(t *testing.T, rd *bufio.Reader) *sip.Response {
	t.Helper()
	tp := textproto.NewReader(rd)
	var head strings.Builder
	length := 0
	for {
		line, err := tp.ReadLine()
		require.NoError(t, err, "reading a response over TCP")
		if line == "" {
			break
		}
		head.WriteString(line + "\r\n")
		name, value, _ := strings.Cut(line, ":")
		if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
			length, err = strconv.Atoi(strings.TrimSpace(value))
			require.NoError(t, err)
		}
	}
	body := make([]byte, length)
	_, err := io.ReadFull(rd, body)
	require.NoError(t, err)
	msg, err := sip.ParseMessage([]byte(head.String() + "\r\n" + string(body)))
	require.NoError(t, err)
	res, ok := msg.(*sip.Response)
	require.True(t, ok, "a response, not %T", msg)
	return res
}

// cut resets the connection: the phone is gone without a word.
func (p *tcpParty) cut(t *testing.T) {
	t.Helper()
	require.NoError(t, p.conn.SetLinger(0))
	require.NoError(t, p.conn.Close())
}

// waitMusic waits until n more RTP packets have arrived.
func (p *tcpParty) waitMusic(t *testing.T, n int64, what string) {
	t.Helper()
	want := p.received.Load() + n
	waitUntil(t, 5*time.Second, what, func() bool { return p.received.Load() >= want })
}

// Scenario 8. A phone parks over TCP, then its connection is reset: the
// call stays parked (music still flows), and it still leaves the lot once,
// whichever way: retrieved, recalled, dropped at the pickup timeout, or
// dropped at Shutdown. The server's requests to the vanished party (the
// re-INVITE for two-way audio, the BYE) fail at once on the refused
// connection, and nothing is left behind.
func TestFaultTCPConnectionDropped(t *testing.T) {
	t.Parallel()

	t.Run("then retrieved", func(t *testing.T) {
		t.Parallel()
		srv, oc := faultServer(t, sipadapter.Config{})
		ctx := ctxFor(t, 20*time.Second)
		party := parkOverTCP(t, srv, "")
		party.waitMusic(t, 10, "music over the TCP-signalled call")
		party.cut(t)
		party.waitMusic(t, 10, "music goes on after the reset")
		require.Equal(t, 1, srv.Lot().Len())

		carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
		got, err := carol.Call(ctx, srv.OrbitURI(party.orbit), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		require.NoError(t, got.Hangup(ctx))
		waitUntil(t, 5*time.Second, "the vanished party's leg is freed", func() bool {
			return srv.OpenLegs() == 0 && srv.PortsInUse() == 0
		})
		oc.waitEnded(t, 1, 5*time.Second)
		require.Equal(t, park.Retrieved, oc.outcome(t, oc.parked()[0]))
	})

	// At the pickup timeout: one call is recalled to its parker, who
	// answers; the other has no parker and is dropped.
	t.Run("then recalled or dropped at the timeout", func(t *testing.T) {
		t.Parallel()
		skipShort(t)
		bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
		srv, oc := faultServer(t, sipadapter.Config{Park: park.Config{PickupTimeout: park.MinPickupTimeout, RecallRingTime: 5 * time.Second}})
		ctx := ctxFor(t, 30*time.Second)
		withParker := parkOverTCP(t, srv, bob.URI())
		without := parkOverTCP(t, srv, "")
		for _, p := range []*tcpParty{withParker, without} {
			p.waitMusic(t, 10, "music over the TCP-signalled call") // so the ACK was read
			p.cut(t)
			p.waitMusic(t, 10, "music goes on after the reset")
		}
		require.Equal(t, 2, srv.Lot().Len())

		recall := waitIncoming(t, ctx, bob, "the recall")
		oc.waitEnded(t, 2, 10*time.Second)
		require.Equal(t, park.Recalled, oc.outcome(t, oc.idAt(t, string(withParker.orbit))))
		require.Equal(t, park.Dropped, oc.outcome(t, oc.idAt(t, string(without.orbit))))
		require.NoError(t, recall.Hangup(ctx))
		waitUntil(t, 5*time.Second, "the BYEs to the vanished parties fail fast and free their legs", func() bool {
			return srv.OpenLegs() == 0 && srv.PortsInUse() == 0
		})
	})

	t.Run("then dropped at shutdown", func(t *testing.T) {
		t.Parallel()
		srv, oc := faultServer(t, sipadapter.Config{})
		party := parkOverTCP(t, srv, "")
		party.waitMusic(t, 10, "music over the TCP-signalled call")
		party.cut(t)
		party.waitMusic(t, 10, "music goes on after the reset")
		ids := oc.parked()
		require.Len(t, ids, 1)
		// No parker, no fallback: testServer's Shutdown drops it, and its
		// leak checks run before the final outcome check.
		oc.expectAtEnd(ids[0], park.Dropped)
	})
}

// The single-outcome recorder must itself catch a call that ends twice or
// never: a check of the check, on events fed by hand.
func TestFaultOutcomeRecorder(t *testing.T) {
	t.Parallel()
	ev := func(kind park.EventKind, id string, o park.Outcome) park.Event {
		return park.Event{Kind: kind, Call: park.CallInfo{ParkID: id, Orbit: "701"}, Outcome: o}
	}
	for name, tc := range map[string]struct {
		events []park.Event
		fails  bool
	}{
		"once":       {[]park.Event{ev(park.EventParked, "a", 0), ev(park.EventEnded, "a", park.Retrieved)}, false},
		"never":      {[]park.Event{ev(park.EventParked, "a", 0)}, true},
		"twice":      {[]park.Event{ev(park.EventParked, "a", 0), ev(park.EventEnded, "a", park.Retrieved), ev(park.EventEnded, "a", park.Dropped)}, true},
		"no outcome": {[]park.Event{ev(park.EventParked, "a", 0), ev(park.EventEnded, "a", park.NoOutcome)}, true},
		"unknown":    {[]park.Event{ev(park.EventEnded, "b", park.Dropped)}, true},
	} {
		oc := newOutcomes()
		for _, e := range tc.events {
			oc.observe(e)
		}
		var r failRecorder
		oc.check(&r)
		require.Equal(t, tc.fails, r.failed, name)
	}
}

// failRecorder takes the check's errors in TestFaultOutcomeRecorder.
type failRecorder struct{ failed bool }

func (r *failRecorder) Errorf(string, ...any) { r.failed = true }

// callResult is how one of callAtOnce's calls went.
type callResult struct {
	call *parktest.Call
	err  error
}

// callAtOnce has phones phones (users prefix0, prefix1, ...) each call
// target perPhone times, every call released at the same instant, and
// returns how each went.
func callAtOnce(t *testing.T, ctx context.Context, prefix string, phones, perPhone int, target string) []callResult {
	t.Helper()
	results := make(chan callResult, phones*perPhone)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range phones {
		p := parktest.NewPhone(t, parktest.PhoneOptions{User: fmt.Sprintf("%s%d", prefix, i)})
		for range perPhone {
			wg.Go(func() {
				<-start
				c, err := p.Call(ctx, target, parktest.CallOptions{Mute: true})
				results <- callResult{c, err}
			})
		}
	}
	close(start)
	wg.Wait()
	close(results)
	var all []callResult
	for r := range results {
		all = append(all, r)
	}
	return all
}

// referThenHangUp sends a REFER to target on talk and hangs up the moment
// the 202 arrives, before any NOTIFY: the hurried transferor.
func referThenHangUp(t *testing.T, ctx context.Context, talk *parktest.Call, target string) {
	t.Helper()
	refer := sip.NewRequest(sip.REFER, sip.Uri{})
	refer.AppendHeader(sip.NewHeader("Refer-To", "<"+target+">"))
	res, err := talk.Send(ctx, refer)
	require.NoError(t, err)
	require.Equal(t, 202, res.StatusCode)
	require.NoError(t, talk.Hangup(ctx), "the referrer hangs up at once")
}
