//go:build linux

package media

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// rxSet reads the sockets of a Scheduler's endpoints: a few epoll sets, one
// per shard, each registered for EPOLLIN only (level-triggered) and served
// by one goroutine. The first endpoint added to a slot starts its set; a
// set left without sockets stops rxIdleLinger later unless one comes back
// meanwhile. (It used to stop with its last socket, and at a thousand
// calls a second, each leg bridged for a few milliseconds, that made an
// epoll set, an eventfd and a goroutine nearly per call: 3 % of the park
// server's CPU.) The Scheduler's Close stops the idle sets and waits for
// them, and after it a set stops with its last socket, so that nothing is
// left running once the scheduler and its endpoints are closed.
type rxSet struct {
	mu     sync.Mutex
	runs   []*rxRun      // the running set of each slot; nil when idle
	closed bool          // the Scheduler has closed
	linger time.Duration // rxIdleLinger if zero; tests shorten it
}

// rxRun is one epoll set and the goroutine reading it, from its first
// socket to its last.
type rxRun struct {
	set    *rxSet
	slot   int
	epfd   int
	wakefd int         // an eventfd: written to stop the goroutine
	n      int         // sockets registered; under set.mu
	stop   atomic.Bool // set with set.mu held, before wakefd is written
	done   chan struct{}

	mu   sync.RWMutex
	byFD map[int32]rxReader

	idle *time.Timer // stops the set rxIdleLinger after its last socket; under set.mu
}

// rxIdleLinger is how long a set without sockets waits for the next one
// before its goroutine stops: long enough to outlast the gaps between
// calls under load, short enough that an idle server soon holds no reader.
const rxIdleLinger = time.Second

// rxReader is what a set reads: a leg's own socket (Endpoint) or a port
// several legs share (SharedPort). readRaw reads what is ready without
// waiting.
type rxReader interface {
	readRaw(buf []byte)
}

// endpointIO is the Linux read path of one endpoint: nil raw means the
// portable one (Go's netpoller) serves it.
type endpointIO struct {
	raw *rawSocket
	run *rxRun

	// mu is held by the set's goroutine while it reads and handles a
	// packet of this leg, so that stopIO can wait for one in flight.
	mu     sync.Mutex
	closed bool
}

// startIO takes the leg's socket out of Go's netpoller: it reads a duplicate
// of its descriptor from one of the scheduler's epoll sets, then closes
// conn, which makes the runtime remove the original from its own epoll set.
// Should any of that fail, the leg falls back to the portable path.
func (e *Endpoint) startIO() {
	if e.sched.portableIO {
		e.startNetpoll()
		return
	}
	raw, err := dupSocket(e.conn)
	if err != nil {
		e.logger.Debug("rtp socket stays in Go's netpoller", "local", e.local, "err", err)
		e.startNetpoll()
		return
	}
	// Set before the socket is registered: the set's goroutine may read it
	// at once.
	e.io.raw, e.out = raw, raw
	if err := e.sched.rx.add(&e.io, e, len(e.sched.shards), e.sched); err != nil {
		e.io.raw, e.out = nil, nil
		_ = raw.close()
		e.logger.Debug("rtp socket stays in Go's netpoller", "local", e.local, "err", err)
		e.startNetpoll()
		return
	}
	// The duplicate keeps the socket open. Closing conn deregisters it
	// from the runtime's epoll set (the runtime deletes it explicitly:
	// epoll itself would keep watching while any duplicate is open).
	_ = e.conn.Close()
}

// stopIO stops reading the leg and closes its socket; the caller waits on
// e.done.
func (e *Endpoint) stopIO() error {
	if e.io.raw == nil {
		return e.stopNetpoll()
	}
	e.sched.rx.remove(&e.io)
	err := e.io.raw.close()
	close(e.done)
	return err
}

// add registers the socket of io (read by rd) with the least loaded slot,
// starting its goroutine if the slot is idle.
func (s *rxSet) add(io *endpointIO, rd rxReader, slots int, sched *Scheduler) error {
	raw := io.raw
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.runs == nil {
		s.runs = make([]*rxRun, max(slots, 1))
	}
	slot := 0
	for i, r := range s.runs {
		if r == nil || (s.runs[slot] != nil && r.n < s.runs[slot].n) {
			slot = i
			if r == nil {
				break
			}
		}
	}
	r := s.runs[slot]
	if r != nil && r.idle != nil {
		r.idle.Stop()
		r.idle = nil
	}
	started := false
	if r == nil {
		var err error
		if r, err = newRxRun(s, slot); err != nil {
			return err
		}
		started = true
	}
	io.run = r
	r.mu.Lock()
	r.byFD[int32(raw.fd)] = rd
	r.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(raw.fd)}
	if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, raw.fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.byFD, int32(raw.fd))
		r.mu.Unlock()
		if started {
			r.closeFDs()
		}
		io.run = nil
		return err
	}
	r.n++
	if started {
		s.runs[slot] = r
		go r.loop(sched)
	}
	return nil
}

