package siptransport

import (
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// blockCounter counts the listener's blocking reads and says when one has
// begun.
type blockCounter struct {
	net.PacketConn
	blocking atomic.Int32
	entered  chan struct{}
}

func (c *blockCounter) ReadFrom(b []byte) (int, net.Addr, error) {
	c.blocking.Add(1)
	select {
	case c.entered <- struct{}{}:
	default:
	}
	return c.PacketConn.ReadFrom(b)
}

// pollingListener is a Listener on a loopback socket whose blocking reads
// are counted.
func pollingListener(t *testing.T) (*Listener, *blockCounter) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	counter := &blockCounter{PacketConn: conn, entered: make(chan struct{}, 1)}
	l := NewListener(counter)
	require.Nil(t, l.poll, "only a *net.UDPConn is polled")
	l.poll = newPollReader(conn)
	require.NotNil(t, l.poll)
	l.busyGap = time.Minute
	return l, counter
}

func sendFrom(t *testing.T, to net.Addr, payloads ...string) net.Addr {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, to.(*net.UDPAddr))
	require.NoError(t, err)
	defer c.Close()
	for _, p := range payloads {
		_, err := c.Write([]byte(p))
		require.NoError(t, err)
	}
	return c.LocalAddr()
}

func readString(t *testing.T, l *Listener) (string, net.Addr) {
	t.Helper()
	b := make([]byte, 1500)
	n, addr, err := l.ReadFrom(b)
	require.NoError(t, err)
	return string(b[:n]), addr
}

// atLeastTwoPs makes the test's program run with two Ps or more, as a
// listener polls only then.
func atLeastTwoPs(t *testing.T) {
	if prev := runtime.GOMAXPROCS(0); prev < 2 {
		runtime.GOMAXPROCS(2)
		t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	}
}

func TestListenerTakesABurstWithoutWaking(t *testing.T) {
	atLeastTwoPs(t)
	l, counter := pollingListener(t)
	// One datagram is not yet traffic: the next read blocks too. Two
	// within busyGap are.
	first := sendFrom(t, l.LocalAddr(), "a", "a2")
	got, from := readString(t, l)
	require.Equal(t, "a", got)
	require.Equal(t, first.String(), from.String())
	require.Zero(t, l.busy)
	got, _ = readString(t, l)
	require.Equal(t, "a2", got)
	require.Positive(t, l.busy)
	require.EqualValues(t, 2, counter.blocking.Load())
	<-counter.entered

	// A burst from two senders, already waiting: taken in order, each with
	// its own source, and without a blocking read.
	one := sendFrom(t, l.LocalAddr(), "b", "c")
	two := sendFrom(t, l.LocalAddr(), "d")
	for _, want := range []struct {
		payload string
		from    net.Addr
	}{{"b", one}, {"c", one}, {"d", two}} {
		got, from := readString(t, l)
		require.Equal(t, want.payload, got)
		require.Equal(t, want.from.String(), from.String())
	}
	require.EqualValues(t, 2, counter.blocking.Load(), "a busy socket is not waited on")

	// Quiet for pollIdle looks: the listener waits for the kernel again,
	// and a datagram sent then still comes.
	type result struct {
		payload string
		err     error
	}
	done := make(chan result, 1)
	go func() {
		b := make([]byte, 1500)
		n, _, err := l.ReadFrom(b)
		done <- result{string(b[:n]), err}
	}()
	select {
	case <-counter.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("an idle listener never went back to a blocking read")
	}
	sendFrom(t, l.LocalAddr(), "e")
	r := <-done
	require.NoError(t, r.err)
	require.Equal(t, "e", r.payload)
	require.EqualValues(t, 3, counter.blocking.Load())
}

func TestListenerClosedWhileBusy(t *testing.T) {
	atLeastTwoPs(t)
	l, _ := pollingListener(t)
	sendFrom(t, l.LocalAddr(), "a", "b")
	readString(t, l)
	readString(t, l)
	require.Positive(t, l.busy)
	require.NoError(t, l.Close())
	_, _, err := l.ReadFrom(make([]byte, 1500))
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestPollReaderIPv6Source(t *testing.T) {
	conn, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	defer conn.Close()
	p := newPollReader(conn)
	c, err := net.DialUDP("udp6", nil, conn.LocalAddr().(*net.UDPAddr))
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	b := make([]byte, 10)
	require.Eventually(t, func() bool {
		n, from, ok, err := p.read(b)
		require.NoError(t, err)
		if !ok {
			return false
		}
		require.Equal(t, "x", string(b[:n]))
		require.Equal(t, c.LocalAddr().String(), from.String())
		return true
	}, 5*time.Second, time.Millisecond)
}

// With one P the sleep would hold the program's only P, so a listener
// there never polls, however busy.
func TestListenerWithOnePBlocks(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	l, counter := pollingListener(t)
	sendFrom(t, l.LocalAddr(), "a", "b", "c")
	for _, want := range []string{"a", "b", "c"} {
		got, _ := readString(t, l)
		require.Equal(t, want, got)
		require.Zero(t, l.busy)
	}
	require.EqualValues(t, 3, counter.blocking.Load())
}

// A source's IPv6 zone is named by its interface, as Go's own ReadFrom
// names it; the name is looked up once per zone, not per datagram.
func TestPollReaderZoneName(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no lo interface: %v", err)
	}
	p := &pollReader{}
	require.Empty(t, p.zoneName(0))
	require.Equal(t, "lo", p.zoneName(uint32(lo.Index)))
	require.Equal(t, "lo", p.zoneName(uint32(lo.Index)))
	require.Empty(t, p.zoneName(1<<30), "no such interface")
	require.Equal(t, "lo", p.zoneName(uint32(lo.Index)))
}
