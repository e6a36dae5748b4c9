package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// EndpointOptions describes one call leg's negotiated media (see Negotiated).
type EndpointOptions struct {
	// Remote is where the peer said it receives RTP (its SDP). It may be
	// zero or 0.0.0.0: nothing is sent until the peer's first packet shows
	// where it is (symmetric RTP) or SetRemote gives an address.
	Remote netip.AddrPort
	// Codec is the negotiated codec, PCMU or PCMA.
	Codec Codec
	// PayloadType is the RTP payload type the leg numbered Codec with. Zero
	// means the codec's static type (0 or 8); SDP may bind a dynamic one.
	PayloadType uint8
	// TelephoneEvent is the payload type of telephone-event (RFC 4733) on
	// this leg, 0 if it was not negotiated.
	TelephoneEvent uint8
	// Scheduler paces the leg's hold music. Required.
	Scheduler *Scheduler
	// Logger receives symmetric RTP address changes (Info) and unexpected
	// read errors (Warn). Nil keeps the endpoint silent.
	Logger *slog.Logger
	// SignalingAddr is where the peer's signalling came from. Only an
	// endpoint on a SharedPort uses it: a peer behind NAT, whose SDP names
	// its private address, sends RTP from the NAT's public one, and the
	// leg latches to the first packet from either host (see SharedPort).
	SignalingAddr netip.Addr
	// OnAudio, when set, is handed the payload of each audio packet read
	// from the peer (the negotiated codec's; not telephone-events), from
	// the read loop, before any relay: for a recorder or a test that checks
	// what a phone heard. The slice is valid only during the call.
	// On an SRTP leg it is the decrypted payload.
	OnAudio func(payload []byte)
	// OnPacket, when set, is handed each datagram read from the leg's
	// socket (or attributed to it on a shared port) as it came, before
	// anything else: on an SRTP leg, still encrypted. For a test that
	// checks what crossed the wire. The slice is valid only during the call.
	OnPacket func(pkt []byte)
	// SRTP, when set, makes the leg SRTP (RFC 3711) with these keys
	// (Negotiated.SRTP): what it sends is encrypted with SRTP.Local, what
	// it reads must authenticate under SRTP.Remote or is dropped
	// (EndpointStats.Unauthenticated). Nil is plain RTP.
	SRTP *SRTPKeys
}

// Endpoint is one call leg's RTP port. It owns the UDP socket, learns where
// the peer really sends from (symmetric RTP: the first valid RTP packet from
// another address moves the destination there, which gets through NATs),
// plays hold music through a Scheduler, or relays to another leg (Bridge).
//
// Whatever it sends (music, then relayed audio, then music again) goes out
// under one SSRC with continuous sequence numbers and timestamps that follow
// the wall clock, so the peer sees a single stream.
//
// An Endpoint is safe for concurrent use.
type Endpoint struct {
	conn *net.UDPConn // as handed in; see startIO for who closes it
	sock *Socket      // the Socket the leg borrows (NewSocketEndpoint), or nil
	// released is closed once sock is free again: any Close returns only
	// then, so that whoever hands the socket on after it finds it free.
	released chan struct{}
	// stopRead ends readLoop on a borrowed conn, which Close leaves open
	// (the portable path of a Socket, socket_other.go).
	stopRead atomic.Bool
	out      PacketWriter // where music and relayed packets leave from
	io       endpointIO   // the platform's read path (rxset_linux.go)
	local    netip.AddrPort
	sched    *Scheduler
	logger   *slog.Logger
	onAudio  func([]byte)  // EndpointOptions.OnAudio
	onPacket func([]byte)  // EndpointOptions.OnPacket
	done     chan struct{} // closed when the leg's socket is no longer read

	// shared is the port the leg is on, nil if it has a socket of its own;
	// signal is EndpointOptions.SignalingAddr.
	shared *SharedPort
	signal netip.Addr

	// relay is the Relay this leg is part of. relayMu is held by the read
	// goroutine while it handles a packet, so Relay.Close can wait for an
	// in-flight forward; it is taken before any mu.
	relay   atomic.Pointer[Relay]
	relayMu sync.Mutex

	mu     sync.Mutex
	remote netip.AddrPort
	codec  Codec
	pt     uint8
	tePT   uint8
	tx     txState // the outgoing identity while no music stream holds it
	music  *Stream
	held   bool
	closed bool

	// SRTP (srtp.go): srtpOut encrypts what the leg sends, nil while it is
	// plain; srtpKept is the last one, kept across a plain spell. srtpIn
	// decrypts what it reads; it is set under relayMu and mu and used
	// under relayMu only.
	srtpOut  *srtpOut
	srtpKept *srtpOut
	srtpIn   *srtpIn

	// On a shared port: whether the leg has latched to its peer's source,
	// and the SSRC of the peer's last packet (quarantined with its address
	// when the leg ends).
	latched     bool
	peerSSRC    uint32
	hasPeerSSRC bool

	received      atomic.Uint64
	sent          atomic.Uint64 // relayed packets, and packets of music streams that ended
	notRTP        atomic.Uint64
	unknownPT     atomic.Uint64
	writeErrors   atomic.Uint64
	remoteChanges atomic.Uint64
	unauth        atomic.Uint64
}

