//go:build linux

package media

import (
	"net"
	"net/netip"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux the music of legs on a SharedPort leaves in batches: each shard
// builds the round's due packets for the port in its sendBatch and hands
// them to the kernel with one sendmmsg per batchSize packets, instead of
// one sendto per packet. The batch is preallocated per shard (packets,
// iovecs, addresses, message headers), so batching allocates nothing.

// batchSize is how many packets one sendmmsg carries at most: 64 packets
// of 172 bytes, far below the socket's send buffer, and at 250,000 packets
// a second about 4,000 system calls instead of 250,000.
const batchSize = 64

// mmsghdr is struct mmsghdr of <sys/socket.h>: a message and, on return,
// the bytes sent. Go lays it out as C does (padding to the alignment of
// Msghdr).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// sendBatch is a shard's packets waiting for one shared port's sendmmsg.
type sendBatch struct {
	port    *SharedPort
	n       int
	msgs    [batchSize]mmsghdr
	iovs    [batchSize]unix.Iovec
	names   [batchSize]unix.RawSockaddrInet6 // or an Inet4, by the socket's family
	bufs    [batchSize][packetBufferSize]byte
	streams [batchSize]*Stream
	octets  [batchSize]int
}

// batchBuffer returns the buffer the next packet to w is built in when w is
// a shared port whose sends are batched, or nil: send it now. A batch for
// another port, or a full one, is flushed first.
func (sh *shard) batchBuffer(w PacketWriter) []byte {
	p, ok := w.(*SharedPort)
	if !ok || p.io.raw == nil {
		return nil
	}
	b := sh.batch
	if b == nil {
		b = new(sendBatch)
		sh.batch = b
	}
	if b.n > 0 && (b.port != p || b.n == batchSize) {
		sh.flushBatch()
	}
	b.port = p
	return b.bufs[b.n][:]
}

// batchPush queues the packet just built in batchBuffer's buffer, size
// bytes of which octets are payload, for dst. An address the socket
// cannot reach is the write's error, as sendto would return it.
func (sh *shard) batchPush(st *Stream, size, octets int, dst netip.AddrPort) error {
	b := sh.batch
	i := b.n
	salen, err := putSockaddr(&b.names[i], b.port.io.raw.family, dst)
	if err != nil {
		return err
	}
	b.iovs[i].Base = &b.bufs[i][0]
	b.iovs[i].SetLen(size)
	b.msgs[i] = mmsghdr{hdr: unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Namelen: salen, Iov: &b.iovs[i]}}
	b.msgs[i].hdr.SetIovlen(1)
	b.streams[i], b.octets[i] = st, octets
	st.inBatch.Store(true)
	b.n++
	return nil
}

// flushBatch sends the batch and counts each packet's result on its
// stream. sendmmsg stops at the first message that fails and reports how
// many went before it; that one is counted as a write error and the rest
// are sent again.
func (sh *shard) flushBatch() {
	b := sh.batch
	if b == nil || b.n == 0 {
		return
	}
	raw := b.port.io.raw
	raw.mu.RLock()
	for off := 0; off < b.n; {
		if raw.closed {
			for ; off < b.n; off++ {
				b.done(sh, off, net.ErrClosed)
			}
			break
		}
		// A raw system call, as sendto's (rawsock_linux.go): the shard keeps
		// its P through the batch instead of the runtime handing it off
		// after 20 us and the shard queueing for it again on return, which
		// made packets late by up to a scheduling quantum.
		r, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(raw.fd), uintptr(unsafe.Pointer(&b.msgs[off])), uintptr(b.n-off), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
		case errno != 0 || r == 0:
			if errno == 0 {
				errno = unix.EAGAIN // not documented; never loop on it
			}
			b.done(sh, off, os.NewSyscallError("sendmmsg", errno))
			off++
		default:
			for end := off + int(r); off < end; off++ {
				b.done(sh, off, nil)
			}
		}
	}
	raw.mu.RUnlock()
	b.n = 0
}

// done counts the write of the batch's packet i.
func (b *sendBatch) done(sh *shard, i int, err error) {
	st := b.streams[i]
	b.streams[i] = nil
	st.result(sh, err, b.octets[i])
	st.inBatch.Store(false)
}

// putSockaddr writes addr into sa as a socket of family wants it (an
// IPv4 address IPv4-mapped for an AF_INET6 socket) and returns its length.
func putSockaddr(sa *unix.RawSockaddrInet6, family int, addr netip.AddrPort) (uint32, error) {
	a := addr.Addr()
	switch {
	case !a.IsValid():
		return 0, errAddressFamily
	case family == unix.AF_INET:
		if !a.Unmap().Is4() {
			return 0, errAddressFamily
		}
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.Unmap().As4()}
		putPort(&sa4.Port, addr.Port())
		return unix.SizeofSockaddrInet4, nil
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	putPort(&sa.Port, addr.Port())
	return unix.SizeofSockaddrInet6, nil
}
