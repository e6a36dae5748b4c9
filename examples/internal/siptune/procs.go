package siptune

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"
)

// A park server under load spends more CPU waking its scheduler than on
// the SIP messages themselves: each datagram, each of sipgo's goroutines
// per message and each timer wakes an idle P, and with two Ps one of them
// is idle most of the time, so most wake-ups find it asleep. With one P the
// goroutines queue on it instead. Measured with examples/parkload at 1,000
// park → retrieve cycles a second on a two-core box (BENCHMARKS.md, issue
// 16, goal 2): 551–561 µs of server CPU a cycle with one P, 608–734 µs with
// two; with both the server and the tool scaled by ScaleProcs, 376–452 µs
// and p99 setup 8.9–14.7 ms in six runs. Unpaced, one P ran 1,970 cycles a
// second at 430 µs each (85 % of its core), two Ps 2,000 at 511 µs. But
// one P is one core: a program that needs more must get more. So the
// programs start with one P and add one when the Ps they have are busy.
const (
	// procSample is how often the process's CPU time is read.
	procSample = 250 * time.Millisecond

	// procGrow: with n Ps, procGrowFor at over procGrow × n cores of CPU
	// on average adds one. Two seconds, not one: a collection, or the
	// start of a load, can fill one P for a second without more work to
	// come.
	procGrow    = 0.9
	procGrowFor = 8 // samples: two seconds

	// procShrink: with n Ps, procShrinkFor at under procShrink × (n − 1)
	// cores on average drops one. Fewer Ps cost less per cycle (about a
	// fifth less from two to one, above), so the load after the drop is
	// about 0.7 × (n − 1) cores or less, under procGrow.
	procShrink    = 0.85
	procShrinkFor = 40 // samples: ten seconds
)

// ScaleProcs sets GOMAXPROCS by the program's load until the returned stop
// is called: one P to begin with, one more whenever the Ps it has were
// busy for two seconds (over 90 % of a core each on average), one less
// after ten seconds at under 85 % of the cores one less would give (see
// procGrow and procShrink for why). stop waits for it to end and gives
// the runtime its default back. Call it before building what sizes itself
// by GOMAXPROCS (the music scheduler's shards: one per P at its start).
//
// It does nothing, and stop neither, where GOMAXPROCS is set in the
// environment (the user chose), where the default is one P already, or
// where the process's CPU time cannot be read (not a Unix system). A line
// at info level tells each change to log.
func ScaleProcs(log *slog.Logger) (stop func()) {
	most := runtime.GOMAXPROCS(0)
	if os.Getenv("GOMAXPROCS") != "" || most < 2 || !haveProcessCPU {
		return func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &procScaler{most: most, cpu: processCPU, set: func(n int) { runtime.GOMAXPROCS(n) }, log: log}
	stopLoop := s.loop(procSample)
	return func() {
		stopLoop()
		runtime.SetDefaultGOMAXPROCS()
	}
}

// procScaler is ScaleProcs' loop; cpu and set are the process's CPU time
// so far and runtime.GOMAXPROCS, which tests replace.
type procScaler struct {
	most int // Ps at most: the runtime's default
	cpu  func() (time.Duration, error)
	set  func(int)
	log  *slog.Logger

	n       int         // Ps set
	samples []cpuSample // since the last change, oldest first, procShrinkFor+1 at most
}

// cpuSample is the process's CPU time so far, read at a moment.
type cpuSample struct {
	at   time.Time
	used time.Duration
}

// loop sets one P at once, so that what the caller builds next sees it,
// then samples every interval on a goroutine of its own until stop,
// which waits for it.
func (s *procScaler) loop(every time.Duration) (stop func()) {
	s.n = 1
	s.set(1)
	s.sample(time.Now())
	tick := time.NewTicker(every)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				s.sample(now)
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// sample takes the CPU time at now and decides on the P count.
func (s *procScaler) sample(now time.Time) {
	used, err := s.cpu()
	if err != nil {
		return // never seen on Linux; the P count stays as it is
	}
	s.samples = append(s.samples, cpuSample{at: now, used: used})
	if len(s.samples) > procShrinkFor+1 {
		s.samples = s.samples[1:]
	}
	if busy, ok := s.cores(procGrowFor); ok && s.n < s.most && busy > procGrow*float64(s.n) {
		s.change(s.n+1, busy)
	} else if calm, ok := s.cores(procShrinkFor); ok && s.n > 1 && calm < procShrink*float64(s.n-1) {
		s.change(s.n-1, calm)
	}
}

// cores is the CPU the process used over the last k sample intervals, in
// cores; not ok while fewer have been taken since the start or the last
// change.
func (s *procScaler) cores(k int) (cores float64, ok bool) {
	last := len(s.samples) - 1
	if last < k {
		return 0, false
	}
	to, from := s.samples[last], s.samples[last-k]
	return float64(to.used-from.used) / float64(to.at.Sub(from.at)), true
}

// change sets n Ps and starts the history again from the last sample: the
// load measured with the old count says little about the new one.
func (s *procScaler) change(n int, cores float64) {
	s.log.Info("GOMAXPROCS changed by load", "from", s.n, "to", n, "cores_used", float64(int(cores*100))/100)
	s.n = n
	s.set(n)
	s.samples = append(s.samples[:0], s.samples[len(s.samples)-1])
}
