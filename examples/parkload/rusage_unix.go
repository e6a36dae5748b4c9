//go:build unix

package main

import (
	"runtime"
	"syscall"
	"time"
)

// selfUsage is the tool's own CPU time (user + system) and peak RSS.
func selfUsage() (cpu time.Duration, maxRSS uint64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	maxRSS = uint64(ru.Maxrss)
	if runtime.GOOS == "linux" || runtime.GOOS == "freebsd" || runtime.GOOS == "netbsd" || runtime.GOOS == "openbsd" {
		maxRSS *= 1024 // kilobytes there, bytes on darwin
	}
	return cpu, maxRSS
}

// raiseFileLimit lifts the soft limit on open files to the hard one: hold
// mode keeps one socket per call.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// fileLimit is the soft limit on open files, 0 if unknown.
func fileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}