// EndpointStats counts a leg's traffic.
type EndpointStats struct {
	// Received is the number of RTP packets read with a payload type this
	// leg negotiated.
	Received uint64
	// Sent is the number of packets written without error: music and audio
	// relayed from the other leg.
	Sent uint64
	// NotRTP is the number of datagrams ignored as not RTP: junk, RTCP,
	// truncated or malformed packets.
	NotRTP uint64
	// UnknownPayloadType is the number of RTP packets dropped because their
	// payload type was not negotiated on this leg.
	UnknownPayloadType uint64
	// WriteErrors is the number of writes that failed, music included.
	WriteErrors uint64
	// RemoteChanges is the number of times symmetric RTP moved the
	// destination to a new source address.
	RemoteChanges uint64
	// Unauthenticated is the number of packets an SRTP leg dropped because
	// they failed authentication or replay checks under the peer's key
	// (plain RTP among them). They move nothing: no symmetric RTP, no
	// latching.
	Unauthenticated uint64
}

// checkFormat validates a leg's codec and payload types and returns the
// audio payload type with the default applied.
func checkFormat(codec Codec, pt, te uint8) (uint8, error) {
	if !codec.Valid() {
		return 0, fmt.Errorf("%w: Codec %v, want PCMU or PCMA", ErrInvalidArgument, codec)
	}
	if pt == 0 {
		pt = codec.PayloadType()
	}
	if pt > 127 || (pt >= 72 && pt <= 76) || (pt != codec.PayloadType() && (pt == PCMU.PayloadType() || pt == PCMA.PayloadType())) {
		return 0, fmt.Errorf("%w: PayloadType %d for %v: want its static type or a free one up to 127, not 72-76 (RTCP)", ErrInvalidArgument, pt, codec)
	}
	if te != 0 && (te > 127 || (te >= 72 && te <= 76) || te == pt) {
		return 0, fmt.Errorf("%w: TelephoneEvent %d: want 0 or a payload type up to 127 other than 72-76 and the audio's %d", ErrInvalidArgument, te, pt)
	}
	return pt, nil
}

// NewEndpoint takes ownership of conn (closed by Close) and starts reading
// it. On error conn is left open and still the caller's.
//
// On Linux the socket leaves Go's netpoller: the endpoint keeps a duplicate
// of its descriptor, read from an epoll set of the Scheduler's (EPOLLIN
// only, a few goroutines for every leg) and written with plain sendto, and
// closes conn at once; the port stays bound until Close. Elsewhere a
// goroutine per leg reads conn.
func NewEndpoint(conn *net.UDPConn, opts EndpointOptions) (*Endpoint, error) {
	if conn == nil {
		return nil, fmt.Errorf("%w: NewEndpoint: conn is nil", ErrInvalidArgument)
	}
	laddr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("%w: NewEndpoint: conn is not bound", ErrInvalidArgument)
	}
	e, err := newEndpoint(conn, laddr.AddrPort(), opts)
	if err != nil {
		return nil, err
	}
	e.startIO()
	return e, nil
}

