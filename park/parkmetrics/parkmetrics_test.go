package parkmetrics_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/internal/metricstest"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/parkmetrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type leg struct{}

func (leg) Hold(context.Context, park.Music) error { return nil }
func (leg) Hangup(context.Context) error           { return nil }

type answered struct{}

func (answered) Connect(context.Context, park.Leg) error { return nil }
func (answered) Hangup(context.Context) error            { return nil }

// lint checks the metrics against Prometheus's naming rules.
func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

func TestScriptedParkRetrieveRecall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		answer := park.DialerFunc(func(ctx context.Context, req park.DialRequest) (park.Answered, error) {
			if req.Target == "sip:nobody@example.com" {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			time.Sleep(3 * time.Second)
			return answered{}, nil
		})
		rng, err := orbit.ParseRange("701-709")
		require.NoError(t, err)
		alloc, err := orbit.NewMemoryAllocator([]orbit.Range{rng}, orbit.MemoryOptions{})
		require.NoError(t, err)
		lot, err := park.NewLot(park.Config{Orbits: alloc, Dialer: answer, PickupTimeout: 20 * time.Second,
			RecallRingTime: 5 * time.Second, FallbackURI: "sip:op@example.com"})
		require.NoError(t, err)
		defer lot.Shutdown(t.Context())
		c := parkmetrics.New(lot)
		defer c.Close()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		lint(t, reg)

		park1, err := lot.Park(t.Context(), park.ParkRequest{Leg: leg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		_, err = lot.Park(t.Context(), park.ParkRequest{Leg: leg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		third, err := lot.Park(t.Context(), park.ParkRequest{Leg: leg{}, Parker: "sip:nobody@example.com"})
		require.NoError(t, err)
		fourth, err := lot.Park(t.Context(), park.ParkRequest{Leg: leg{}})
		require.NoError(t, err)
		synctest.Wait()
		v := metricstest.Values(t, reg)
		require.Equal(t, 4.0, v["callpark_parks_total"])
		require.Equal(t, 4.0, v["callpark_calls_parked"])
		require.Equal(t, 0.0, v["callpark_calls_ringing"])

		time.Sleep(5 * time.Second)
		_, err = lot.Retrieve(t.Context(), park.RetrieveRequest{Orbit: park1.Orbit()})
		require.NoError(t, err)
		time.Sleep(2 * time.Second)
		fourth.Abandon()
		time.Sleep(14 * time.Second) // the pickup timeout: two recalls ring
		synctest.Wait()
		v = metricstest.Values(t, reg)
		require.Equal(t, 0.0, v["callpark_calls_parked"])
		require.Equal(t, 2.0, v["callpark_calls_ringing"], "the second's and the third's parkers")
		require.Equal(t, 2.0, v["callpark_rings_total{purpose=recall}"])

		time.Sleep(10 * time.Second) // the second's recall answered at 23 s; the third's recall gives up at 25 s, fallback answers at 28 s
		synctest.Wait()
		v = metricstest.Values(t, reg)
		want := map[string]float64{
			"callpark_parks_total":                                  4,
			"callpark_calls_parked":                                 0,
			"callpark_calls_ringing":                                0,
			"callpark_rings_total{purpose=recall}":                  2,
			"callpark_rings_total{purpose=fallback}":                1,
			"callpark_rings_failed_total{purpose=recall}":           1,
			"callpark_rings_failed_total{purpose=fallback}":         0,
			"callpark_calls_ended_total{outcome=retrieved}":         1,
			"callpark_calls_ended_total{outcome=recalled}":          1,
			"callpark_calls_ended_total{outcome=forwarded}":         1,
			"callpark_calls_ended_total{outcome=abandoned}":         1,
			"callpark_calls_ended_total{outcome=dropped}":           0,
			"callpark_calls_ended_total{outcome=lost}":              0,
			"callpark_time_to_retrieve_seconds_count":               1,
			"callpark_time_to_retrieve_seconds_sum":                 5,
			"callpark_park_duration_seconds{outcome=retrieved}_sum": 5,
			"callpark_park_duration_seconds{outcome=abandoned}_sum": 7,
			"callpark_park_duration_seconds{outcome=recalled}_sum":  23,
			"callpark_park_duration_seconds{outcome=forwarded}_sum": 28,
			"callpark_takeovers_total{direction=in}":                0,
		}
		for k, w := range want {
			require.Equal(t, w, v[k], k)
		}
		require.Equal(t, park.Forwarded, third.Outcome())
		lint(t, reg)
	})
}

// remote is a cluster whose other node parks one call in 705.
type remote struct{ follow chan park.Observer }

func (r remote) Observe(park.Event) {}
func (r remote) Follow(o park.Observer) func() {
	r.follow <- o
	return func() {}
}
func (r remote) Calls() []park.CallInfo {
	return []park.CallInfo{{Orbit: "705", State: park.Parked, Node: "b"}}
}
func (r remote) Lookup(orbit.Orbit) (park.CallInfo, bool) { return park.CallInfo{}, false }
func (r remote) Locate(context.Context, orbit.Orbit) (string, string, error) {
	return "", "", park.ErrNotParked
}
func (r remote) TakeOver(func(context.Context, park.CallInfo) error) func() { return func() {} }
func (r remote) HandOver(context.Context, []park.CallInfo) (map[string]string, error) {
	return nil, nil
}

func TestOtherNodesCallsAreTheirs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cl := remote{follow: make(chan park.Observer, 4)}
		lot, err := park.NewLot(park.Config{Cluster: cl})
		require.NoError(t, err)
		defer lot.Shutdown(t.Context())
		c := parkmetrics.New(lot)
		defer c.Close()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		o := <-cl.follow
		info := park.CallInfo{Orbit: "705", State: park.Parked, Node: "b", Since: time.Now()}
		o.Observe(park.Event{Kind: park.EventParked, Call: info, Time: time.Now()})
		info.State, info.Outcome = park.Ended, park.Retrieved
		o.Observe(park.Event{Kind: park.EventEnded, Call: info, Outcome: park.Retrieved, Time: time.Now()})
		_, err = lot.Park(t.Context(), park.ParkRequest{Leg: leg{}})
		require.NoError(t, err)
		synctest.Wait()
		v := metricstest.Values(t, reg)
		require.Equal(t, 1.0, v["callpark_parks_total"], "node b counts its own park")
		require.Equal(t, 0.0, v["callpark_calls_ended_total{outcome=retrieved}"])
		require.Equal(t, 1.0, v["callpark_calls_parked"], "node b's call is on node b's gauge")
	})
}
