package main

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// enableRxTimestamps asks the kernel to stamp every datagram c receives
// (SO_TIMESTAMPNS); false where it cannot.
func enableRxTimestamps(c *net.UDPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// cmsgAlign rounds n up to the alignment of control messages.
func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// rxTimestamp finds the SCM_TIMESTAMPNS control message in oob and returns
// its time in Unix nanoseconds, without allocating (syscall's parser would
// allocate for every packet).
func rxTimestamp(oob []byte) (int64, bool) {
	hdr := cmsgAlign(syscall.SizeofCmsghdr)
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			return 0, false
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+int(unsafe.Sizeof(syscall.Timespec{})) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&oob[hdr]))
			return ts.Nano(), true
		}
		next := cmsgAlign(l)
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return 0, false
}

// epollReceiver reads every hold call's socket from one goroutine: one
// epoll set, drained every batchInterval, and no goroutine wake-up per
// packet. The batching delays only the reading, not the measurement:
// arrival times are the kernel's receive timestamps. The sockets are raw
// (not net.UDPConn), so Go's own poller does not watch them as well.
//
// The set is edge-triggered and each reported socket is emptied with
// recvmmsg: a level-triggered set polls every socket it reported once more
// on the next wait (to learn it is empty), which at 5,000 calls was a tenth
// of the tool's CPU, on the same cores as the server it measures.
type epollReceiver struct {
	m     *holdMeters
	ports *rtpPorts
	epfd  int
	byFD  []*holdStream // indexed by file descriptor
	fds   []int

	rxLoop
}

// batchInterval is how long the receiver sleeps between drains. A call's
// socket gets a packet every 20 ms, so at most one waits per drain, far
// below what a socket buffers; at 2,000 calls about 500 wait in all. Longer
// drains cost nothing in accuracy (the kernel stamps arrival times) and
// save wake-ups: 5 ms instead of 1 ms takes 3 % of a core off the tool at
// 300 calls.
const batchInterval = 5 * time.Millisecond

// newHoldReceiver picks the receiver -rx names: "ring" (ringReceiver),
// "sockets" (epollReceiver), or "auto", the ring where this process may
// open one and the sockets otherwise.
func newHoldReceiver(m *holdMeters, ports *rtpPorts, rx string) (holdReceiver, string, error) {
	if rx == rxRing || rx == rxAuto {
		r, err := newRingReceiver(m, ports)
		if err == nil {
			return r, rxRing, nil
		}
		if rx == rxRing {
			return nil, "", fmt.Errorf("-rx %s: %w", rx, err)
		}
		// auto: any ring this machine will not give (no CAP_NET_RAW, an
		// IPv6 -local, no TPACKET_V3) means the sockets; the report says
		// which receiver read the music.
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, "", fmt.Errorf("epoll: %w", err)
	}
	m.kernelTS.Store(true)
	return &epollReceiver{m: m, ports: ports, epfd: epfd, rxLoop: newRxLoop()}, rxSockets, nil
}

func (r *epollReceiver) open() (*holdStream, error) {
	fd, port, err := bindSocket(r.ports)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("SO_TIMESTAMPNS: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		syscall.Close(fd)
		return nil, fmt.Errorf("epoll add: %w", err)
	}
	s := &holdStream{port: uint16(port)}
	for len(r.byFD) <= fd {
		r.byFD = append(r.byFD, nil)
	}
	r.byFD[fd] = s
	r.fds = append(r.fds, fd)
	return s, nil
}

func (r *epollReceiver) start() { r.run(r.loop) }

// rxBatch is how many datagrams one recvmmsg takes from a socket. A call's
// socket rarely holds more than one (the receiver drains every 5 ms, the
// server sends every 20); a full batch is read again until one comes short.
const rxBatch = 4

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// epollET is EPOLLET as the uint32 an EpollEvent holds (syscall declares
// it as a negative int).
const epollET = 1 << 31

