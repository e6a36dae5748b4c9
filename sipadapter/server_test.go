package sipadapter_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// sipgo's transport layer keeps package-level idle connection
		// janitors; they belong to the library, not to a leaked call.
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*connectionPool).startIdleCheck"),
	)
}

// testServer runs a park server on a free loopback port with a small RTP
// range, and checks at the end that nothing was left behind: no dialog, no
// RTP port, no parked call, no subscription.
// loopback is the address every test listens on.
var loopback = netip.MustParseAddr("127.0.0.1")

func testServer(t *testing.T, cfg sipadapter.Config) *sipadapter.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.RTPPortMin == 0 {
		cfg.RTPPortMin, cfg.RTPPortMax = 11000, 11999
	}
	if cfg.Lot == nil && cfg.Park.MusicOnHold == nil && !cfg.Park.DisableMusicOnHold {
		music, err := media.Tone("test music", 440, time.Second)
		require.NoError(t, err)
		cfg.Park.MusicOnHold = music
	}
	if os.Getenv("CALLPARK_TEST_LOG") != "" {
		// The server's log in the test output, for debugging a failure.
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := sipadapter.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Listen(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.Zero(t, srv.Lot().Len(), "parked calls left")
		require.Zero(t, srv.OpenLegs(), "SIP dialogs left")
		require.Zero(t, srv.PortsInUse(), "RTP ports left")
		require.Zero(t, srv.Subscriptions(), "subscriptions left")
	})
	return srv
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func orbitsTable(t *testing.T, spec string) *orbit.Table {
	t.Helper()
	table, err := orbit.ParseTable(spec)
	require.NoError(t, err)
	return table
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

func referredBy(uri string) sip.Header { return sip.NewHeader("Referred-By", "<"+uri+">") }

func statusOf(t *testing.T, err error) int {
	t.Helper()
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	return se.Code
}

// waitUntil polls cond (server state has no event to wait on).
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

// Flows 1 and 3: park, hear music, retrieve, talk, BYE passed on.
func TestParkAndRetrieve(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{})
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: transport})
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: transport, Codecs: []media.Codec{media.PCMA}})
			ctx := ctxFor(t, 20*time.Second)

			parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
			require.NoError(t, err)
			require.Equal(t, "701", parked.Orbit())
			require.NoError(t, parked.WaitReceived(ctx, 10), "hold music reaches the parked caller")
			require.Equal(t, media.SendOnly, parked.RemoteSDP().Direction, "a parked leg is answered sendonly")

			talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{})
			require.NoError(t, err)
			require.Zero(t, srv.Lot().Len(), "the orbit is free once retrieved")
			// PCMA (bob) <-> PCMU (alice) through the relay, both ways.
			before := parked.Received()
			require.NoError(t, talk.WaitReceived(ctx, 25))
			require.NoError(t, parked.WaitReceived(ctx, before+25))

			require.NoError(t, talk.Hangup(ctx))
			select {
			case <-parked.Done():
				require.True(t, parked.EndedByRemote(), "the server passed bob's BYE to alice")
			case <-ctx.Done():
				t.Fatal("alice's call did not end after bob hung up")
			}
			waitUntil(t, 5*time.Second, "legs are freed", func() bool { return srv.OpenLegs() == 0 })
		})
	}
}

// Flow 3: of racing retrieves exactly one gets 200, the others 404.
func TestRacingRetrievesHaveOneWinner(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	const racers = 8
	var wg sync.WaitGroup
	results := make(chan error, racers)
	calls := make(chan *parktest.Call, racers)
	for i := range racers {
		phone := parktest.NewPhone(t, parktest.PhoneOptions{User: fmt.Sprintf("racer%d", i)})
		wg.Go(func() {
			c, err := phone.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
			results <- err
			if err == nil {
				calls <- c
			}
		})
	}
	wg.Wait()
	close(results)
	close(calls)
	wins := 0
	for err := range results {
		if err == nil {
			wins++
			continue
		}
		require.Equal(t, 404, statusOf(t, err))
	}
	require.Equal(t, 1, wins)
	for c := range calls {
		require.NoError(t, c.Hangup(ctx))
	}
	<-parked.Done()
}

