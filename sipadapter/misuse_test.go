package sipadapter_test

import (
	"context"
	"errors"
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

// Each test here is a mistake a new vendor made embedding the SDK; each
// must end in a clear error, never a panic or a server that looks alive
// and is not.

// options asks the server for OPTIONS and returns the status.
func options(t *testing.T, ctx context.Context, srv *sipadapter.Server) (int, error) {
	t.Helper()
	phone := parktest.NewPhone(t, parktest.PhoneOptions{User: "probe"})
	u := sip.Uri{Scheme: "sip", Host: srv.Addr().Addr().String(), Port: int(srv.Addr().Port())}
	res, err := phone.Send(ctx, sip.NewRequest(sip.OPTIONS, u))
	if err != nil {
		return 0, err
	}
	return res.StatusCode, nil
}

// Listen twice used to start a second pair of serve loops, and Shutdown
// then panicked half the time (close of a closed channel). Now the second
// Listen is refused and Shutdown is clean; a server shut down does not
// listen again (http.ErrServerClosed).
func TestListenTwiceAndAfterShutdown(t *testing.T) {
	srv, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0", RTPPortMin: 13100, RTPPortMax: 13199})
	require.NoError(t, err)
	require.NoError(t, srv.Listen(context.Background()))
	require.ErrorIs(t, srv.Listen(context.Background()), sipadapter.ErrListening)
	ctx := ctxFor(t, 10*time.Second)
	code, err := options(t, ctx, srv)
	require.NoError(t, err)
	require.Equal(t, 200, code)
	require.NoError(t, srv.Shutdown(ctx))
	require.ErrorIs(t, srv.Listen(context.Background()), sipadapter.ErrServerClosed)
	require.NoError(t, srv.Shutdown(ctx), "a second Shutdown is harmless")

	never, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.NoError(t, never.Shutdown(ctx), "Shutdown without Listen")
	require.ErrorIs(t, never.Listen(context.Background()), sipadapter.ErrServerClosed)
}

// The ctx given to Listen bounds the setup only: cancelling it later used to
// close the sockets silently, the server looking alive while answering
// nothing, and Shutdown then waited 5 s and returned nil.
func TestListenContextBoundsSetupOnly(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	// testServer listened with context.Background(); do it again with a
	// context we cancel.
	cancelled, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0", RTPPortMin: 13200, RTPPortMax: 13299})
	require.NoError(t, err)
	lctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, cancelled.Listen(lctx))
	cancel()
	ctx := ctxFor(t, 10*time.Second)
	code, err := options(t, ctx, cancelled)
	require.NoError(t, err, "the server still answers after Listen's ctx ended")
	require.Equal(t, 200, code)
	start := time.Now()
	require.NoError(t, cancelled.Shutdown(ctx))
	require.Less(t, time.Since(start), 3*time.Second, "nothing to wait for")

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	other, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	require.ErrorIs(t, other.Listen(done), context.Canceled, "a ctx ended before Listen stops the setup")
	require.NoError(t, other.Shutdown(ctx))
	_ = srv
}

// Config.Orbits must list the lot's orbits: a host lot of 801-899 behind a
// server told 701-799 parked calls on 801 that no retrieve could reach.
// The server takes its orbits from the lot, and refuses a mismatch.
func TestOrbitsComeFromTheHostLot(t *testing.T) {
	alloc, err := orbit.NewMemoryAllocatorFromTable(orbitsTable(t, "801-899"), "", orbit.MemoryOptions{})
	require.NoError(t, err)
	lot, err := park.NewLot(park.Config{Orbits: alloc, DisableMusicOnHold: true})
	require.NoError(t, err)

	_, err = sipadapter.New(sipadapter.Config{Lot: lot, Orbits: orbitsTable(t, "701-799")})
	require.ErrorIs(t, err, sipadapter.ErrInvalidConfig)
	var cerr *sipadapter.ConfigError
	require.ErrorAs(t, err, &cerr)
	require.Equal(t, "Config.Orbits", cerr.Field)
	require.Contains(t, err.Error(), "801-899", "the error names the lot's orbits")

	// Without Orbits, the server answers for the lot's: a call parked on
	// 801 is retrieved on 801.
	var srv *sipadapter.Server
	lot, err = park.NewLot(park.Config{Orbits: alloc, DisableMusicOnHold: true,
		Dialer: park.DialerFunc(func(ctx context.Context, req park.DialRequest) (park.Answered, error) {
			return srv.Dial(ctx, req)
		})})
	require.NoError(t, err)
	srv = testServer(t, sipadapter.Config{Lot: lot})
	ctx := ctxFor(t, 10*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "801", parked.Orbit())
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	got, err := carol.Call(ctx, srv.OrbitURI("801"), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "retrieved on the lot's orbit")
	require.NoError(t, got.Hangup(ctx))
}

// Before Listen a server has nothing to ring with: a lot wired to
// Server.Dial gets an error it can test, not a nil pointer.
func TestDialBeforeListen(t *testing.T) {
	srv, err := sipadapter.New(sipadapter.Config{Listen: "127.0.0.1:0"})
	require.NoError(t, err)
	_, err = srv.Dial(context.Background(), park.DialRequest{Target: "sip:bob@127.0.0.1"})
	require.True(t, errors.Is(err, sipadapter.ErrNotListening))
}

// Point 8 of issue 11: a recall never fails for want of a port. With two
// RTP ports, alice's park used to take one and carol's the other, and
// alice's recall found none: dropped. Now a parked call keeps a port for
// its recall, so carol's park is refused (503) and alice's recall rings.
func TestRecallKeepsItsPort(t *testing.T) {
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	srv := testServer(t, sipadapter.Config{RTPPortMin: 10300, RTPPortMax: 10303}) // 10300 and 10302
	ctx := ctxFor(t, 20*time.Second)
	var mu sync.Mutex
	var outcome park.Outcome
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
		if e.Kind == park.EventEnded {
			mu.Lock()
			outcome = e.Outcome
			mu.Unlock()
		}
	}))
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.NoError(t, err)

	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	_, err = carol.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se, "the last port is alice's recall's")
	require.Equal(t, 503, se.Code)

	require.NoError(t, shutdownAnswering(t, ctx, srv, bob, nil), "alice's recall rings bob")
	<-parked.Done()
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, park.Recalled, outcome)
}
