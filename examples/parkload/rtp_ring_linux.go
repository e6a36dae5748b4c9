package main

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ringReceiver counts the hold calls' music from a packet ring instead of
// their sockets: one AF_PACKET socket with a TPACKET_V3 ring that the
// kernel fills with the first bytes of every datagram to the calls' ports,
// each with the time it arrived. Nothing is read per packet: the ring is
// shared memory, walked every batchInterval, and a classic BPF filter keeps
// everything else out of it (and copies 48 bytes of each datagram, enough
// for the RTP header).
//
// Why: at 5,000 calls a recvmsg per packet (epollReceiver) is most of a
// core, on the same two cores as the server being measured, and the
// server's own pacing then waits for a core. The calls' sockets stay bound,
// as a phone's would be (so no datagram meets a closed port), with the
// smallest receive buffer: nothing reads them and the kernel drops what
// they cannot hold, after the tap has seen it.
//
// The tap sees a datagram where the kernel takes it in, just before UDP
// queues it to the socket: the same moment as SO_TIMESTAMPNS. It needs
// CAP_NET_RAW and an IPv4 -local; without either, the tool falls back to
// epollReceiver (-rx auto) or refuses (-rx ring).
type ringReceiver struct {
	m      *holdMeters
	ports  *rtpPorts
	fd     int
	ring   []byte
	blocks int
	byPort []*holdStream // indexed by UDP port
	socks  []int
	drops  atomic.Uint64 // the ring's drops read so far (reading resets the kernel's count)

	rxLoop
}

const (
	ringBlockSize = 1 << 20 // 1 MiB: about 8,000 datagrams cut to 48 bytes (128 bytes a frame)
	ringBlocks    = 32      // a second and more of 250,000 datagrams a second
	// ringRetire is how long the kernel fills a block before handing it
	// over part full; below batchInterval, so each walk finds the packets
	// of the last few milliseconds.
	ringRetire = 4 // ms
	// ringSnap is how much of each datagram the ring keeps: an IPv4 header
	// without options (20), UDP (8), and the RTP header (12) with room.
	ringSnap = 48
)

func newRingReceiver(m *holdMeters, ports *rtpPorts) (*ringReceiver, error) {
	return newRingReceiverBlocks(m, ports, ringBlocks)
}

// newRingReceiverBlocks is newRingReceiver with a ring of blocks blocks.
func newRingReceiverBlocks(m *holdMeters, ports *rtpPorts, blocks int) (*ringReceiver, error) {
	if !ports.ip.Is4() {
		return nil, fmt.Errorf("packet ring: -local %s is not IPv4", ports.ip)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
	if err != nil {
		return nil, fmt.Errorf("packet ring: AF_PACKET socket (needs CAP_NET_RAW): %w", err)
	}
	r := &ringReceiver{m: m, ports: ports, fd: fd, blocks: blocks,
		byPort: make([]*holdStream, 1<<16), rxLoop: newRxLoop()}
	if err := r.setup(); err != nil {
		if r.ring != nil {
			_ = unix.Munmap(r.ring)
		}
		unix.Close(fd)
		return nil, err
	}
	m.kernelTS.Store(true)
	return r, nil
}

func (r *ringReceiver) setup() error {
	// The filter first, so the ring never holds what it would refuse.
	if err := unix.SetsockoptSockFprog(r.fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, ringFilter(r.ports.ip.As4(), r.ports.lo, r.ports.hi)); err != nil {
		return fmt.Errorf("packet ring filter: %w", err)
	}
	// Loopback shows every datagram twice, leaving and arriving: keep the
	// arrival.
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	if err := unix.SetsockoptInt(r.fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fmt.Errorf("TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size: uint32(ringBlockSize), Block_nr: uint32(r.blocks),
		Frame_size: 2048, Frame_nr: uint32(ringBlockSize / 2048 * r.blocks),
		Retire_blk_tov: ringRetire,
	}
	if err := unix.SetsockoptTpacketReq3(r.fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fmt.Errorf("PACKET_RX_RING: %w", err)
	}
	ring, err := unix.Mmap(r.fd, 0, ringBlockSize*r.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_LOCKED)
	if err != nil {
		if ring, err = unix.Mmap(r.fd, 0, ringBlockSize*r.blocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); err != nil {
			return fmt.Errorf("packet ring mmap: %w", err)
		}
	}
	r.ring = ring
	// Bound last: from here on the ring fills.
	if err := unix.Bind(r.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP)}); err != nil {
		return fmt.Errorf("packet socket bind: %w", err)
	}
	return nil
}

