package redispark

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpark/callpark/internal/redislot"
)

// Collector returns the directory's metrics for Prometheus: its failed
// requests to Redis (sharing events, following the other nodes, takeover
// claims), as callpark_redis_errors_total{part="events"}. Register it
// beside the allocator's (redisorbit.Allocator.Collector).
func (d *Directory) Collector() prometheus.Collector {
	return redislot.ErrorsCounter("events", d.redisErrors.Load)
}