// Flow 2: directed park on a free orbit, 486 on an occupied one, 404 outside.
func TestDirectedPark(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	ctx := ctxFor(t, 20*time.Second)
	by := referredBy("sip:bob@127.0.0.1:5999")

	parked, err := alice.Call(ctx, srv.OrbitURI("750"), parktest.CallOptions{Headers: []sip.Header{by}, Mute: true})
	require.NoError(t, err)
	require.Equal(t, "750", parked.Orbit())
	info, ok := srv.Lot().Lookup("750")
	require.True(t, ok)
	require.Equal(t, "sip:bob@127.0.0.1:5999", info.Parker, "Referred-By names the parker")

	_, err = carol.Call(ctx, srv.OrbitURI("750"), parktest.CallOptions{Headers: []sip.Header{by}})
	require.Equal(t, 486, statusOf(t, err), "occupied: busy, never a pickup")
	_, err = carol.Call(ctx, srv.OrbitURI("800"), parktest.CallOptions{Headers: []sip.Header{by}})
	require.Equal(t, 404, statusOf(t, err), "outside every range")
	_, err = carol.Call(ctx, srv.OrbitURI("751"), parktest.CallOptions{})
	require.Equal(t, 404, statusOf(t, err), "retrieve of an empty orbit")

	require.NoError(t, parked.Hangup(ctx))
	waitUntil(t, 5*time.Second, "the orbit is free", func() bool { return srv.Lot().Len() == 0 })
}

// Flow 7: a full lot answers 486 with a reason; parked calls keep their music.
func TestLotFull(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Orbits: orbitsTable(t, "701-702")})
	ctx := ctxFor(t, 20*time.Second)
	var parked []*parktest.Call
	for _, name := range []string{"alice", "bob"} {
		p := parktest.NewPhone(t, parktest.PhoneOptions{User: name})
		c, err := p.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		parked = append(parked, c)
	}
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	_, err := carol.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 486, se.Code)
	require.Contains(t, se.Response.GetHeader("Warning").Value(), "full")
	require.NotNil(t, se.Response.GetHeader("Reason"))
	for _, c := range parked {
		n := c.Received()
		require.NoError(t, c.WaitReceived(ctx, n+10), "calls already parked keep their music")
		require.NoError(t, c.Hangup(ctx))
	}
}

// Flow 5: recall unanswered (CANCEL after the ring time), a second attempt,
// then the fallback answers and audio is relayed.
func TestRecallThenFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	operator := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
	srv := testServer(t, sipadapter.Config{Park: park.Config{
		PickupTimeout:     park.MinPickupTimeout,
		MaxPickupAttempts: 2,
		RecallRingTime:    time.Second,
		FallbackURI:       operator.URI(),
	}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 40*time.Second)

	start := time.Now()
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}})
	require.NoError(t, err)
	msgs, err := bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+parked.Orbit(), msgs[0].Body)

	var answered *parktest.Call
	select {
	case answered = <-operator.Incoming():
	case <-ctx.Done():
		t.Fatal("the fallback was never rung")
	}
	elapsed := time.Since(start)
	require.GreaterOrEqual(t, elapsed, park.MinPickupTimeout+2*time.Second, "two recalls of 1 s came first")
	require.Equal(t, 2, bob.Inbox().Invites())
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 2), "each unanswered recall was cancelled")
	waitUntil(t, 5*time.Second, "the orbit is free once the fallback answered", func() bool { return srv.Lot().Len() == 0 })

	before := parked.Received()
	require.NoError(t, answered.WaitReceived(ctx, 25), "the fallback hears the parked caller")
	require.NoError(t, parked.WaitReceived(ctx, before+25), "and the other way")
	require.NoError(t, answered.Hangup(ctx))
	<-parked.Done()
}

