package redispark

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/park"
)

// Redis gone while a node parks: the writes of its events fail, and the
// directory counts them.
func TestCollectorCountsRedisErrors(t *testing.T) {
	m := miniredis.RunT(t)
	a := startNode(t, m.Addr(), "a", 3*time.Second)
	_, err := a.lot.Park(context.Background(), park.ParkRequest{Leg: &leg{}})
	require.NoError(t, err)
	require.Zero(t, testutil.ToFloat64(a.dir.Collector()))
	m.Close()
	call, err := a.lot.Park(context.Background(), park.ParkRequest{Leg: &leg{}})
	if err == nil { // an orbit held ahead: the park works, sharing it fails
		call.Abandon()
	}
	eventually(t, "a failed request to Redis is counted", func() bool { return testutil.ToFloat64(a.dir.Collector()) >= 1 })
}