// remove deregisters the socket of io and returns once the set's goroutine
// is no longer handling a packet of it; if it was the set's last socket,
// once the goroutine has returned.
func (s *rxSet) remove(io *endpointIO) {
	r, fd := io.run, int32(io.raw.fd)
	// Deleting first: after this no new event of the socket is reported.
	// One may already be in the goroutine's batch; the closed flag below
	// makes it skip the socket.
	_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	io.mu.Lock()
	io.closed = true
	io.mu.Unlock()

	s.mu.Lock()
	r.mu.Lock()
	delete(r.byFD, fd)
	r.mu.Unlock()
	r.n--
	last := r.n == 0 && s.closed
	if last {
		s.runs[r.slot] = nil // the next add starts a new set
		r.stopLocked()
	} else if r.n == 0 {
		d := s.linger
		if d == 0 {
			d = rxIdleLinger
		}
		r.idle = time.AfterFunc(d, func() { s.stopIdle(r) })
	}
	s.mu.Unlock()
	if last {
		<-r.done
	}
}

// stopIdle stops r if it is still its slot's set and still has no socket.
func (s *rxSet) stopIdle(r *rxRun) {
	s.mu.Lock()
	if s.runs[r.slot] != r || r.n != 0 {
		s.mu.Unlock()
		return
	}
	s.runs[r.slot] = nil
	r.idle = nil
	r.stopLocked()
	s.mu.Unlock()
	<-r.done
}

// close stops the sets without sockets and waits for them; the others stop
// with their last socket.
func (s *rxSet) close() {
	s.mu.Lock()
	s.closed = true
	var idle []*rxRun
	for i, r := range s.runs {
		if r != nil && r.n == 0 {
			s.runs[i] = nil
			if r.idle != nil {
				r.idle.Stop()
				r.idle = nil
			}
			r.stopLocked()
			idle = append(idle, r)
		}
	}
	s.mu.Unlock()
	for _, r := range idle {
		<-r.done
	}
}

// stopLocked asks the set's goroutine to return; set.mu is held.
func (r *rxRun) stopLocked() {
	r.stop.Store(true)
	one := [8]byte{1}
	_, _ = unix.Write(r.wakefd, one[:])
}

func newRxRun(s *rxSet, slot int) (*rxRun, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	r := &rxRun{set: s, slot: slot, epfd: epfd, wakefd: wakefd, done: make(chan struct{}), byFD: make(map[int32]rxReader)}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &ev); err != nil {
		r.closeFDs()
		return nil, err
	}
	return r, nil
}

func (r *rxRun) closeFDs() {
	_ = unix.Close(r.wakefd)
	_ = unix.Close(r.epfd)
}

// maxEvents is how many ready sockets one epoll_wait returns at most; the
// rest wait for the next (level-triggered, nothing is lost).
const maxEvents = 256

// loop reads one datagram from each ready socket per round: with
// level-triggered events a socket with more queued is reported again at
// once, and no round pays for a read that finds nothing.
func (r *rxRun) loop(s *Scheduler) {
	defer close(r.done)
	defer r.closeFDs()
	events := make([]unix.EpollEvent, maxEvents)
	buf := make([]byte, readBufferSize)
	for {
		n, err := unix.EpollWait(r.epfd, events, -1)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			// EBADF or EINVAL: a bug, not a transient condition; the legs
			// of this set are no longer read.
			// It must not return before remove asks it to, which it
			// learns from wakefd (written only then).
			s.logger.Error("rtp epoll_wait failed; legs of this set no longer read", "err", err)
			fds := []unix.PollFd{{Fd: int32(r.wakefd), Events: unix.POLLIN}}
			for !r.stop.Load() {
				_, _ = unix.Poll(fds, -1)
			}
			return
		}
		for _, ev := range events[:n] {
			if ev.Fd == int32(r.wakefd) {
				if r.stop.Load() {
					return
				}
				continue
			}
			r.mu.RLock()
			rd := r.byFD[ev.Fd]
			r.mu.RUnlock()
			if rd != nil {
				rd.readRaw(buf)
			}
		}
	}
}

// readRaw reads one datagram of the leg, if any, and handles it as
// readLoop does on the portable path.
func (e *Endpoint) readRaw(buf []byte) {
	e.io.mu.Lock()
	defer e.io.mu.Unlock()
	if e.io.closed {
		return
	}
	n, src, err := e.io.raw.recvFrom(buf)
	if err != nil {
		if !isTemporary(err) {
			// A transient error (an ICMP error queued on the socket, say)
			// does not end the leg.
			e.logger.Warn("rtp read failed", "local", e.local, "err", err)
		}
		return
	}
	if n == len(buf) {
		e.notRTP.Add(1) // truncated: not a G.711 packet
		return
	}
	e.handle(buf[:n], unmapAddrPort(src))
}
