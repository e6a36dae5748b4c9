//go:build linux

// Command udpfloor measures what issue 16's hold run asks of the kernel
// alone on this machine: N paced 20 ms streams of 172-byte datagrams from one
// socket in sendmmsg batches (the park server's shared port, without SIP,
// music or anything else of ours), read by N sockets through one epoll set
// with kernel receive timestamps (parkload's hold receiver), both in this
// one process on the same cores. It prints the share of packets received in
// the window and p99 |Δ − 20 ms|, as parkload does: what a bare sender gets
// here with the load tool's receiver beside it, to set a park server's
// figures against (BENCHMARKS.md, issue 16, goal 1).
//
//	go run ./examples/parkload/udpfloor -calls 5000 -window 20s
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// mmsghdr is struct mmsghdr of sendmmsg(2) and recvmmsg(2); Go pads it
// as C does on every architecture (an explicit pad was right on 64-bit
// only).
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

func main() {
	calls := flag.Int("calls", 5000, "streams")
	window := flag.Duration("window", 20*time.Second, "measuring window, after a 2 s warm-up")
	base := flag.Int("port", 40000, "first receiving port")
	flag.Parse()
	if err := run(*calls, *window, *base); err != nil {
		fmt.Fprintln(os.Stderr, "udpfloor:", err)
		os.Exit(1)
	}
}

func run(calls int, window time.Duration, base int) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	fds := make([]int, calls)
	byFD := map[int]int{}
	for i := range fds {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: base + i, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return fmt.Errorf("bind %d: %w", base+i, err)
		}
		_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return err
		}
		fds[i], byFD[fd] = fd, i
	}
	snd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	_ = syscall.SetsockoptInt(snd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)

	start := time.Now().Add(100 * time.Millisecond)
	from := start.Add(2 * time.Second).UnixNano()
	to := from + window.Nanoseconds()
	var stop atomic.Bool
	done := make(chan struct{})
	go send(snd, calls, base, start, &stop, done)

	last := make([]int64, calls)
	var inWindow uint64
	var deltas []int32 // |Δ − 20 ms| in µs
	events := make([]syscall.EpollEvent, 1024)
	buf := make([]byte, 1500)
	oob := make([]byte, 128)
	iov := syscall.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	var msg syscall.Msghdr
	msg.Iov, msg.Iovlen, msg.Control = &iov, 1, &oob[0]
	for time.Now().UnixNano() < to+int64(200*time.Millisecond) {
		n, err := syscall.EpollWait(epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			return err
		}
		for _, ev := range events[:max(n, 0)] {
			msg.SetControllen(len(oob))
			_, _, errno := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(ev.Fd), uintptr(unsafe.Pointer(&msg)), syscall.MSG_DONTWAIT)
			if errno != 0 {
				continue
			}
			ts := rxTimestamp(oob[:msg.Controllen])
			i := byFD[int(ev.Fd)]
			if ts >= from && ts < to {
				inWindow++
				if last[i] >= from {
					d := (ts - last[i]) - int64(20*time.Millisecond)
					deltas = append(deltas, int32(abs(d)/1000))
				}
			}
			last[i] = ts
		}
		if n < len(events) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	stop.Store(true)
	<-done
	expected := float64(calls) * float64(window) / float64(20*time.Millisecond)
	slices.Sort(deltas)
	p := func(q float64) float64 {
		if len(deltas) == 0 {
			return 0
		}
		return float64(deltas[int(q*float64(len(deltas)-1))]) / 1000
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	fmt.Printf("calls %d window %v: received in window %.3f %%, |Δ − 20 ms| p50 %.2f p99 %.2f p99.9 %.2f ms; process CPU %.2f s (both halves)\n",
		calls, window, 100*float64(inWindow)/expected, p(0.5), p(0.99), p(0.999), cpu.Seconds())
	return nil
}

// send paces calls streams at 20 ms from one socket: every millisecond the
// twentieth of them due then, in sendmmsg batches of 64.
func send(fd, calls, base int, start time.Time, stop *atomic.Bool, done chan<- struct{}) {
	defer close(done)
	runtime.LockOSThread()
	const batch = 64
	pkt := make([]byte, 172)
	pkt[0] = 0x80
	addrs := make([]syscall.RawSockaddrInet4, calls)
	for i := range addrs {
		addrs[i].Family = syscall.AF_INET
		p := uint16(base + i)
		addrs[i].Port = p<<8 | p>>8
		addrs[i].Addr = [4]byte{127, 0, 0, 1}
	}
	iov := syscall.Iovec{Base: &pkt[0]}
	iov.SetLen(len(pkt))
	msgs := make([]mmsghdr, batch)
	for slot := 0; !stop.Load(); slot++ {
		due := start.Add(time.Duration(slot) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		k := 0
		flush := func() {
			for off := 0; off < k; {
				r, _, errno := syscall.Syscall6(307 /* SYS_SENDMMSG */, uintptr(fd), uintptr(unsafe.Pointer(&msgs[off])), uintptr(k-off), 0, 0, 0)
				if errno != 0 {
					break
				}
				off += int(r)
			}
			k = 0
		}
		for i := slot % 20; i < calls; i += 20 {
			m := &msgs[k].hdr
			m.Name = (*byte)(unsafe.Pointer(&addrs[i]))
			m.Namelen = syscall.SizeofSockaddrInet4
			m.Iov, m.Iovlen = &iov, 1
			if k++; k == batch {
				flush()
			}
		}
		flush()
	}
}

func abs(d int64) int64 {
	if d < 0 {
		return -d
	}
	return d
}

func rxTimestamp(oob []byte) int64 {
	const hdr = (syscall.SizeofCmsghdr + 7) &^ 7
	for len(oob) >= syscall.SizeofCmsghdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < syscall.SizeofCmsghdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS {
			return (*syscall.Timespec)(unsafe.Pointer(&oob[hdr])).Nano()
		}
		next := (l + 7) &^ 7
		if next >= len(oob) {
			break
		}
		oob = oob[next:]
	}
	return time.Now().UnixNano()
}
