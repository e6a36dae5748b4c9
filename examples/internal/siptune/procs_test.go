package siptune

import (
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// loadedProcess is a process whose CPU use, in cores, the test sets: its
// CPU time so far grows by that between two looks.
type loadedProcess struct {
	mu    sync.Mutex
	cores float64
	used  time.Duration
	last  time.Time
	fail  bool
	procs []int // every P count set, in order
}

func (p *loadedProcess) setLoad(cores float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advance()
	p.cores = cores
}

func (p *loadedProcess) advance() {
	now := time.Now()
	if !p.last.IsZero() {
		p.used += time.Duration(p.cores * float64(now.Sub(p.last)))
	}
	p.last = now
}

func (p *loadedProcess) cpu() (time.Duration, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advance()
	if p.fail {
		return 0, errors.New("no rusage")
	}
	return p.used, nil
}

func (p *loadedProcess) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.procs = append(p.procs, n)
}

func (p *loadedProcess) setsSoFar() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.procs...)
}

// scaling runs a procScaler of at most most Ps on p in the bubble until
// the returned stop.
func scaling(p *loadedProcess, most int) (stop func()) {
	s := &procScaler{most: most, cpu: p.cpu, set: p.set, log: slog.New(slog.DiscardHandler)}
	return s.loop(procSample)
}

// grownToTwo starts a scaler of two Ps at most on p, busy enough for
// the second, and waits until it has added it.
func grownToTwo(t *testing.T, p *loadedProcess) (stop func()) {
	t.Helper()
	p.setLoad(1.5)
	stop = scaling(p, 2)
	after(2100 * time.Millisecond)
	require.Equal(t, []int{1, 2}, p.setsSoFar())
	return stop
}

// after lets d pass in the bubble with the scaler sampling as it goes.
func after(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func TestScaleProcsStartsWithOnePAndKeepsItUnderALightLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{}
		p.setLoad(0.55) // the park server at 1,000 cycles a second with one P
		stop := scaling(p, 2)
		defer stop()
		after(time.Minute)
		require.Equal(t, []int{1}, p.setsSoFar())
	})
}

func TestScaleProcsAddsAPAfterTwoBusySeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{}
		stop := scaling(p, 2)
		defer stop()
		after(5 * time.Second)
		// A collection, or a start, fills the P for a second: no change.
		p.setLoad(1)
		after(time.Second)
		p.setLoad(0.55)
		after(10 * time.Second)
		require.Equal(t, []int{1}, p.setsSoFar(), "one busy second")
		p.setLoad(0.95) // one P saturated
		after(procSample * (procGrowFor - 1))
		require.Equal(t, []int{1}, p.setsSoFar(), "under two busy seconds")
		after(2 * procSample)
		require.Equal(t, []int{1, 2}, p.setsSoFar(), "two busy seconds")
		// Busier still: no more than the machine's two.
		p.setLoad(1.9)
		after(time.Minute)
		require.Equal(t, []int{1, 2}, p.setsSoFar())
	})
}

func TestScaleProcsGrowsOneAtATimeUpToItsMost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{}
		stop := scaling(p, 4)
		defer stop()
		p.setLoad(3.9)
		// Each step needs two seconds measured with the count it set.
		after(2100 * time.Millisecond)
		require.Equal(t, []int{1, 2}, p.setsSoFar())
		after(2 * time.Second)
		require.Equal(t, []int{1, 2, 3}, p.setsSoFar())
		after(2 * time.Second)
		require.Equal(t, []int{1, 2, 3, 4}, p.setsSoFar())
		after(time.Minute)
		require.Equal(t, []int{1, 2, 3, 4}, p.setsSoFar())
	})
}

func TestScaleProcsDropsAPAfterTenCalmSeconds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{}
		defer grownToTwo(t, p)()

		// Two Ps at 0.65 of a core, as at 1,000 cycles a second: within
		// ten seconds of the change, nothing; then back to one.
		p.setLoad(0.65)
		after(procSample * (procShrinkFor - 1))
		require.Equal(t, []int{1, 2}, p.setsSoFar(), "under ten seconds since the change")
		after(2 * procSample)
		require.Equal(t, []int{1, 2, 1}, p.setsSoFar())
	})
}

func TestScaleProcsKeepsTwoPsWhileTheTenSecondsAverageIsBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{}
		defer grownToTwo(t, p)()
		// Calm seconds between busy ones: the average counts, not each
		// second.
		for range 12 {
			p.setLoad(0.7)
			after(3 * time.Second)
			p.setLoad(1.4)
			after(2 * time.Second)
		}
		// 0.9 of a core with two Ps would be about 0.75 with one: it would
		// not be added back at once, but one P would be busy, so it stays.
		p.setLoad(0.9)
		after(time.Minute)
		require.Equal(t, []int{1, 2}, p.setsSoFar())
	})
}

func TestScaleProcsChangesNothingWhileTheCPUTimeCannotBeRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &loadedProcess{fail: true}
		p.setLoad(1.9)
		stop := scaling(p, 2)
		defer stop()
		after(time.Minute)
		require.Equal(t, []int{1}, p.setsSoFar())
	})
}

// TestScaleProcsSetsTheRuntimesPsAndGivesTheDefaultBack runs the real
// thing: one P while it runs, the runtime's default after stop.
func TestScaleProcsSetsTheRuntimesPsAndGivesTheDefaultBack(t *testing.T) {
	if !haveProcessCPU {
		t.Skip("no process CPU time on " + runtime.GOOS)
	}
	t.Setenv("GOMAXPROCS", "") // unset for this test: a user's choice is the next test's
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skip("one P by default here: nothing to scale")
	}
	stop := ScaleProcs(nil)
	require.Equal(t, 1, runtime.GOMAXPROCS(0), "one P from the start")
	stop()
	require.Equal(t, def, runtime.GOMAXPROCS(0))
}

func TestScaleProcsLeavesAUsersGOMAXPROCS(t *testing.T) {
	t.Setenv("GOMAXPROCS", "2")
	before := runtime.GOMAXPROCS(0)
	stop := ScaleProcs(nil)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, before, runtime.GOMAXPROCS(0))
	stop()
	require.Equal(t, before, runtime.GOMAXPROCS(0))
}
