package sipadapter_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/emiago/sipgo/sip"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/redispark"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// clusterNode starts a park server sharing the lot in m as node name.
func clusterNode(t *testing.T, m *miniredis.Miniredis, name string, cfg sipadapter.Config, rtp int) *sipadapter.Server {
	return clusterNodeLease(t, m, name, cfg, rtp, 2*time.Second)
}

// clusterNodeLease is clusterNode with the node's lease. Wired as the
// programs are: it takes over the calls of nodes that die, and forgets
// its own calls another node took.
func clusterNodeLease(t *testing.T, m *miniredis.Miniredis, name string, cfg sipadapter.Config, rtp int, lease time.Duration) *sipadapter.Server {
	t.Helper()
	return sealedClusterNode(t, m, name, cfg, rtp, lease, nil)
}

// sealedClusterNode is clusterNodeLease whose directory seals handoffs
// with key (redispark.Config.HandoffKey; nil: in the clear).
func sealedClusterNode(t *testing.T, m *miniredis.Miniredis, name string, cfg sipadapter.Config, rtp int, lease time.Duration, key []byte) *sipadapter.Server {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1})
	r, err := orbit.ParseRange("701-799")
	require.NoError(t, err)
	var srv atomic.Pointer[sipadapter.Server]
	alloc, err := redisorbit.New(context.Background(), redisorbit.Config{
		Client: c, Node: name, Ranges: []orbit.Range{r}, Lease: lease,
		OnLost: func(lost []orbit.Orbit) {
			for _, o := range lost {
				_ = srv.Load().Lot().Disown(o)
			}
		},
	})
	require.NoError(t, err)
	dir, err := redispark.New(redispark.Config{Orbits: alloc, HandoffKey: key})
	require.NoError(t, err)
	music, err := media.Tone("test music", 440, time.Second)
	require.NoError(t, err)
	lot, err := park.NewLot(park.Config{Orbits: alloc, Cluster: dir, MusicOnHold: music,
		Adopter: park.AdopterFunc(func(ctx context.Context, c *park.Call) (park.Leg, error) {
			return srv.Load().Adopt(ctx, c)
		})})
	require.NoError(t, err)
	t.Cleanup(func() {
		// After the server's own cleanup (registered below, run first).
		_ = dir.Close()
		_ = alloc.Close(context.Background())
		_ = c.Close()
	})
	cfg.Lot = lot
	cfg.RTPPortMin, cfg.RTPPortMax = rtp, rtp+499
	s := testServer(t, cfg)
	srv.Store(s)
	require.NoError(t, alloc.SetAdvertise(context.Background(), s.Addr().String()))
	return s
}

// CLUSTER.md 2: a call parked on A is retrieved at B; the dialog, and the
// audio both ways, are with A.
func TestRetrieveAtAnotherNode(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			m := miniredis.RunT(t)
			a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
			b := clusterNode(t, m, "b", sipadapter.Config{}, 12500)
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: transport})
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: transport})
			ctx := ctxFor(t, 20*time.Second)

			parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{})
			require.NoError(t, err)
			o := orbit.Orbit(parked.Orbit())
			require.NoError(t, parked.WaitReceived(ctx, 10))

			talk, err := bob.Call(ctx, b.OrbitURI(o), parktest.CallOptions{})
			require.NoError(t, err)
			require.Contains(t, talk.Header("Contact"), a.Addr().String(), "the dialog is with the node holding the call")
			require.Zero(t, a.Lot().Len())
			before := parked.Received()
			require.NoError(t, talk.WaitReceived(ctx, 25))
			require.NoError(t, parked.WaitReceived(ctx, before+25))
			require.Zero(t, b.OpenLegs(), "b only forwarded")

			require.NoError(t, talk.Hangup(ctx))
			select {
			case <-parked.Done():
				require.True(t, parked.EndedByRemote())
			case <-ctx.Done():
				t.Fatal("the BYE did not reach alice")
			}
		})
	}
}

func TestRetrieveRedirectedToAnotherNode(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
	b := clusterNode(t, m, "b", sipadapter.Config{CrossNode: sipadapter.CrossNodeRedirect}, 12500)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	_, err = bob.Call(ctx, b.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 302, se.Code)
	require.Equal(t, "<sip:"+parked.Orbit()+"@"+a.Addr().String()+">", se.Response.Contact().Value())
}

