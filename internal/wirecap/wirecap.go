// Package wirecap shows tests the UDP datagrams on the loopback interface,
// as a packet capture would, so that a test with real phones can check
// what went on the wire (SRTP, not G.711 in the clear) and not only what
// the phones report. The test machines have no tcpdump; a raw IPv4 socket
// (SOCK_RAW, IPPROTO_UDP) gets a copy of every UDP datagram the host
// receives, which on 127.0.0.1 is every one sent there.
//
// A raw socket needs CAP_NET_RAW (root has it). Without it Start skips the
// test, naming the capability, unless CALLPARK_INTEROP=1: CI runs as root,
// so there a missing capability is a broken runner and fails the test
// rather than quietly dropping the check.
package wirecap

import (
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/media"
)

// Datagram is one UDP datagram seen on the wire.
type Datagram struct {
	Src, Dst netip.AddrPort
	// Payload is the UDP payload.
	Payload []byte
	At      time.Time
}

// Filter picks the datagrams a Capture keeps.
type Filter func(src, dst netip.AddrPort) bool

// ToPorts keeps the datagrams sent to a port from lo to hi, on any of the
// host's addresses: a phone may name the host's other address in its SDP
// (linphone does), which the kernel delivers on loopback all the same.
func ToPorts(lo, hi int) Filter {
	return func(_, dst netip.AddrPort) bool {
		p := int(dst.Port())
		return p >= lo && p <= hi
	}
}

// maxKept bounds what one Capture holds: a minute of one 50-packet-a-second
// stream several times over.
const maxKept = 50000

// Capture collects the datagrams its filter keeps, from Start until the
// test ends.
type Capture struct {
	fd   int
	keep Filter
	stop atomic.Bool
	done chan struct{}

	mu   sync.Mutex
	got  []Datagram
	wake chan struct{}
}

// Start opens the raw socket and captures in the background until the
// test's cleanup. It skips the test (fails it under CALLPARK_INTEROP=1)
// when the process may not open raw sockets.
func Start(t testing.TB, keep Filter) *Capture {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.IPPROTO_UDP)
	if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
		msg := "capturing UDP on loopback needs a raw socket, which needs CAP_NET_RAW (run the test as root): " + err.Error()
		if interop.Required() {
			t.Fatal(msg + " (CALLPARK_INTEROP=1 makes it a failure: CI runs as root)")
		}
		t.Skip(msg)
	}
	if err != nil {
		t.Fatalf("wirecap: raw socket: %v", err)
	}
	// Every UDP datagram of the host comes through this socket, other
	// tests' load included; a big buffer keeps the few we want from being
	// dropped behind them.
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20)
	// A timeout on reads lets the cleanup stop the reader (closing the
	// socket does not wake a blocked recvfrom).
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		t.Fatalf("wirecap: SO_RCVTIMEO: %v", err)
	}
	c := &Capture{fd: fd, keep: keep, done: make(chan struct{}), wake: make(chan struct{})}
	go c.read()
	t.Cleanup(func() {
		c.stop.Store(true)
		<-c.done
		syscall.Close(fd)
	})
	return c
}

func (c *Capture) read() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for !c.stop.Load() {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // the timeout (EAGAIN) or EINTR: look at stop again
		}
		d, ok := parseIPv4UDP(buf[:n])
		if !ok || !c.keep(d.Src, d.Dst) {
			continue
		}
		d.Payload = append([]byte(nil), d.Payload...)
		d.At = time.Now()
		c.mu.Lock()
		if len(c.got) < maxKept {
			c.got = append(c.got, d)
		}
		close(c.wake)
		c.wake = make(chan struct{})
		c.mu.Unlock()
	}
}

