package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/N/stat: 100
// on every Linux architecture Go supports (the kernel fixes it for user
// space whatever its internal HZ).
const clockTicks = 100

// serverSample is the server's state at one moment: CPU time and memory
// from /proc (with -server-pid) and the Go heap from pprof (with
// -server-debug).
type serverSample struct {
	Label     string        `json:"label"`
	Parked    int           `json:"parked"`
	At        time.Time     `json:"-"`
	CPU       time.Duration `json:"-"`
	CPUSec    float64       `json:"cpu_s,omitempty"`
	RSS       uint64        `json:"rss_bytes,omitempty"`
	HeapInuse uint64        `json:"heap_inuse_bytes,omitempty"`
	HeapAlloc uint64        `json:"heap_alloc_bytes,omitempty"`
	Err       string        `json:"error,omitempty"`
}

// serverProbe samples the server; the zero probe (no pid, no URL) samples
// nothing.
type serverProbe struct {
	pid  int
	base string
	http *http.Client
}

func newServerProbe(cfg *config) *serverProbe {
	return &serverProbe{pid: cfg.serverPID, base: cfg.serverDebug, http: &http.Client{Timeout: 10 * time.Second}}
}

func (p *serverProbe) enabled() bool { return p.pid > 0 || p.base != "" }

// sample reads what the probe can; a read that fails is noted in Err and
// the rest still filled in.
func (p *serverProbe) sample(ctx context.Context, label string, parked int) serverSample {
	s := serverSample{Label: label, Parked: parked, At: time.Now()}
	var errs []string
	if p.pid > 0 {
		cpu, rss, err := procUsage(p.pid)
		if err != nil {
			errs = append(errs, err.Error())
		}
		s.CPU, s.RSS = cpu, rss
		s.CPUSec = cpu.Seconds()
	}
	if p.base != "" {
		inuse, alloc, err := p.heap(ctx)
		if err != nil {
			errs = append(errs, err.Error())
		}
		s.HeapInuse, s.HeapAlloc = inuse, alloc
	}
	s.Err = strings.Join(errs, "; ")
	return s
}

// procUsage reads a process's CPU time (user + system) and resident set.
func procUsage(pid int) (time.Duration, uint64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("server cpu: %w", err)
	}
	cpu, err := parseProcStat(stat)
	if err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return cpu, 0, fmt.Errorf("server rss: %w", err)
	}
	return cpu, parseVmRSS(status), nil
}

// parseProcStat returns utime + stime from /proc/N/stat. The command name
// (field 2) may hold spaces and parentheses, so fields are counted from
// the last ')'.
func parseProcStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("server cpu: /proc stat without a command name")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("server cpu: /proc stat has %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("server cpu: bad utime/stime %q %q", f[11], f[12])
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// parseVmRSS returns VmRSS from /proc/N/status, in bytes; 0 if absent.
func parseVmRSS(b []byte) uint64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// heap fetches the heap profile in text form after a GC (gc=1), which ends
// with the runtime.MemStats lines, and reads HeapInuse and HeapAlloc.
func (p *serverProbe) heap(ctx context.Context) (inuse, alloc uint64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/debug/pprof/heap?debug=1&gc=1", nil)
	if err != nil {
		return 0, 0, err
	}
	res, err := p.http.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("server heap: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("server heap: %s", res.Status)
	}
	return parseHeapProfile(res.Body)
}

// parseHeapProfile reads "# HeapInuse = N" and "# HeapAlloc = N" from a
// debug=1 heap profile.
func parseHeapProfile(r io.Reader) (inuse, alloc uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	found := 0
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "# Heap") {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "# "), " = ")
		if !ok {
			continue
		}
		n, perr := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
		if perr != nil {
			continue
		}
		switch name {
		case "HeapInuse":
			inuse = n
			found++
		case "HeapAlloc":
			alloc = n
			found++
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("server heap: %w", err)
	}
	if found < 2 {
		return inuse, alloc, fmt.Errorf("server heap: no HeapInuse/HeapAlloc lines in the profile")
	}
	return inuse, alloc, nil
}

// machineSample is the whole machine's CPU time from /proc/stat: busy
// (everything but idle and iowait) and total, in clock ticks.
type machineSample struct{ busy, total uint64 }

// readMachine reads the first line of /proc/stat; ok is false without one.
func readMachine() (machineSample, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineSample{}, false
	}
	return parseMachine(b)
}

func parseMachine(b []byte) (machineSample, bool) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 5 || f[0] != "cpu" {
		return machineSample{}, false
	}
	var m machineSample
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return machineSample{}, false
		}
		if i >= 8 { // guest and guest_nice are inside user and nice already
			break
		}
		m.total += n
		if i != 3 && i != 4 { // idle, iowait
			m.busy += n
		}
	}
	return m, true
}

// machineCores is how many cores' worth of CPU the machine was busy between
// two samples, over wall seconds of time.
func machineCores(a, b machineSample, wall time.Duration) float64 {
	if b.total <= a.total || wall <= 0 {
		return 0
	}
	return float64(b.busy-a.busy) / clockTicks / wall.Seconds()
}