// newEndpoint checks opts and builds an endpoint on local, without I/O.
func newEndpoint(conn *net.UDPConn, local netip.AddrPort, opts EndpointOptions) (*Endpoint, error) {
	if opts.Scheduler == nil {
		return nil, fmt.Errorf("%w: EndpointOptions.Scheduler is nil", ErrInvalidArgument)
	}
	pt, err := checkFormat(opts.Codec, opts.PayloadType, opts.TelephoneEvent)
	if err != nil {
		return nil, fmt.Errorf("EndpointOptions: %w", err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	e := &Endpoint{
		conn:     conn,
		local:    local,
		signal:   opts.SignalingAddr,
		sched:    opts.Scheduler,
		logger:   logger,
		onAudio:  opts.OnAudio,
		onPacket: opts.OnPacket,
		done:     make(chan struct{}),
		remote:   unmapAddrPort(opts.Remote),
		codec:    opts.Codec,
		pt:       pt,
		tePT:     opts.TelephoneEvent,
		tx:       newTxState(time.Now()),
	}
	if opts.SRTP != nil {
		if err := e.SetSRTP(opts.SRTP); err != nil {
			return nil, fmt.Errorf("EndpointOptions.SRTP: %w", err)
		}
	}
	return e, nil
}

// unmapAddrPort turns an IPv4-mapped IPv6 address (as a dual-stack socket
// reports IPv4 peers) into plain IPv4, so that the same peer compares equal
// whichever way it was written.
func unmapAddrPort(a netip.AddrPort) netip.AddrPort {
	if a.Addr().Is4In6() {
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	return a
}

// LocalAddr returns the address the leg's socket is bound to (its shared
// port's, for a leg on one).
func (e *Endpoint) LocalAddr() netip.AddrPort { return e.local }

// SharedPort returns the port the leg is on, nil if it has a socket of its
// own.
func (e *Endpoint) SharedPort() *SharedPort { return e.shared }

// Remote returns where the leg sends: the SDP address until symmetric RTP
// learns the peer's real one.
func (e *Endpoint) Remote() netip.AddrPort {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remote
}

// Codec returns the leg's codec, so that the caller can pick matching frames
// (clip.Frames(e.Codec())).
func (e *Endpoint) Codec() Codec {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.codec
}

// SSRC returns the synchronisation source the leg sends under, for its
// whole life.
func (e *Endpoint) SSRC() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.tx.ssrc
}

// Stats returns the leg's counters.
func (e *Endpoint) Stats() EndpointStats {
	e.mu.Lock()
	var music StreamStats
	if e.music != nil {
		music = e.music.Stats()
	}
	e.mu.Unlock()
	return EndpointStats{
		Received:           e.received.Load(),
		Sent:               e.sent.Load() + music.Packets,
		NotRTP:             e.notRTP.Load(),
		UnknownPayloadType: e.unknownPT.Load(),
		WriteErrors:        e.writeErrors.Load() + music.WriteErrors,
		RemoteChanges:      e.remoteChanges.Load(),
		Unauthenticated:    e.unauth.Load(),
	}
}

// PlayMusic plays f to the peer until StopMusic, Bridge or Close. The first
// packet carries the marker bit. Frames of the leg's codec are sent as they
// are (pass clip.Frames(e.Codec())); frames of the other codec are
// transcoded per packet. Calling it while music plays switches the audio
// without restarting the stream. While the peer holds the call the music
// starts paused.
//
// Errors: ErrClosed, ErrBridged, ErrInvalidArgument (nil or empty frames).
func (e *Endpoint) PlayMusic(f *Frames) error {
	if f == nil || f.Len() == 0 {
		return fmt.Errorf("%w: PlayMusic: frames are nil or empty", ErrInvalidArgument)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if e.relay.Load() != nil {
		return ErrBridged
	}
	if e.music != nil {
		e.music.setAudio(f, e.codec, e.pt)
		return nil
	}
	st, err := e.sched.play(e.out, e.remote, f, e.codec, e.pt, e.tx, e.held, e.srtpOut)
	if err != nil {
		return err
	}
	e.music = st
	return nil
}

// Announce plays a (a Sequence of prompts) to the peer once, from its
// start, then goes back to the music PlayMusic set, from the start of its
// loop, or to silence if none plays. done is closed when the last frame of
// a has gone, or the announcement was cut short (StopMusic, Bridge, Close,
// another Announce). The SSRC, sequence and timestamp continue as for
// music. Errors: ErrClosed, ErrBridged, ErrInvalidArgument (nil or empty).
func (e *Endpoint) Announce(a *Frames) (done <-chan struct{}, err error) {
	if a == nil || a.Len() == 0 {
		return nil, fmt.Errorf("%w: Announce: frames are nil or empty", ErrInvalidArgument)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if e.relay.Load() != nil {
		return nil, ErrBridged
	}
	if e.music == nil {
		silence := NewFrames(e.codec, make([]int16, SamplesPerFrame))
		st, err := e.sched.play(e.out, e.remote, silence, e.codec, e.pt, e.tx, e.held, e.srtpOut)
		if err != nil {
			return nil, err
		}
		e.music = st
	}
	ch := make(chan struct{})
	e.music.announce(a, ch)
	return ch, nil
}

// StopMusic stops the hold music, if any. It is idempotent.
func (e *Endpoint) StopMusic() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopMusicLocked()
}

// stopMusicLocked stops the music stream and takes its identity back, so
// that what the leg sends next continues the same stream.
func (e *Endpoint) stopMusicLocked() {
	if e.music == nil {
		return
	}
	st := e.music
	e.music = nil
	st.Stop()
	e.tx = st.handoff()
	stats := st.Stats()
	e.sent.Add(stats.Packets)
	e.writeErrors.Add(stats.WriteErrors)
}

// Hold stops sending to the peer, which put the call on hold (a sendonly or
// inactive re-INVITE): the music pauses, relayed packets are dropped.
func (e *Endpoint) Hold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.held = true
	if e.music != nil {
		e.music.Pause()
	}
}

// Unhold sends again after Hold; the next packet carries the marker bit.
func (e *Endpoint) Unhold() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.held {
		return
	}
	e.held = false
	e.tx.marker = true
	if e.music != nil {
		e.music.Resume()
	}
}

// SetRemote sends to addr from now on, for a re-INVITE that moved the
// peer's media. Symmetric RTP still applies: a later packet from another
// address moves the destination again.
func (e *Endpoint) SetRemote(addr netip.AddrPort) {
	addr = unmapAddrPort(addr)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.remote = addr
	if e.music != nil {
		e.music.SetDestination(addr)
	}
	if e.shared != nil && !e.closed {
		e.latched = false // the peer moved: wait for its first packet again
		e.shared.set(e, addr, true)
	}
}

// SetCodec applies a re-INVITE that changed the leg's codec or payload types
// (same rules as EndpointOptions). Music goes on, transcoded if its frames
// are of the other codec; call PlayMusic with matching frames to avoid that.
//
// Errors: ErrInvalidArgument, ErrClosed.
func (e *Endpoint) SetCodec(codec Codec, payloadType, telephoneEvent uint8) error {
	pt, err := checkFormat(codec, payloadType, telephoneEvent)
	if err != nil {
		return fmt.Errorf("SetCodec: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	e.codec, e.pt, e.tePT = codec, pt, telephoneEvent
	if e.music != nil {
		e.music.setFormat(codec, pt)
	}
	return nil
}

// Close stops the music and any relay, closes the socket and waits until it
// is no longer read. It is idempotent and returns nil, or the socket's close
// error the first time.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		if e.sock != nil {
			<-e.released // the Socket is free for the next endpoint
		} else {
			<-e.done
		}
		return nil
	}
	e.closed = true
	e.stopMusicLocked()
	e.mu.Unlock()
	if r := e.relay.Load(); r != nil {
		_ = r.Close() // Relay.Close always returns nil.
	}
	if p := e.shared; p != nil {
		e.mu.Lock()
		remote, ssrc, has := e.remote, e.peerSSRC, e.hasPeerSSRC
		e.mu.Unlock()
		p.unregister(e, remote, ssrc, has)
		return nil
	}
	err := e.stopIO()
	<-e.done
	if e.sock != nil {
		e.sock.busy.Store(false)
		close(e.released)
	}
	return err
}

