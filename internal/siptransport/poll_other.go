//go:build !linux

package siptransport

import (
	"net"
	"time"
)

// pollReader is not built here: the listener always blocks.
type pollReader struct{}

func newPollReader(net.PacketConn) *pollReader { return nil }

func (*pollReader) read([]byte) (int, net.Addr, bool, error) { return 0, nil, false, nil }

func (*pollReader) sleep(time.Duration) {}
