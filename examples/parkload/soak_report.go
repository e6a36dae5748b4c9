package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// counts is a tally by key, safe for the workers to share.
type counts struct {
	mu sync.Mutex
	by map[string]uint64
	n  uint64
}

func (c *counts) add(key string) {
	c.mu.Lock()
	if c.by == nil {
		c.by = make(map[string]uint64)
	}
	c.by[key]++
	c.n++
	c.mu.Unlock()
}

func (c *counts) total() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *counts) snapshot() (uint64, map[string]uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	by := make(map[string]uint64, len(c.by))
	maps.Copy(by, c.by)
	return c.n, by
}

// soakReport is the soak mode's part of the report.
type soakReport struct {
	Mix           string  `json:"mix"`
	PickupTimeout float64 `json:"pickup_timeout_s"`
	RecallRing    float64 `json:"recall_ring_s"`
	Attempts      int     `json:"attempts"`

	// Started calls; each ended either with an outcome or failed (an
	// anomaly ended it). Unaccounted is Started − outcomes − Failed, and
	// must be 0.
	Started     uint64            `json:"started"`
	Outcomes    map[string]uint64 `json:"outcomes"`
	Failed      uint64            `json:"failed"`
	Unaccounted int64             `json:"unaccounted"`
	// Anomalies counts every one seen, by "step what": those that ended a
	// call (Failed) and those that did not (a recall after its call ended,
	// a recall nobody cancelled).
	Anomalies map[string]uint64 `json:"anomalies"`
	// Dialogs the tool still held after the load: 0 when every call ended.
	OpenDialogs int64 `json:"open_dialogs"`

	Refer       *latency `json:"refer,omitempty"`        // REFER → final NOTIFY
	RecallDelay *latency `json:"recall_delay,omitempty"` // park → first recall INVITE

	Samples []soakSample `json:"samples"`
	Verdict soakVerdict  `json:"verdict"`
}

// soakSample is the server at one moment of the soak.
type soakSample struct {
	Label      string  `json:"label"`
	ElapsedS   float64 `json:"elapsed_s"`
	InFlight   int64   `json:"in_flight"` // the tool's calls under way
	RSS        uint64  `json:"rss_bytes,omitempty"`
	HeapInuse  uint64  `json:"heap_inuse_bytes,omitempty"`
	HeapAlloc  uint64  `json:"heap_alloc_bytes,omitempty"`
	Goroutines int     `json:"goroutines,omitempty"`
	Err        string  `json:"error,omitempty"`

	cpu time.Duration // the server's CPU time so far, with -server-pid
}

// soakVerdict says whether the server stayed flat: its heap in use in the
// last periodic sample within HeapLimitPct of the first (both under the
// same load, the first after a warm-up), and its goroutines back to the
// start count (within goroutineSlack) in the idle sample, -settle after
// the load.
type soakVerdict struct {
	HeapRef        string   `json:"heap_ref,omitempty"` // the first periodic sample
	HeapEnd        string   `json:"heap_end,omitempty"` // the last, compared with it
	HeapGrowthPct  *float64 `json:"heap_growth_pct,omitempty"`
	HeapLimitPct   float64  `json:"heap_limit_pct"`
	HeapFlat       *bool    `json:"heap_flat,omitempty"` // nil: no periodic sample to compare with
	GoroutinesIdle int      `json:"goroutines_start,omitempty"`
	GoroutinesEnd  int      `json:"goroutines_end,omitempty"`
	GoroutinesBack *bool    `json:"goroutines_back,omitempty"` // nil: not sampled
	// How long after the load the count was first back (nil: never).
	GoroutinesBackAfterS *float64 `json:"goroutines_back_after_s,omitempty"`
	Flat                 bool     `json:"flat"`
}

const (
	heapLimitPct = 25
	// goroutineSlack allows for the probe's own HTTP connection to the
	// server's pprof listener, which may have been opened or closed
	// between the samples.
	goroutineSlack = 2
)

