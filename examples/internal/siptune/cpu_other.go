//go:build !unix

package siptune

import (
	"errors"
	"time"
)

// haveProcessCPU is false where the process's CPU time is not read:
// ScaleProcs then leaves GOMAXPROCS to the runtime.
const haveProcessCPU = false

func processCPU() (time.Duration, error) {
	return 0, errors.New("siptune: process CPU time not read on this system")
}