// Flow 5: a retrieve while the recall rings wins, and the recall is cancelled.
func TestRetrieveDuringRecall(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	srv := testServer(t, sipadapter.Config{Park: park.Config{PickupTimeout: park.MinPickupTimeout}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	ctx := ctxFor(t, 40*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}})
	require.NoError(t, err)
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1))
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 1), "the ringing recall is cancelled")
	require.NoError(t, got.Hangup(ctx))
	<-parked.Done()
	require.Equal(t, 1, bob.Inbox().Invites())
}

// Flow 6: the parked party hangs up: orbit free at once, no recall.
func TestParkedHangUp(t *testing.T) {
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	srv := testServer(t, sipadapter.Config{})
	var ended []park.Event
	var mu sync.Mutex
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
		mu.Lock()
		defer mu.Unlock()
		if e.Kind == park.EventEnded {
			ended = append(ended, e)
		}
	}))
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}})
	require.NoError(t, err)
	require.NoError(t, parked.Hangup(ctx))
	waitUntil(t, 5*time.Second, "the call ended", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ended) == 1
	})
	require.Equal(t, park.Abandoned, ended[0].Outcome)
	require.Zero(t, srv.Lot().Len())
	require.Zero(t, bob.Inbox().Invites(), "no recall")
}

// Flow 4: REFER re-parks the other party; the referrer's BYE does not reach it.
func TestReparkByRefer(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{})
	require.NoError(t, err)

	res, err := talk.Refer(ctx, srv.ParkURI())
	require.NoError(t, err)
	require.Equal(t, 202, res.Accepted)
	require.Equal(t, 200, res.FinalStatus)
	require.Equal(t, "702", res.Orbit, "lru: the never-used orbit next")
	require.True(t, strings.HasPrefix(res.Notifies[0], "SIP/2.0 100 Trying"))
	info, ok := srv.Lot().Lookup("702")
	require.True(t, ok)
	require.Equal(t, bob.URI(), info.Parker, "the referrer (From, no Referred-By) is the parker")

	require.NoError(t, talk.Hangup(ctx))
	n := parked.Received()
	require.NoError(t, parked.WaitReceived(ctx, n+10), "alice is parked again, with music")
	select {
	case <-parked.Done():
		t.Fatal("the referrer's BYE reached the re-parked party")
	default:
	}
	require.NoError(t, parked.Hangup(ctx))
}

// Flow 7 for REFER: no free orbit: final NOTIFY 486, the call stays bridged.
func TestReparkLotFull(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Orbits: orbitsTable(t, "701-701")})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{})
	require.NoError(t, err)
	other, err := carol.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	res, err := talk.Refer(ctx, srv.ParkURI())
	require.NoError(t, err)
	require.Equal(t, 202, res.Accepted)
	require.Equal(t, 486, res.FinalStatus)
	before := talk.Received()
	require.NoError(t, talk.WaitReceived(ctx, before+25), "bob still hears alice")

	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
	require.NoError(t, other.Hangup(ctx))
}

// Flow 4: a REFER without Refer-To is a 400.
func TestReferWithoutReferTo(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	res, err := talk.Send(ctx, sip.NewRequest(sip.REFER, sip.Uri{}))
	require.NoError(t, err)
	require.Equal(t, 400, res.StatusCode)
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
}

// Flow 5b: attended transfer into park. bob's consult call to 700 is parked
// and bob hears where ("parked at 701"); bob REFERs alice to 700 with
// Replaces naming it; alice's INVITE takes over the orbit and bob's consult
// leg gets BYE.
func TestAttendedTransferIntoPark(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Announcements: sipadapter.Announcements{Parker: true}})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"}) // follows REFERs, as phones do
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})

	aliceToBob, err := alice.Call(ctx, bob.URI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	consult, err := bob.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
	require.NoError(t, err)
	orbitNo := consult.Orbit()
	requireSaidOnce(ctx, t, consult, sequence(t, consult.Negotiated().Codec, media.PromptParkedAt, orbitNo))

	var bobSide *parktest.Call
	select {
	case bobSide = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("bob never saw alice's call")
	}
	res, err := bobSide.Refer(ctx, consult.ReplacingURI(srv.ParkURI()), referredBy(bob.URI()))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)

	var taken *parktest.Call
	select {
	case taken = <-alice.Transfers():
	case <-ctx.Done():
		t.Fatal("alice did not follow the REFER")
	}
	require.Equal(t, orbitNo, taken.Orbit(), "the same orbit")
	select {
	case <-consult.Done():
		require.True(t, consult.EndedByRemote(), "the replaced consult leg gets BYE")
	case <-ctx.Done():
		t.Fatal("the consult leg was not hung up")
	}
	info, ok := srv.Lot().Lookup(orbit.Orbit(orbitNo))
	require.True(t, ok)
	require.Equal(t, bob.URI(), info.Parker)
	require.NoError(t, taken.WaitReceived(ctx, 10), "alice hears the music")
	require.NoError(t, taken.Hangup(ctx))
	require.NoError(t, aliceToBob.Hangup(ctx))
}