// sampleLabel names a periodic sample by when it was taken: "1m", "90s".
func sampleLabel(d time.Duration) string {
	d = d.Round(time.Second)
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

// sample reads the server's RSS (with -server-pid), heap and goroutines
// (with -server-debug).
func (r *soakRun) sample(label string) soakSample {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := soakSample{Label: label, ElapsedS: time.Since(r.start).Seconds(), InFlight: r.inFlight.Load()}
	ss := r.probe.sample(ctx, label, 0)
	s.RSS, s.HeapInuse, s.HeapAlloc, s.Err, s.cpu = ss.RSS, ss.HeapInuse, ss.HeapAlloc, ss.Err, ss.CPU
	if r.probe.base != "" {
		n, err := r.probe.goroutines(ctx)
		if err != nil {
			s.Err = strings.TrimPrefix(s.Err+"; "+err.Error(), "; ")
		}
		s.Goroutines = n
	}
	return s
}

func (s soakSample) String() string {
	parts := []string{fmt.Sprintf("%-9s %7.1f s  %5d in flight", s.Label, s.ElapsedS, s.InFlight)}
	if s.RSS > 0 {
		parts = append(parts, "rss "+mb(s.RSS))
	}
	if s.HeapInuse > 0 {
		parts = append(parts, "heap in use "+mb(s.HeapInuse))
	}
	if s.Goroutines > 0 {
		parts = append(parts, fmt.Sprintf("%d goroutines", s.Goroutines))
	}
	if s.Err != "" {
		parts = append(parts, "("+s.Err+")")
	}
	return strings.Join(parts, ", ")
}

// soakReport sums the run up and gives the verdict.
func (r *soakRun) soakReport(samples []soakSample, backAfter time.Duration) *soakReport {
	cfg := r.cfg
	sr := &soakReport{
		Mix: cfg.mix.String(), PickupTimeout: cfg.pickupTimeout.Seconds(), RecallRing: cfg.recallRing.Seconds(), Attempts: cfg.attempts,
		Started: r.started.Load(), Failed: r.failed.Load(), OpenDialogs: r.dialogs.Load(),
		Samples: samples,
	}
	var outcomes uint64
	outcomes, sr.Outcomes = r.outcomes.snapshot()
	_, sr.Anomalies = r.anomalies.snapshot()
	sr.Unaccounted = int64(sr.Started) - int64(outcomes) - int64(sr.Failed)
	if h := r.refer.Snapshot(); h.Count() > 0 {
		l := latencyOf(h)
		sr.Refer = &l
	}
	if h := r.recallDelay.Snapshot(); h.Count() > 0 {
		l := latencyOf(h)
		sr.RecallDelay = &l
	}

	v := &sr.Verdict
	v.HeapLimitPct = heapLimitPct
	if backAfter >= 0 {
		s := backAfter.Seconds()
		v.GoroutinesBackAfterS = &s
	}
	v.Flat = true
	n := len(samples)
	start, idle := samples[0], samples[n-1]
	// The periodic samples, between "start" and "load end", are taken
	// under the same load: the last against the first, the warm-up done.
	if periodic := samples[1 : n-2]; len(periodic) >= 2 {
		ref, end := periodic[0], periodic[len(periodic)-1]
		if ref.HeapInuse > 0 && end.HeapInuse > 0 {
			g := 100 * (float64(end.HeapInuse) - float64(ref.HeapInuse)) / float64(ref.HeapInuse)
			flat := g <= heapLimitPct
			v.HeapRef, v.HeapEnd, v.HeapGrowthPct, v.HeapFlat = ref.Label, end.Label, &g, &flat
			v.Flat = v.Flat && flat
		}
	}
	if start.Goroutines > 0 && idle.Goroutines > 0 {
		back := idle.Goroutines <= start.Goroutines+goroutineSlack
		v.GoroutinesIdle, v.GoroutinesEnd, v.GoroutinesBack = start.Goroutines, idle.Goroutines, &back
		v.Flat = v.Flat && back
	}
	return sr
}

// writeText prints the soak's own lines.
func (sr *soakReport) writeText(p func(label, format string, args ...any)) {
	p("mix", "%s; server timeout %.0f s, recall ring %.0f s, %d attempt(s)", sr.Mix, sr.PickupTimeout, sr.RecallRing, sr.Attempts)
	var outcomes uint64
	for _, n := range sr.Outcomes {
		outcomes += n
	}
	p("calls", "%d started = %d with an outcome + %d failed; %d unaccounted; %d dialogs left open", sr.Started, outcomes, sr.Failed, sr.Unaccounted, sr.OpenDialogs)
	for _, k := range sortedByCount(sr.Outcomes) {
		p("  outcome", "%7d  %s", sr.Outcomes[k], k)
	}
	if len(sr.Anomalies) == 0 {
		p("anomalies", "none")
	}
	for _, k := range sortedByCount(sr.Anomalies) {
		p("  anomaly", "%7d  %s", sr.Anomalies[k], k)
	}
	if sr.Refer != nil {
		p("refer", "%s  (REFER → final NOTIFY)", *sr.Refer)
	}
	if sr.RecallDelay != nil {
		p("recall", "%s  (park → first recall INVITE)", *sr.RecallDelay)
	}
	for _, s := range sr.Samples {
		p("server", "%s", s)
	}
	v := sr.Verdict
	var parts []string
	if v.HeapFlat != nil {
		parts = append(parts, fmt.Sprintf("heap in use at %s %+.1f %% of %s (limit +%.0f %%): %s", v.HeapEnd, *v.HeapGrowthPct, v.HeapRef, v.HeapLimitPct, yesNo(*v.HeapFlat, "flat", "GROWING")))
	} else {
		parts = append(parts, "heap not judged (fewer than two periodic samples)")
	}
	if v.GoroutinesBack != nil {
		when := "never back while settling"
		if v.GoroutinesBackAfterS != nil {
			when = fmt.Sprintf("back %.1f s after the load", *v.GoroutinesBackAfterS)
		}
		parts = append(parts, fmt.Sprintf("goroutines %d at the start, %d idle (%s): %s", v.GoroutinesIdle, v.GoroutinesEnd, when, yesNo(*v.GoroutinesBack, "back", "NOT BACK")))
	}
	p("verdict", "%s; %s", yesNo(v.Flat, "FLAT", "NOT FLAT"), strings.Join(parts, "; "))
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func sortedByCount(m map[string]uint64) []string {
	return slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
}

// goroutines reads the server's goroutine count: the first line of
// /debug/pprof/goroutine?debug=1, "goroutine profile: total N".
func (p *serverProbe) goroutines(ctx context.Context) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	res, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("server goroutines: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("server goroutines: %s", res.Status)
	}
	n, err := parseGoroutineCount(res.Body)
	_, _ = io.Copy(io.Discard, res.Body) // the connection is reused
	return n, err
}

func parseGoroutineCount(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("server goroutines: %w", err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	n, perr := strconv.Atoi(rest)
	if !ok || perr != nil {
		return 0, fmt.Errorf("server goroutines: first line %q", line)
	}
	return n, nil
}
