package sipadapter_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// Point 9 of issue 11: recalls reach the parker, never the server itself.

// endings records the lot's ring failures and outcomes.
type endings struct {
	mu       sync.Mutex
	failures []error
	outcome  park.Outcome // the last call's
}

// watchEndings watches lot; Shutdown returns once every event is seen.
func watchEndings(lot *park.Lot) *endings {
	e := &endings{}
	lot.Observe(park.ObserverFunc(func(ev park.Event) {
		e.mu.Lock()
		defer e.mu.Unlock()
		switch ev.Kind {
		case park.EventRingFailed:
			e.failures = append(e.failures, ev.Err)
		case park.EventEnded:
			e.outcome = ev.Outcome
		}
	}))
	return e
}

// A parker named by the server's own address (as linphone's Referred-By,
// sip:lp@127.0.0.1, names it when the server listens on 5060) used to make
// the server ring its own listener: 404 from itself, then dropped. Now the
// recall fails at once, saying why, and the call goes on to the fallback.
func TestRecallNeverRingsItself(t *testing.T) {
	op := parktest.NewPhone(t, parktest.PhoneOptions{User: "operator"})
	srv := testServer(t, sipadapter.Config{Park: park.Config{FallbackURI: op.URI()}})
	ends := watchEndings(srv.Lot())
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	self := "sip:lp@" + srv.Addr().String()
	_, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(self)}, Mute: true})
	require.NoError(t, err)

	require.NoError(t, shutdownAnswering(t, ctx, srv, op, nil), "the fallback rings")
	ends.mu.Lock()
	defer ends.mu.Unlock()
	require.Len(t, ends.failures, 1)
	require.Contains(t, ends.failures[0].Error(), "this server's own address")
	require.Equal(t, park.Forwarded, ends.outcome)
}

// A parker that parked by REFER is rung at its device: the Contact of the
// dialog its REFER came in, even when its Referred-By names no port
// (linphone's sip:lp@127.0.0.1, which is port 5060, nobody's).
func TestRecallRingsTheReferrersDevice(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ends := watchEndings(srv.Lot())
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	res, err := got.Refer(ctx, srv.ParkURI(), sip.NewHeader("Referred-By", "<sip:carol@127.0.0.1>"))
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	require.NoError(t, got.Hangup(ctx))
	info := srv.Lot().Calls()
	require.Len(t, info, 1)
	require.Equal(t, "sip:carol@127.0.0.1", info[0].Parker, "the parker is who the phone says")

	require.NoError(t, shutdownAnswering(t, ctx, srv, carol, func(c *parktest.Call) {
		require.True(t, strings.HasPrefix(c.Header("From"), `"Park `), "the recall shows the orbit: %s", c.Header("From"))
	}), "the recall reaches carol's phone")
	ends.mu.Lock()
	defer ends.mu.Unlock()
	require.Empty(t, ends.failures)
	require.Equal(t, park.Recalled, ends.outcome)
}

// With an outbound proxy, a recall to a URI goes through it: the proxy (a
// phone here) gets the INVITE for the parker, whose own host is never
// looked up.
func TestRecallThroughOutboundProxy(t *testing.T) {
	proxy := parktest.NewPhone(t, parktest.PhoneOptions{User: "proxy"})
	srv := testServer(t, sipadapter.Config{OutboundProxy: "sip:" + proxy.Addr().String()})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	_, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy("sip:bob@pbx.invalid")}, Mute: true})
	require.NoError(t, err)
	msgs, err := proxy.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err, "the parker's MESSAGE goes through the proxy")
	require.Contains(t, msgs[0].Body, "Parked at")

	require.NoError(t, shutdownAnswering(t, ctx, srv, proxy, func(c *parktest.Call) {
		require.Contains(t, c.Header("To"), "sip:bob@pbx.invalid", "addressed to the parker")
		require.Contains(t, c.Header("Route"), proxy.Addr().String(), "routed through the proxy")
	}), "the recall reaches the proxy")
}

// shutdownAnswering shuts srv down, which recalls every parked call at
// once, and answers the recall (or fallback) on phone, handing the call to
// check before hanging it up: the drain waits for that connected call, so
// Shutdown returns only then, and its error is returned.
func shutdownAnswering(t *testing.T, ctx context.Context, srv *sipadapter.Server, phone *parktest.Phone, check func(*parktest.Call)) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	select {
	case c := <-phone.Incoming():
		if check != nil {
			check(c)
		}
		require.NoError(t, c.Hangup(ctx))
	case <-ctx.Done():
		t.Fatal("no recall or fallback reached the phone")
	}
	return <-done
}
