//go:build !linux

package media

// Elsewhere than Linux a shared port is read through Go's netpoller by a
// goroutine of its own, and its legs' packets leave one sendto at a time.

func (p *SharedPort) startIO() { p.startNetpoll() }

func (p *SharedPort) stopIO() error { return p.conn.Close() }
