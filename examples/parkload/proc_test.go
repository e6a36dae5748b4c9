package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "4242 (park (server) x) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 130 0 0 20 0 9 0 100 0 0 18446744073709551615\n"
	cpu, err := parseProcStat([]byte(line))
	require.NoError(t, err)
	require.Equal(t, 3800*time.Millisecond, cpu) // (250 + 130) ticks of 10 ms

	_, err = parseProcStat([]byte("4242 (x) S 1 2"))
	require.Error(t, err)
	_, err = parseProcStat([]byte("garbage"))
	require.Error(t, err)
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tparkserver\nVmPeak:\t  900 kB\nVmRSS:\t   45120 kB\nThreads:\t9\n"
	require.Equal(t, uint64(45120*1024), parseVmRSS([]byte(status)))
	require.Zero(t, parseVmRSS([]byte("Name:\tx\n")))
}

func TestProcUsageOfSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cpu, rss, err := procUsage(os.Getpid())
	require.NoError(t, err)
	require.GreaterOrEqual(t, cpu, time.Duration(0))
	require.Greater(t, rss, uint64(1<<20))
}

func TestParseHeapProfile(t *testing.T) {
	profile := `heap profile: 3: 1024 [10: 4096] @ heap/1048576
1: 512 [1: 512] @ 0x1 0x2
#	0x1	main.f+0x1	/x.go:1

# runtime.MemStats
# Alloc = 2097152
# TotalAlloc = 99999999
# Sys = 12345678
# HeapAlloc = 2097152
# HeapSys = 8388608
# HeapIdle = 4194304
# HeapInuse = 3145728
# HeapReleased = 0
# NumGC = 12
`
	inuse, alloc, err := parseHeapProfile(strings.NewReader(profile))
	require.NoError(t, err)
	require.Equal(t, uint64(3145728), inuse)
	require.Equal(t, uint64(2097152), alloc)

	_, _, err = parseHeapProfile(strings.NewReader("# Alloc = 1\n"))
	require.Error(t, err)
}

func TestHeapPerCall(t *testing.T) {
	s := &serverReport{Samples: []serverSample{
		{Label: "ramp 0", Parked: 0, RSS: 10 << 20, HeapInuse: 1 << 20},
		{Label: "ramp 1000", Parked: 1000, RSS: 20 << 20, HeapInuse: 11 << 20},
		{Label: "ramp 2000", Parked: 2000, RSS: 30 << 20, HeapInuse: 21 << 20},
		{Label: "after BYE", Parked: 0, RSS: 31 << 20, HeapInuse: 2 << 20},
	}}
	heapPerCall(s)
	require.InDelta(t, float64(20<<20)/2000, s.HeapPerCall, 0.01)
	require.InDelta(t, float64(20<<20)/2000, s.RSSPerCall, 0.01)
}

func TestParseMachine(t *testing.T) {
	stat := "cpu  100 5 50 800 10 3 2 7 40 0\ncpu0 50 2 25 400 5 1 1 3 20 0\n"
	m, ok := parseMachine([]byte(stat))
	require.True(t, ok)
	require.Equal(t, uint64(100+5+50+3+2+7), m.busy)
	require.Equal(t, uint64(100+5+50+800+10+3+2+7), m.total)
	_, ok = parseMachine([]byte("intr 1 2 3\n"))
	require.False(t, ok)

	a := machineSample{busy: 1000, total: 5000}
	b := machineSample{busy: 1150, total: 5200} // 150 ticks busy in 1 s
	require.InDelta(t, 1.5, machineCores(a, b, time.Second), 1e-9)
	r := newMachineReport(a, b, time.Second, 400*time.Millisecond, 700*time.Millisecond)
	require.InDelta(t, 1.5, r.BusyCores, 1e-9)
	require.InDelta(t, 0.4, r.OtherCores, 1e-9)
	require.Nil(t, newMachineReport(a, a, time.Second, 0, 0))
}