// Flow 5b refusals: Replaces naming no parked dialog is 481, two are 400.
func TestReplacesRefusals(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	_, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{
		sip.NewHeader("Replaces", "nosuchcall@x;to-tag=a;from-tag=b"),
	}})
	require.Equal(t, 481, statusOf(t, err))

	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	consult, err := bob.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	u, err := url.Parse(consult.ReplacingURI(srv.ParkURI()))
	require.NoError(t, err)
	replaces := u.Query().Get("Replaces")
	require.NotEmpty(t, replaces)
	_, err = alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{
		sip.NewHeader("Replaces", replaces), sip.NewHeader("Replaces", replaces),
	}})
	require.Equal(t, 400, statusOf(t, err))
	require.NoError(t, consult.Hangup(ctx))
}

// Flow 8: BLF on an orbit: full state at once, confirmed while parked,
// terminated when emptied, versions counting up; Expires 0 ends it.
func TestBLF(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})

	orbitSub, err := watcher.Subscribe(ctx, srv.OrbitURI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	lotSub, err := watcher.Subscribe(ctx, srv.ParkURI(), "dialog", time.Hour)
	require.NoError(t, err)

	next := func(sub *parktest.Subscription) parktest.DialogInfo {
		t.Helper()
		select {
		case n := <-sub.Notifies():
			require.Equal(t, "application/dialog-info+xml", n.ContentType)
			info, err := parktest.ParseDialogInfo(n.Body)
			require.NoError(t, err)
			require.Equal(t, "full", info.State)
			return info
		case <-ctx.Done():
			t.Fatal("no NOTIFY")
		}
		return parktest.DialogInfo{}
	}
	first := next(orbitSub)
	require.Empty(t, first.Dialogs, "an empty orbit")
	next(lotSub)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	busy := next(orbitSub)
	require.Equal(t, first.Version+1, busy.Version)
	require.Len(t, busy.Dialogs, 1)
	require.Equal(t, "confirmed", busy.Dialogs[0].State)
	require.Equal(t, "confirmed", next(lotSub).Dialogs[0].State)

	require.NoError(t, parked.Hangup(ctx))
	free := next(orbitSub)
	require.Equal(t, busy.Version+1, free.Version)
	require.Equal(t, "terminated", free.Dialogs[0].State)
	next(lotSub)

	require.NoError(t, orbitSub.Unsubscribe(ctx))
	require.NoError(t, lotSub.Unsubscribe(ctx))
	waitUntil(t, 5*time.Second, "subscriptions end", func() bool { return srv.Subscriptions() == 0 })

	_, err = watcher.Subscribe(ctx, srv.OrbitURI("701"), "presence", time.Hour)
	require.Equal(t, 489, statusOf(t, err))
}

// Flow 9: a hold re-INVITE is answered recvonly and silences the music until
// the resume.
func TestHoldStopsMusic(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 5))

	require.NoError(t, parked.Hold(ctx))
	require.Equal(t, media.RecvOnly, parked.RemoteSDP().Direction, "a hold is answered recvonly")
	time.Sleep(100 * time.Millisecond) // packets in flight
	held := parked.Received()
	time.Sleep(300 * time.Millisecond)
	require.LessOrEqual(t, parked.Received(), held+1, "no music while held")

	require.NoError(t, parked.Resume(ctx))
	require.NoError(t, parked.WaitReceived(ctx, held+10), "music again after the resume")
	require.NoError(t, parked.Hangup(ctx))
}

