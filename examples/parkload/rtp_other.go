//go:build !linux

package main

import "net"

// enableRxTimestamps: kernel receive timestamps are used on Linux only;
// elsewhere the reader stamps packets itself.
func enableRxTimestamps(*net.UDPConn) bool { return false }

func rxTimestamp([]byte) (int64, bool) { return 0, false }

// newHoldReceiver reads each socket from a goroutine of its own.
func newHoldReceiver(m *holdMeters, ports *rtpPorts) (holdReceiver, error) {
	return newGoroutineReceiver(m, ports), nil
}