// startNetpoll is the portable read path: a goroutine of the leg's own
// blocks in Go's netpoller on conn, and packets leave through conn.
func (e *Endpoint) startNetpoll() {
	e.out = e.conn
	go e.readLoop()
}

// stopNetpoll closes conn, which ends readLoop, and waits for it.
func (e *Endpoint) stopNetpoll() error {
	err := e.conn.Close()
	<-e.done
	return err
}

// readLoop reads the socket until it is closed. Every datagram goes through
// handle.
func (e *Endpoint) readLoop() {
	defer close(e.done)
	readUDP(e.conn, e.logger, e.local, &e.notRTP, &e.stopRead, e.handle)
}

// readUDP reads conn until it is closed, through Go's netpoller, handing
// every datagram to handle with its source; one that fills the buffer is
// no G.711 packet of ours and only counted in truncated. A transient error
// (an ICMP error queued on the socket, say) is logged, not the end. The
// buffer is reused: reading allocates nothing per packet. A conn that is
// not closed at the end is given a past read deadline after stop is set.
func readUDP(conn *net.UDPConn, logger *slog.Logger, local netip.AddrPort, truncated *atomic.Uint64, stop *atomic.Bool, handle func([]byte, netip.AddrPort)) {
	buf := make([]byte, readBufferSize)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || (stop != nil && stop.Load()) {
				return
			}
			logger.Warn("rtp read failed", "local", local, "err", err)
			continue
		}
		if n == len(buf) {
			truncated.Add(1)
			continue
		}
		handle(buf[:n], unmapAddrPort(src))
	}
}

