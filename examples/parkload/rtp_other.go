//go:build !linux

package main

import (
	"errors"
	"net"
)

// enableRxTimestamps: kernel receive timestamps are used on Linux only;
// elsewhere the reader stamps packets itself.
func enableRxTimestamps(*net.UDPConn) bool { return false }

func rxTimestamp([]byte) (int64, bool) { return 0, false }

// newHoldReceiver reads each socket from a goroutine of its own: the
// packet ring is Linux's.
func newHoldReceiver(m *holdMeters, ports *rtpPorts, rx string) (holdReceiver, string, error) {
	if rx == rxRing {
		return nil, "", errors.New("-rx ring: a packet ring needs Linux")
	}
	return newGoroutineReceiver(m, ports), rxSockets, nil
}
