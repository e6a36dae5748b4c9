//go:build linux

package media

// On Linux a shared port leaves Go's netpoller as a leg's own socket does
// (rxset_linux.go): a duplicate descriptor read from one of the
// scheduler's epoll sets, and its legs' music leaves in sendmmsg batches
// (batch_linux.go).

// startIO takes the port's socket out of Go's netpoller, or falls back to
// the portable path.
func (p *SharedPort) startIO() {
	if p.sched.portableIO {
		p.startNetpoll()
		return
	}
	raw, err := dupSocket(p.conn)
	if err != nil {
		p.logger.Debug("shared rtp port stays in Go's netpoller", "local", p.local, "err", err)
		p.startNetpoll()
		return
	}
	p.io.raw, p.out = raw, raw
	if err := p.sched.rx.add(&p.io, p, len(p.sched.shards), p.sched); err != nil {
		p.io.raw, p.out = nil, nil
		_ = raw.close()
		p.logger.Debug("shared rtp port stays in Go's netpoller", "local", p.local, "err", err)
		p.startNetpoll()
		return
	}
	_ = p.conn.Close()
}

// stopIO stops reading the port and closes its socket; the caller waits on
// p.done.
func (p *SharedPort) stopIO() error {
	if p.io.raw == nil {
		return p.conn.Close()
	}
	p.sched.rx.remove(&p.io)
	err := p.io.raw.close()
	close(p.done)
	return err
}

// sharedReadsPerWake bounds how many datagrams one readiness of the port
// reads before the set's goroutine serves its other sockets.
const sharedReadsPerWake = 64

// readRaw reads what is queued on the port, up to sharedReadsPerWake
// datagrams, and hands each to its leg.
func (p *SharedPort) readRaw(buf []byte) {
	p.io.mu.Lock()
	defer p.io.mu.Unlock()
	for range sharedReadsPerWake {
		if p.io.closed {
			return
		}
		n, src, err := p.io.raw.recvFrom(buf)
		if err != nil {
			if !isTemporary(err) {
				p.logger.Warn("rtp read failed", "local", p.local, "err", err)
			}
			return
		}
		if n == len(buf) {
			p.unknown.Add(1) // truncated: no G.711 packet of any leg
			continue
		}
		p.dispatch(buf[:n], unmapAddrPort(src))
	}
}