// handle takes one datagram read from the leg: it ignores what is not RTP
// of a negotiated payload type, learns the peer's address, and relays the
// packet if the leg is bridged (otherwise, music or not, it is discarded).
func (e *Endpoint) handle(pkt []byte, src netip.AddrPort) {
	if e.onPacket != nil {
		e.onPacket(pkt)
	}
	if !rtpHeaderOK(pkt) {
		e.notRTP.Add(1)
		return
	}
	e.relayMu.Lock()
	defer e.relayMu.Unlock()
	if in := e.srtpIn; in != nil {
		// Before anything else looks at it: a packet that does not
		// authenticate must not move the leg (symmetric RTP, latching).
		var err error
		if pkt, err = in.unprotect(pkt); err != nil {
			e.unauth.Add(1)
			return
		}
	}
	v, ok := parseRTP(pkt)
	if !ok {
		e.notRTP.Add(1)
		return
	}
	r := e.relay.Load()
	if r != nil && r.state.Load() != relayActive {
		r = nil // Bridge is still stopping the music
	}

	e.mu.Lock()
	event := e.tePT != 0 && v.payloadType == e.tePT
	if !event && v.payloadType != e.pt {
		e.mu.Unlock()
		e.unknownPT.Add(1)
		if r != nil {
			r.drop(e, v)
		}
		return
	}
	e.received.Add(1)
	if e.shared != nil {
		e.peerSSRC, e.hasPeerSSRC = v.ssrc, true
	}
	// On a shared port a latched leg only hears its peer's address, so
	// only a leg waiting for its peer moves here.
	if src != e.remote && !e.closed && (e.shared == nil || !e.latched) {
		old := e.remote
		e.remote = src
		e.remoteChanges.Add(1)
		if e.music != nil {
			e.music.SetDestination(src)
		}
		e.logger.Info("rtp peer address changed (symmetric RTP)", "local", e.local, "from", old, "to", src)
	}
	if e.shared != nil && !e.latched && !e.closed {
		e.latched = true
		e.shared.set(e, src, false)
	}
	codec := e.codec
	e.mu.Unlock()

	if e.onAudio != nil && !event {
		e.onAudio(pkt[v.payloadStart:v.payloadEnd])
	}
	if r != nil {
		r.forward(e, pkt, v, event, codec)
	}
}
