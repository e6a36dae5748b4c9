package sipadapter

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/parkmetrics"
)

// Metrics is what an Engine and its lot did, as a prometheus.Collector:
// the lot's metrics (park/parkmetrics) and the SIP and RTP side, the
// refusals by status and reason, how long a park or retrieve took to
// answer, the hold music's packets, the BLF watchers, and the
// announcements, pages and messages. Register it in a registry of your own
// (Server.Metrics, Engine.Metrics); the names are in docs/OPERATOR.md.
type Metrics struct {
	lot      *parkmetrics.Collector
	refusals *prometheus.CounterVec
	setup    *prometheus.HistogramVec
	// setupOf are setup's two series, looked up once: a park and a
	// retrieve each observe one.
	setupOf  map[string]prometheus.Observer
	tellings *prometheus.CounterVec
	// toldOf are tellings' series by kind, ok and failed, looked up once.
	toldOf map[TellingKind][2]prometheus.Counter
	engine atomic.Pointer[Engine] // read at each scrape

	rtpSent, rtpLate, rtpErrors, watchers *prometheus.Desc
}

var _ prometheus.Collector = (*Metrics)(nil)

// NewMetrics returns the metrics of lot, counting from now, and of the
// engine it is then given to (EngineConfig.Metrics).
func NewMetrics(lot *park.Lot) *Metrics {
	const ns = parkmetrics.Namespace
	m := &Metrics{
		lot: parkmetrics.New(lot),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "sip_refusals_total",
			Help: "SIP requests refused with a final status of 400 or more, by status code and reason phrase.",
		}, []string{"status", "reason"}),
		setup: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Name: "sip_setup_seconds",
			Help:    "Time from a park's or retrieve's INVITE to its 200 OK, by kind (park, retrieve).",
			Buckets: []float64{.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
		}, []string{"kind"}),
		tellings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "tellings_total",
			Help: "Orbits told: spoken on a leg (announced), paged (paged), sent as a MESSAGE (messaged), by whether they got through (ok, failed).",
		}, []string{"kind", "result"}),
		rtpSent: prometheus.NewDesc(ns+"_rtp_packets_sent_total",
			"RTP packets of hold music and announcements sent.", nil, nil),
		rtpLate: prometheus.NewDesc(ns+"_rtp_packets_late_total",
			"RTP packets of hold music and announcements sent more than 5 ms after their time, or skipped for being 100 ms late.", nil, nil),
		rtpErrors: prometheus.NewDesc(ns+"_rtp_write_errors_total",
			"RTP packets whose send failed (an ICMP port unreachable, a full socket buffer).", nil, nil),
		watchers: prometheus.NewDesc(ns+"_blf_watchers",
			"BLF subscriptions (SUBSCRIBE to an orbit's dialog state) being served.", nil, nil),
	}
	m.setupOf = map[string]prometheus.Observer{}
	for _, k := range []string{"park", "retrieve"} {
		m.setupOf[k] = m.setup.WithLabelValues(k)
	}
	m.toldOf = map[TellingKind][2]prometheus.Counter{}
	for _, k := range []TellingKind{Announced, Paged, Messaged} {
		m.toldOf[k] = [2]prometheus.Counter{m.tellings.WithLabelValues(k.String(), "ok"), m.tellings.WithLabelValues(k.String(), "failed")}
	}
	return m
}

// refused counts a refusal the engine sent.
func (m *Metrics) refused(code int, reason string) {
	if code >= 400 {
		m.refusals.WithLabelValues(strconv.Itoa(code), reason).Inc()
	}
}

// answered records how long an INVITE of kind (park, retrieve) waited for
// its 200 OK, from when it arrived.
func (m *Metrics) answered(kind string, arrived time.Time) {
	if !arrived.IsZero() {
		m.setupOf[kind].Observe(time.Since(arrived).Seconds())
	}
}

// told counts an announcement, page or message.
func (m *Metrics) told(t Telling) {
	series, ok := m.toldOf[t.Kind]
	if !ok {
		return
	}
	if t.Err != nil {
		series[1].Inc()
	} else {
		series[0].Inc()
	}
}

// Describe sends the descriptors of every metric.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.lot.Describe(ch)
	m.refusals.Describe(ch)
	m.setup.Describe(ch)
	m.tellings.Describe(ch)
	ch <- m.rtpSent
	ch <- m.rtpLate
	ch <- m.rtpErrors
	ch <- m.watchers
}

// Collect sends the metrics' values; those of RTP and BLF are read from
// the engine now (zero before it runs).
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.lot.Collect(ch)
	m.refusals.Collect(ch)
	m.setup.Collect(ch)
	m.tellings.Collect(ch)
	var sent, late, errs uint64
	var watchers int
	if e := m.engine.Load(); e != nil {
		st := e.RTPStats()
		sent, errs = st.Packets, st.WriteErrors
		late = st.Lateness.Within20ms + st.Lateness.Later + st.Skipped
		watchers = e.Subscriptions()
	}
	ch <- prometheus.MustNewConstMetric(m.rtpSent, prometheus.CounterValue, float64(sent))
	ch <- prometheus.MustNewConstMetric(m.rtpLate, prometheus.CounterValue, float64(late))
	ch <- prometheus.MustNewConstMetric(m.rtpErrors, prometheus.CounterValue, float64(errs))
	ch <- prometheus.MustNewConstMetric(m.watchers, prometheus.GaugeValue, float64(watchers))
}
