package redislot

import "github.com/prometheus/client_golang/prometheus"

// ErrorsCounter is callpark_redis_errors_total for one part of callpark
// (orbits: redisorbit; events: redispark), read from count at each scrape.
// Both parts' counters share this one name and help, as a registry that
// holds both requires.
func ErrorsCounter(part string, count func() uint64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "callpark_redis_errors_total",
		Help:        "Requests to the cluster's Redis that failed, by the part of callpark that made them (orbits: claims, releases, lease renewals; events: sharing and following parked calls, takeovers).",
		ConstLabels: prometheus.Labels{"part": part},
	}, func() float64 { return float64(count()) })
}