// One winner among retrieves racing on two nodes; the loser gets 404.
func TestRacingRetrievesOnTwoNodes(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
	b := clusterNode(t, m, "b", sipadapter.Config{}, 12500)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	o := orbit.Orbit(parked.Orbit())
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes []int
		won   []*parktest.Call
	)
	for i, srv := range []*sipadapter.Server{a, b, a, b} {
		p := parktest.NewPhone(t, parktest.PhoneOptions{User: "r" + string(rune('0'+i))})
		wg.Go(func() {
			c, err := p.Call(ctx, srv.OrbitURI(o), parktest.CallOptions{Mute: true})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				won = append(won, c)
				return
			}
			var se *parktest.StatusError
			if errors.As(err, &se) {
				codes = append(codes, se.Code)
				return
			}
			t.Errorf("retrieve: %v", err)
		})
	}
	wg.Wait()
	require.Len(t, won, 1, "one winner")
	require.Equal(t, []int{404, 404, 404}, codes)
	require.NoError(t, won[0].Hangup(ctx))
}

// CLUSTER.md 4: a BLF watcher at B sees a call parked on A, and its end.
func TestBLFAcrossNodes(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
	b := clusterNode(t, m, "b", sipadapter.Config{}, 12500)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "desk"})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	sub, err := watcher.Subscribe(ctx, b.OrbitURI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	first := <-sub.Notifies()
	info, err := parktest.ParseDialogInfo(first.Body)
	require.NoError(t, err)
	require.Empty(t, info.Dialogs)

	start := time.Now()
	parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "701", parked.Orbit())
	n := <-sub.Notifies()
	info, err = parktest.ParseDialogInfo(n.Body)
	require.NoError(t, err)
	require.Len(t, info.Dialogs, 1)
	require.Equal(t, "confirmed", info.Dialogs[0].State)
	require.Less(t, time.Since(start), time.Second, "within 1 s")

	require.NoError(t, parked.Hangup(ctx))
	n = <-sub.Notifies()
	info, err = parktest.ParseDialogInfo(n.Body)
	require.NoError(t, err)
	require.Len(t, info.Dialogs, 1)
	require.Equal(t, "terminated", info.Dialogs[0].State)
	require.NoError(t, sub.Unsubscribe(ctx))
}

// CLUSTER.md 3 and 6: a directed park to an orbit held on another node is
// 486; a retrieve forwarded to a node that does not answer fails within
// 2 s with 480.
func TestDirectedParkAndDeadNode(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)

	// A node that holds 750 and whose SIP port nobody answers on.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer silent.Close()
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	r, _ := orbit.ParseRange("701-799")
	ghost, err := redisorbit.New(ctx, redisorbit.Config{Client: c, Node: "ghost", Advertise: silent.LocalAddr().String(), Ranges: []orbit.Range{r}, Lease: 2 * time.Second})
	require.NoError(t, err)
	defer ghost.Close(context.Background())
	require.NoError(t, ghost.Reserve(ctx, "750"))

	_, err = alice.Call(ctx, a.OrbitURI("750"), parktest.CallOptions{Mute: true, Headers: []sip.Header{referredBy(bob.URI())}})
	require.Equal(t, 486, statusOf(t, err), "directed park to an orbit held on another node")

	start := time.Now()
	_, err = bob.Call(ctx, a.OrbitURI("750"), parktest.CallOptions{Mute: true})
	require.Equal(t, 480, statusOf(t, err))
	require.Less(t, time.Since(start), 2*time.Second)
}

// CLUSTER.md 7: Redis unreachable: parks get 503 with Retry-After, the
// calls already parked keep their music and are retrieved at their node.
func TestRedisUnreachableRefusesParks(t *testing.T) {
	m := miniredis.RunT(t)
	a := clusterNode(t, m, "a", sipadapter.Config{}, 12000)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)

	m.SetError("LOADING Redis is loading the dataset in memory")
	// Until a request of the node's to Redis fails, a park may still get
	// an orbit the node claimed ahead.
	failing := time.Now()
	for {
		c, err := carol.Call(ctx, a.ParkURI(), parktest.CallOptions{Mute: true})
		if err != nil {
			break
		}
		require.NoError(t, c.Hangup(ctx))
		require.Less(t, time.Since(failing), 3*time.Second, "parks are refused once the node found Redis failing")
		time.Sleep(50 * time.Millisecond)
	}
	_, err = carol.Call(ctx, a.ParkURI(), parktest.CallOptions{Mute: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 503, se.Code)
	require.Equal(t, "5", se.Response.GetHeader("Retry-After").Value())

	before := parked.Received()
	require.NoError(t, parked.WaitReceived(ctx, before+10), "music goes on")
	talk, err := bob.Call(ctx, a.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{})
	require.NoError(t, err, "retrieved at its own node")
	m.SetError("")
	require.NoError(t, talk.Hangup(ctx))
}