// Flow 10: OPTIONS, unknown users, offers without G.711, unknown methods.
func TestEverythingElse(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})

	res, err := alice.Options(ctx, srv.ParkURI())
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Contains(t, res.GetHeader("Allow").Value(), "REFER")
	require.Equal(t, "replaces", res.GetHeader("Supported").Value())
	require.Equal(t, "refer, dialog", res.GetHeader("Allow-Events").Value())

	_, err = alice.Call(ctx, "sip:600@"+srv.Addr().String(), parktest.CallOptions{})
	require.Equal(t, 404, statusOf(t, err))

	g729 := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
	var uri sip.Uri
	require.NoError(t, sip.ParseUri(srv.ParkURI(), &uri))
	invite := sip.NewRequest(sip.INVITE, uri)
	invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	invite.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(alice.Addr().Port())}})
	invite.SetBody([]byte(g729))
	res, err = alice.Send(ctx, invite)
	require.NoError(t, err)
	require.Equal(t, 488, res.StatusCode)

	res, err = alice.Send(ctx, sip.NewRequest(sip.PUBLISH, uri))
	require.NoError(t, err)
	require.Equal(t, 405, res.StatusCode)

	res, err = alice.Send(ctx, sip.NewRequest(sip.BYE, uri))
	require.NoError(t, err)
	require.Equal(t, 481, res.StatusCode, "a BYE for no dialog")
	require.Zero(t, srv.Lot().Len())
}

// Flow 11: shutdown recalls every parked call at once and new parks get 503.
func TestShutdownRecallsParkedCalls(t *testing.T) {
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	cfg := sipadapter.Config{Listen: "127.0.0.1:0", RTPPortMin: 12000, RTPPortMax: 12999}
	if os.Getenv("CALLPARK_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := sipadapter.New(cfg)
	require.NoError(t, err)
	require.NoError(t, srv.Listen(context.Background()))
	ctx := ctxFor(t, 30*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 1), "parked, with music")
	_, err = bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)

	var outcome park.Outcome
	var mu sync.Mutex
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
		if e.Kind == park.EventEnded {
			mu.Lock()
			outcome = e.Outcome
			mu.Unlock()
		}
	}))

	// The recall is answered: a call the server relays, which the drain
	// waits for until bob hangs up; alice gets the BYE.
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	var recall *parktest.Call
	select {
	case recall = <-bob.Incoming():
	case <-ctx.Done():
		t.Fatal("no recall reached bob")
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) while a call was connected", err)
	case <-parked.Done():
		t.Fatal("the recalled call was cut")
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, recall.Hangup(ctx))
	require.NoError(t, <-done)
	require.Equal(t, 1, bob.Inbox().Invites(), "the parker was rung at once")
	mu.Lock()
	require.Equal(t, park.Recalled, outcome)
	mu.Unlock()
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote())
	case <-ctx.Done():
		t.Fatal("the parked caller's call did not end")
	}
	require.Zero(t, srv.OpenLegs())
	require.Zero(t, srv.PortsInUse())
}

// Requests that keep arriving while the server shuts down are answered or
// dropped, never on a socket sipgo opens for them after the listener is
// gone: nothing would close it, and its read goroutine would outlive the
// server.
func TestShutdownUnderRequests(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	for range 5 {
		srv, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0", RTPPortMin: 13000, RTPPortMax: 13099})
		require.NoError(t, err)
		require.NoError(t, srv.Listen(context.Background()))
		stop := floodOptions(t, srv.Addr().String(), 4)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		require.NoError(t, srv.Shutdown(ctx))
		cancel()
		stop()
	}
}

