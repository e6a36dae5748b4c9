package redisorbit

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpark/callpark/internal/redislot"
)

// Collector returns the allocator's metrics for Prometheus: lease
// renewals by result (callpark_lease_renewals_total{result="ok|failed"})
// and its failed requests to Redis (callpark_redis_errors_total{part="orbits"}).
func (a *Allocator) Collector() prometheus.Collector {
	renewals := func(result string, count func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "callpark_lease_renewals_total",
			Help:        "Renewals of this node's lease in the cluster, by result; a node whose renewals fail for a whole lease loses its orbits.",
			ConstLabels: prometheus.Labels{"result": result},
		}, func() float64 { return float64(count()) })
	}
	return collectors{
		renewals("ok", a.renewed.Load),
		renewals("failed", a.renewFailed.Load),
		redislot.ErrorsCounter("orbits", a.redisErrors.Load),
	}
}

// collectors is several collectors as one.
type collectors []prometheus.Collector

func (cs collectors) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectors) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}