// receiverNice is the scheduling priority of the receiver's thread. The
// kernel stamps each datagram as it is delivered, in the sender's system
// call on loopback, so reading it later changes no figure; only the server
// must not wait for a core behind the tool that measures it. At nice 10 the
// receiver yields the cores to the server, as phones on other machines
// would, and still has the idle time to read (a socket's buffer holds
// seconds of one call's packets).
const receiverNice = 10

func (r *epollReceiver) loop() {
	// The thread is niced for good: it ends with this goroutine (a locked
	// goroutine that exits takes its thread with it), so no niced thread
	// runs anything else.
	runtime.LockOSThread()
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), receiverNice) // best effort: a figure, not a failure
	events := make([]syscall.EpollEvent, 1024)
	var (
		msgs [rxBatch]mmsghdr
		iovs [rxBatch]syscall.Iovec
		bufs [rxBatch][1500]byte
		oobs [rxBatch][128]byte
	)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.Iovlen = 1
		msgs[i].hdr.Control = &oobs[i][0]
	}
	for !r.quit.Load() {
		n, err := syscall.EpollWait(r.epfd, events, 100)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		for _, ev := range events[:n] {
			s := r.byFD[ev.Fd]
			// Edge-triggered: read until a batch comes short, or the
			// socket is not reported again until its next datagram.
			for {
				for i := range msgs {
					msgs[i].hdr.SetControllen(len(oobs[i]))
				}
				got, _, errno := syscall.RawSyscall6(syscall.SYS_RECVMMSG, uintptr(ev.Fd), uintptr(unsafe.Pointer(&msgs[0])), rxBatch, syscall.MSG_DONTWAIT, 0, 0)
				if errno != 0 {
					break
				}
				for i := range int(got) {
					ts, ok := rxTimestamp(oobs[i][:msgs[i].hdr.Controllen])
					if !ok {
						ts = time.Now().UnixNano()
					}
					s.packet(r.m, bufs[i][:msgs[i].n], ts)
				}
				if got < rxBatch {
					break
				}
			}
		}
		if n < len(events) {
			time.Sleep(batchInterval)
		}
	}
}

func (r *epollReceiver) overruns() uint64 { return 0 }

func (r *epollReceiver) stop() {
	if !r.halt() {
		return
	}
	for _, fd := range r.fds {
		syscall.Close(fd)
	}
	syscall.Close(r.epfd)
}

// bindSocket binds a non-blocking UDP socket, outside Go's poller, to the
// next free even port of ports.
func bindSocket(ports *rtpPorts) (fd, port int, err error) {
	ip := ports.ip
	family := syscall.AF_INET
	if ip.Is6() {
		family = syscall.AF_INET6
	}
	err = ports.bind(func(p int) bool {
		s, err := syscall.Socket(family, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return false
		}
		var sa syscall.Sockaddr
		if ip.Is6() {
			sa = &syscall.SockaddrInet6{Port: p, Addr: ip.As16()}
		} else {
			sa = &syscall.SockaddrInet4{Port: p, Addr: ip.As4()}
		}
		if err := syscall.Bind(s, sa); err != nil {
			syscall.Close(s)
			return false
		}
		fd, port = s, p
		return true
	})
	return fd, port, err
}

// rxLoop runs a receiver's reading loop: run starts it, the loop ends
// once quit is set, and halt sets quit and waits for it.
type rxLoop struct {
	quit            atomic.Bool
	done            chan struct{}
	started, halted bool
}

func newRxLoop() rxLoop { return rxLoop{done: make(chan struct{})} }

func (l *rxLoop) run(loop func()) {
	l.started = true
	go func() {
		defer close(l.done)
		loop()
	}()
}

// halt ends the loop (if it started) and reports whether this was the
// first halt, which closes the receiver's sockets.
func (l *rxLoop) halt() bool {
	if l.halted {
		return false
	}
	l.halted = true
	if l.started {
		l.quit.Store(true)
		<-l.done
	}
	return true
}