// floodOptions sends OPTIONS to addr from n sockets as fast as it can, once
// the first is answered, until stop is called.
func floodOptions(t *testing.T, addr string, n int) (stop func()) {
	t.Helper()
	dst, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	done := make(chan struct{})
	answered := make(chan struct{}, n)
	var wg sync.WaitGroup
	for k := range n {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		wg.Go(func() { // reads the answers, so that the socket never fills
			buf := make([]byte, 4096)
			first := true
			for {
				if _, _, err := conn.ReadFrom(buf); err != nil {
					return
				}
				if first {
					answered <- struct{}{}
					first = false
				}
			}
		})
		wg.Go(func() {
			defer conn.Close()
			local := conn.LocalAddr().String()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				msg := fmt.Sprintf("OPTIONS sip:700@%[1]s SIP/2.0\r\n"+
					"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK-%[3]d-%[4]d\r\n"+
					"From: <sip:flood@%[2]s>;tag=f%[3]d\r\nTo: <sip:700@%[1]s>\r\n"+
					"Call-ID: flood-%[3]d-%[4]d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
					addr, local, k, i)
				if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
					return
				}
				if i%32 == 0 {
					time.Sleep(100 * time.Microsecond) // now and then, let the server read
				}
			}
		})
	}
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the server answered no OPTIONS")
	}
	return func() {
		close(done)
		wg.Wait()
	}
}

// A vendor brings its own lot and lets the server ring its recalls.
func TestHostLot(t *testing.T) {
	var srv *sipadapter.Server
	music, err := media.Tone("host music", 300, time.Second)
	require.NoError(t, err)
	lot, err := park.NewLot(park.Config{
		MusicOnHold: music,
		Dialer: park.DialerFunc(func(ctx context.Context, r park.DialRequest) (park.Answered, error) {
			return srv.Dial(ctx, r)
		}),
	})
	require.NoError(t, err)

	_, err = sipadapter.New(sipadapter.Config{Lot: lot, Park: park.Config{MaxPickupAttempts: 3}})
	require.Error(t, err, "a lot and a lot configuration together")

	srv = testServer(t, sipadapter.Config{Lot: lot})
	require.Same(t, lot, srv.Lot())
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 5), "the host lot's music")
	talk, err := bob.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
}

// A vendor's own sipgo user agent serves the park server too, and stays the
// vendor's: Shutdown does not close it.
func TestHostUserAgent(t *testing.T) {
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	t.Cleanup(func() { ua.Close() }) // runs after the server's Shutdown
	srv := testServer(t, sipadapter.Config{UA: ua})
	ctx := ctxFor(t, 10*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, parked.Hangup(ctx))
}

// A parker whose phone never answers at all (no 100, no 180: unreachable)
// cannot be CANCELled; each recall attempt still ends at the ring time, not
// after sipgo's 32 s transaction timeout.
func TestRecallToSilentParker(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer silent.Close()
	operator := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
	srv := testServer(t, sipadapter.Config{Park: park.Config{
		PickupTimeout:     park.MinPickupTimeout,
		MaxPickupAttempts: 2,
		RecallRingTime:    time.Second,
		FallbackURI:       operator.URI(),
	}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 60*time.Second)
	parker := fmt.Sprintf("sip:bob@%s", silent.LocalAddr())
	start := time.Now()
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(parker)}, Mute: true})
	require.NoError(t, err)
	select {
	case answered := <-operator.Incoming():
		elapsed := time.Since(start)
		require.Less(t, elapsed, park.MinPickupTimeout+10*time.Second, "two 1 s recalls, not two 32 s transaction timeouts")
		require.NoError(t, answered.Hangup(ctx))
	case <-ctx.Done():
		t.Fatal("the fallback was never rung")
	}
	<-parked.Done()
}