// parseIPv4UDP reads an IPv4 packet carrying a whole UDP datagram.
func parseIPv4UDP(b []byte) (Datagram, bool) {
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != syscall.IPPROTO_UDP {
		return Datagram{}, false
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl+8 {
		return Datagram{}, false
	}
	if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 {
		return Datagram{}, false // a fragment
	}
	udp := b[ihl:]
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8 || ulen > len(udp) {
		return Datagram{}, false
	}
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[12:16])), binary.BigEndian.Uint16(udp[0:2]))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[16:20])), binary.BigEndian.Uint16(udp[2:4]))
	return Datagram{Src: src, Dst: dst, Payload: udp[8:ulen]}, true
}

// Datagrams returns what was kept so far, oldest first.
func (c *Capture) Datagrams() []Datagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Datagram(nil), c.got...)
}

// Len returns how many datagrams were kept so far: the from of a later
// Since or Wait.
func (c *Capture) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

// Wait waits until at least n datagrams that match have been kept after
// the from-th, and returns all the matching ones after it; it fails the
// test after timeout.
func (c *Capture) Wait(t testing.TB, from, n int, match Filter, timeout time.Duration) []Datagram {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		var found []Datagram
		for _, d := range c.got[min(from, len(c.got)):] {
			if match == nil || match(d.Src, d.Dst) {
				found = append(found, d)
			}
		}
		wake := c.wake
		c.mu.Unlock()
		if len(found) >= n {
			return found
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("wirecap: %d of the %d datagrams wanted were seen in %v", len(found), n, timeout)
		}
	}
}

// RTP is the fixed header of an RTP (or SRTP: its header is in the clear)
// packet and what follows it.
type RTP struct {
	PayloadType uint8
	Seq         uint16
	Timestamp   uint32
	SSRC        uint32
	// Rest is everything after the header (CSRCs and extension skipped):
	// the payload, and for SRTP the authentication tag after it.
	Rest []byte
}

// ParseRTP reads an RTP header; ok is false for what is not RTP version 2
// (RTCP, STUN, garbage).
func ParseRTP(b []byte) (p RTP, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 {
		return p, false
	}
	pt := b[1] & 0x7f
	if pt >= 64 && pt <= 95 {
		return p, false // RTCP packet types 192-223 with the marker bit
	}
	off := 12 + 4*int(b[0]&0x0f)
	if b[0]&0x10 != 0 {
		if len(b) < off+4 {
			return p, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:off+4]))
	}
	if len(b) < off {
		return p, false
	}
	return RTP{
		PayloadType: pt,
		Seq:         binary.BigEndian.Uint16(b[2:4]),
		Timestamp:   binary.BigEndian.Uint32(b[4:8]),
		SSRC:        binary.BigEndian.Uint32(b[8:12]),
		Rest:        b[off:],
	}, true
}

// DecodeG711 decodes a G.711 payload (media.Codec.Decode): PCMU for
// payload type 0, PCMA for 8.
func DecodeG711(pt uint8, payload []byte) []float64 {
	codec := media.PCMU
	if pt == media.PCMA.PayloadType() {
		codec = media.PCMA
	}
	pcm := make([]int16, len(payload))
	codec.Decode(pcm, payload)
	out := make([]float64, len(pcm))
	for i, x := range pcm {
		out[i] = float64(x)
	}
	return out
}

// ToneShare returns the share of the samples' energy (8 kHz) that is a
// sine at hz (the Goertzel filter's power, scaled so that a pure tone
// gives about 1): near 1 for G.711 of that tone in the clear, near 2/len
// for ciphertext, which decodes as white noise.
func ToneShare(samples []float64, hz float64) float64 {
	w := 2 * math.Pi * hz / 8000
	coeff := 2 * math.Cos(w)
	var s1, s2, energy float64
	for _, x := range samples {
		s1, s2 = x+coeff*s1-s2, s1
		energy += x * x
	}
	if energy == 0 {
		return 0
	}
	power := s1*s1 + s2*s2 - coeff*s1*s2
	return 2 * power / (float64(len(samples)) * energy)
}
