package redisorbit

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/metricstest"
	"github.com/callpark/callpark/orbit"
)

// metric reads one series of the allocator's Collector.
func metric(t *testing.T, a *Allocator, series string) float64 {
	t.Helper()
	v, ok := metricstest.Of(t, a.Collector())[series]
	require.True(t, ok, "no %s", series)
	return v
}

func TestCollectorCountsRenewalsAndErrors(t *testing.T) {
	l := newLot(t)
	a := l.node("a", Config{Lease: 3 * time.Second})
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.Collector())
	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)

	require.Eventually(t, func() bool { return metric(t, a, "callpark_lease_renewals_total{result=ok}") >= 1 },
		5*time.Second, 50*time.Millisecond, "the lease is renewed every second")
	require.Zero(t, metric(t, a, "callpark_redis_errors_total{part=orbits}"))

	l.m.Close()
	_, err = a.Allocate(ctx(t))
	require.ErrorIs(t, err, orbit.ErrUnavailable)
	require.GreaterOrEqual(t, metric(t, a, "callpark_redis_errors_total{part=orbits}"), 1.0)
	require.Eventually(t, func() bool { return metric(t, a, "callpark_lease_renewals_total{result=failed}") >= 1 },
		5*time.Second, 50*time.Millisecond)
}
