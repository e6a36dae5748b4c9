//go:build unix

package siptune

import (
	"syscall"
	"time"
)

const haveProcessCPU = true

// processCPU is the CPU time the process has used, user and system, in
// all its threads.
func processCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
