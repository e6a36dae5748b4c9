package sipadapter_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/metricstest"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// TestMetricsOfParkRetrieveRefusal scripts a park, a BLF watcher, a
// refused retrieve and a retrieve, and reads the server's metrics.
func TestMetricsOfParkRetrieveRefusal(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Announcements: sipadapter.Announcements{Parker: true}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.Metrics())
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)
	sub, err := bob.Subscribe(ctx, srv.OrbitURI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 10))

	v := metricstest.Values(t, reg)
	require.Equal(t, 1.0, v["callpark_parks_total"])
	require.Equal(t, 1.0, v["callpark_calls_parked"])
	require.Equal(t, 1.0, v["callpark_blf_watchers"])
	require.Equal(t, 1.0, v["callpark_sip_setup_seconds{kind=park}_count"])
	require.GreaterOrEqual(t, v["callpark_rtp_packets_sent_total"], 10.0)

	_, err = bob.Call(ctx, srv.OrbitURI("702"), parktest.CallOptions{})
	require.Error(t, err, "nothing parked in 702")
	talk, err := bob.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, talk.Hangup(ctx))
	require.NoError(t, sub.Unsubscribe(ctx))
	waitUntil(t, 5*time.Second, "the watcher is gone", func() bool { return metricstest.Values(t, reg)["callpark_blf_watchers"] == 0 })

	v = metricstest.Values(t, reg)
	require.Equal(t, 1.0, v["callpark_sip_refusals_total{reason=Not Found,status=404}"], "%v", v)
	require.Equal(t, 1.0, v["callpark_calls_ended_total{outcome=retrieved}"])
	require.Equal(t, 1.0, v["callpark_time_to_retrieve_seconds_count"])
	require.Equal(t, 1.0, v["callpark_sip_setup_seconds{kind=retrieve}_count"])
	require.Equal(t, 0.0, v["callpark_calls_parked"])
	waitUntil(t, 10*time.Second, "the parker heard its orbit", func() bool {
		return metricstest.Values(t, reg)["callpark_tellings_total{kind=announced,result=ok}"] == 1
	})
}