// ringFilter is a classic BPF program over an IPv4 packet (the network
// header: a SOCK_DGRAM packet socket has no link header): keep an
// unfragmented UDP datagram to ip on a port from lo to hi, cut to
// ringSnap bytes; drop everything else.
func ringFilter(ip [4]byte, lo, hi int) *unix.SockFprog {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldH  = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldB  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldxM = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		ldHX = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jgt  = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	prog := []unix.SockFilter{
		{Code: ldB, K: 9}, // protocol
		{Code: jeq, K: unix.IPPROTO_UDP, Jf: 8},
		{Code: ldW, K: 16}, // destination address
		{Code: jeq, K: binary.BigEndian.Uint32(ip[:]), Jf: 6},
		{Code: ldH, K: 6}, // flags and fragment offset
		{Code: jset, K: 0x1fff, Jt: 4},
		{Code: ldxM, K: 0}, // X = IPv4 header length
		{Code: ldHX, K: 2}, // UDP destination port
		{Code: jge, K: uint32(lo), Jf: 1},
		{Code: jgt, K: uint32(hi), Jt: 0, Jf: 1},
		{Code: ret, K: 0},
		{Code: ret, K: ringSnap},
	}
	// Every drop above jumps to the "ret 0" at index 10.
	prog[1].Jf = 10 - 2
	prog[3].Jf = 10 - 4
	prog[5].Jt = 10 - 6
	prog[8].Jf = 10 - 9
	return &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (r *ringReceiver) open() (*holdStream, error) {
	fd, port, err := bindSocket(r.ports)
	if err != nil {
		return nil, err
	}
	// Nothing reads it: the smallest buffer makes the kernel drop at once
	// what the ring has already seen. (The kernel raises 0 to its minimum.)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 0)
	s := &holdStream{port: uint16(port)}
	r.byPort[port] = s
	r.socks = append(r.socks, fd)
	return s, nil
}

func (r *ringReceiver) start() { r.run(r.loop) }

// loop walks the ring's blocks in order: a block the kernel has handed over
// (TP_STATUS_USER) is read and given back; the first one still the
// kernel's ends the walk until the next batchInterval.
func (r *ringReceiver) loop() {
	next, last := 0, false
	for {
		for {
			b := r.ring[next*ringBlockSize : (next+1)*ringBlockSize]
			status := (*uint32)(unsafe.Pointer(&b[8])) // tpacket_block_desc.hdr.bh1.block_status
			if atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
				break
			}
			r.block(b)
			atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
			next = (next + 1) % r.blocks
		}
		switch {
		case last:
			return
		case r.quit.Load():
			// One more walk once the kernel has retired the block it
			// was filling: what arrived before stop is counted.
			last = true
			time.Sleep(2 * ringRetire * time.Millisecond)
		default:
			time.Sleep(batchInterval)
		}
	}
}

// block accounts for the datagrams of one handed-over block.
func (r *ringReceiver) block(b []byte) {
	h := (*unix.TpacketHdrV1)(unsafe.Pointer(&b[8]))
	off := int(h.Offset_to_first_pkt)
	for range h.Num_pkts {
		if off <= 0 || off+int(unsafe.Sizeof(unix.Tpacket3Hdr{})) > len(b) {
			return
		}
		p := (*unix.Tpacket3Hdr)(unsafe.Pointer(&b[off]))
		ts := int64(p.Sec)*int64(time.Second) + int64(p.Nsec)
		if n := off + int(p.Net); p.Net > 0 && n+int(p.Snaplen) <= len(b) { // tp_net counts from the packet's header
			r.datagram(b[n:n+int(p.Snaplen)], ts)
		}
		if p.Next_offset == 0 {
			return
		}
		off += int(p.Next_offset)
	}
}

// datagram accounts for one IPv4 datagram the filter kept (cut to
// ringSnap bytes).
func (r *ringReceiver) datagram(ip []byte, ts int64) {
	if len(ip) < 20 {
		return
	}
	ihl := int(ip[0]&0x0f) * 4
	if len(ip) < ihl+8 {
		return
	}
	port := binary.BigEndian.Uint16(ip[ihl+2:])
	if s := r.byPort[port]; s != nil {
		s.packet(r.m, ip[ihl+8:], ts)
	}
}

// overruns reads the ring's drop count: datagrams the filter kept but no
// free block could take.
func (r *ringReceiver) overruns() uint64 {
	if st, err := unix.GetsockoptTpacketStatsV3(r.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		r.drops.Add(uint64(st.Drops))
	}
	return r.drops.Load()
}

func (r *ringReceiver) stop() {
	if !r.halt() {
		return
	}
	for _, fd := range r.socks {
		unix.Close(fd)
	}
	if r.ring != nil {
		_ = unix.Munmap(r.ring)
	}
	unix.Close(r.fd)
}
