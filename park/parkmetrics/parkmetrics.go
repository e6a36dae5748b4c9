// Package parkmetrics counts what a lot does, for Prometheus: calls parked
// and ringing now, parks, how calls ended, recalls and fallbacks rung,
// takeovers, and how long calls waited.
//
// It exists so that the operator of any host of a park.Lot (the park
// server, a PBX embedding the lot) gets Lync's performance counters, with
// the same names everywhere. The Collector is registered by the host in a
// registry of its own (prometheus.NewRegistry); nothing here touches the
// global registry. sipadapter's Metrics adds the SIP and RTP side and
// includes this Collector; a host with its own SIP stack registers this one.
//
// Each node counts its own calls: in a cluster the other nodes' events,
// which every lot also sees, are not counted, so sums over the nodes are
// right. The metric names are listed in docs/OPERATOR.md.
package parkmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpark/callpark/park"
)

// Namespace prefixes every metric of callpark.
const Namespace = "callpark"

// waitBuckets are the histogram buckets of a parked call's time, in
// seconds: from a quick retrieve up past Lync's longest pickup timeout
// (10 min) with its recalls.
var waitBuckets = []float64{1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200}

// Collector is a prometheus.Collector of one lot's metrics. Create it with
// New; it counts from then on. Close stops it counting.
type Collector struct {
	lot  *park.Lot
	stop func()

	parks      prometheus.Counter
	ended      *prometheus.CounterVec
	rings      *prometheus.CounterVec
	ringFailed *prometheus.CounterVec
	moved      *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	retrieve   prometheus.Histogram

	parked, ringing *prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// New returns a Collector of lot's metrics, counting from now.
func New(lot *park.Lot) *Collector {
	c := &Collector{
		lot: lot,
		parks: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "parks_total",
			Help: "Calls parked in an orbit of this node.",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "calls_ended_total",
			Help: "Parked calls of this node that left the lot, by outcome: retrieved, recalled (the parker answered), forwarded (the fallback answered), abandoned (the party hung up), dropped, lost.",
		}, []string{"outcome"}),
		rings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rings_total",
			Help: "Recalls to the parker and calls to the fallback started, by purpose.",
		}, []string{"purpose"}),
		ringFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rings_failed_total",
			Help: "Recalls and fallback calls that ended unanswered or refused, by purpose.",
		}, []string{"purpose"}),
		moved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "takeovers_total",
			Help: "Parked calls that moved between nodes: taken over by this node (in) or continued by another one (out).",
		}, []string{"direction"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "park_duration_seconds",
			Help:    "How long calls stayed in the lot, from park to their outcome, by outcome.",
			Buckets: waitBuckets,
		}, []string{"outcome"}),
		retrieve: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "time_to_retrieve_seconds",
			Help:    "How long retrieved calls waited in their orbit.",
			Buckets: waitBuckets,
		}),
		parked: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "calls_parked"),
			"Calls this node holds waiting in an orbit.", nil, nil),
		ringing: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "calls_ringing"),
			"Calls this node holds whose parker (or fallback) is being rung.", nil, nil),
	}
	for _, o := range []park.Outcome{park.Retrieved, park.Recalled, park.Forwarded, park.Abandoned, park.Dropped, park.Lost} {
		c.ended.WithLabelValues(o.String())
		c.duration.WithLabelValues(o.String())
	}
	for _, p := range []park.DialPurpose{park.Recall, park.Fallback} {
		c.rings.WithLabelValues(p.String())
		c.ringFailed.WithLabelValues(p.String())
	}
	c.moved.WithLabelValues("in")
	c.moved.WithLabelValues("out")
	c.stop = lot.Observe(park.ObserverFunc(c.observe))
	return c
}

// Close stops counting the lot's events.
func (c *Collector) Close() { c.stop() }

func (c *Collector) observe(e park.Event) {
	if e.Call.Node != "" && e.Call.State != park.Moved {
		return // another node's: it counts it
	}
	switch e.Kind {
	case park.EventParked:
		c.parks.Inc()
	case park.EventRinging:
		c.rings.WithLabelValues(e.Purpose.String()).Inc()
	case park.EventRingFailed:
		c.ringFailed.WithLabelValues(e.Purpose.String()).Inc()
	case park.EventMoved:
		if e.Call.State == park.Moved {
			c.moved.WithLabelValues("out").Inc()
		} else {
			c.moved.WithLabelValues("in").Inc()
		}
	case park.EventEnded:
		if e.Outcome == park.NoOutcome {
			return
		}
		waited := e.Time.Sub(e.Call.Since).Seconds()
		c.ended.WithLabelValues(e.Outcome.String()).Inc()
		c.duration.WithLabelValues(e.Outcome.String()).Observe(waited)
		if e.Outcome == park.Retrieved {
			c.retrieve.Observe(waited)
		}
	}
}

// Describe sends the descriptors of every metric.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.parks.Describe(ch)
	c.ended.Describe(ch)
	c.rings.Describe(ch)
	c.ringFailed.Describe(ch)
	c.moved.Describe(ch)
	c.duration.Describe(ch)
	c.retrieve.Describe(ch)
	ch <- c.parked
	ch <- c.ringing
}

// Collect sends the metrics' values; the gauges are read from the lot now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.parks.Collect(ch)
	c.ended.Collect(ch)
	c.rings.Collect(ch)
	c.ringFailed.Collect(ch)
	c.moved.Collect(ch)
	c.duration.Collect(ch)
	c.retrieve.Collect(ch)
	var parked, ringing int
	for _, call := range c.lot.Calls() {
		if call.Node != "" {
			continue
		}
		switch call.State {
		case park.Parked:
			parked++
		case park.Recalling, park.Forwarding:
			ringing++
		}
	}
	ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(parked))
	ch <- prometheus.MustNewConstMetric(c.ringing, prometheus.GaugeValue, float64(ringing))
}