// A late copy of a parking INVITE (same Call-ID, From tag and CSeq, but a
// new transaction) must not park a second call: the first one's
// transaction has ended by then, so the server answers it as a merged
// request (RFC 3261 §8.2.2.2).
func TestMergedInviteIsRefused(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 10*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	var target sip.Uri
	require.NoError(t, sip.ParseUri(srv.ParkURI(), &target))
	dup := sip.NewRequest(sip.INVITE, target)
	var from sip.FromHeader
	_, err = sip.ParseAddressValue(parked.Header("From"), &from.Address, &from.Params)
	require.NoError(t, err)
	dup.AppendHeader(&from)
	callID := sip.CallIDHeader(parked.CallID())
	dup.AppendHeader(&callID)
	cseq := sip.NewHeader("CSeq", parked.Header("CSeq"))
	dup.AppendHeader(cseq)
	dup.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(alice.Addr().Port())}})
	res, err := alice.Send(ctx, dup)
	require.NoError(t, err)
	require.Equal(t, sip.StatusLoopDetected, res.StatusCode)
	require.Equal(t, 1, srv.Lot().Len(), "still one parked call")
	require.NoError(t, parked.Hangup(ctx))
}

// Shutdown may be called more than once (a signal handler and a deferred
// cleanup both do): the second call finds nothing to end and returns.
func TestShutdownTwice(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(ctx))
	<-parked.Done()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("a second Shutdown hung")
	}
}

// Orbits with # are dialled as %23 (RFC 3261 allows no bare # in a user
// part): the server reads the escape, and writes its own orbit URIs so.
func TestHashOrbitsAreEscaped(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Orbits: orbitsTable(t, "#1000-#1009")})
	ctx := ctxFor(t, 20*time.Second)
	require.Contains(t, srv.OrbitURI("#1000"), "sip:%231000@")
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})

	sub, err := watcher.Subscribe(ctx, srv.OrbitURI("#1003"), "dialog", time.Hour)
	require.NoError(t, err)
	directed, err := alice.Call(ctx, srv.OrbitURI("#1003"), parktest.CallOptions{Mute: true, Headers: []sip.Header{referredBy("sip:bob@127.0.0.1")}})
	require.NoError(t, err)
	require.Equal(t, "#1003", directed.Orbit())
	got, err := carol.Call(ctx, "sip:%231003@"+srv.Addr().String(), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "the escaped orbit retrieves")
	require.NoError(t, got.Hangup(ctx))
	<-directed.Done()
	require.NoError(t, sub.Unsubscribe(ctx))
}

// A parker whose phone rings (180) and then vanishes answers neither the
// CANCEL nor with a 487. sipgo would wait 32 s for each; the recall gives up
// after its ring time plus the CANCEL's two seconds, so Shutdown, which
// recalls at once, is not held for a minute.
func TestRecallToParkerThatVanishesAfterRinging(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Park: park.Config{RecallRingTime: time.Second}})
	ctx := ctxFor(t, 30*time.Second)
	vanishing, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer vanishing.Close()
	cancels := make(chan struct{}, 10)
	go func() {
		buf := make([]byte, 8192)
		for {
			n, from, err := vanishing.ReadFrom(buf)
			if err != nil {
				return
			}
			start, h, _, err := readSIPMessage(bufio.NewReader(bytes.NewReader(buf[:n])))
			if err != nil {
				continue
			}
			switch {
			case strings.HasPrefix(start, "INVITE "):
				res := "SIP/2.0 180 Ringing\r\n"
				for _, name := range []string{"Via", "From", "Call-Id", "Cseq"} {
					for _, v := range h.Values(name) {
						res += name + ": " + v + "\r\n"
					}
				}
				res += "To: " + h.Get("To") + ";tag=gone\r\nContent-Length: 0\r\n\r\n"
				_, _ = vanishing.WriteTo([]byte(res), from)
			case strings.HasPrefix(start, "CANCEL "):
				cancels <- struct{}{} // and no answer: the phone is gone
			}
		}
	}()

	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parker := "sip:bob@" + vanishing.LocalAddr().String()
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, Headers: []sip.Header{referredBy(parker)}})
	require.NoError(t, err)

	start := time.Now()
	require.NoError(t, srv.Shutdown(ctx), "Shutdown recalls the call at once")
	took := time.Since(start)
	require.Less(t, took, 8*time.Second, "one ring (1 s), the CANCEL (2 s), not sipgo's 32 s waits")
	select {
	case <-cancels:
	default:
		t.Fatal("the ringing recall was not CANCELled")
	}
	<-parked.Done()
	t.Logf("Shutdown took %v", took.Round(10*time.Millisecond))
}
