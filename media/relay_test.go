package media

import (
	"bytes"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// bridgeFixture is two phones, each with its leg on the server, the legs
// playing music until bridged.
type bridgeFixture struct {
	phoneA, phoneB *phone
	a, b           *Endpoint
	// lastA and lastB are the last music packets each phone heard.
	lastA, lastB rtp.Packet
}

func newBridgeFixture(t *testing.T, aOpts, bOpts EndpointOptions) *bridgeFixture {
	t.Helper()
	s := newTestScheduler(t)
	f := &bridgeFixture{phoneA: newPhone(t), phoneB: newPhone(t)}
	f.phoneB.ssrc = 0x5eed
	aOpts.Remote, aOpts.Scheduler = f.phoneA.addr(), s
	bOpts.Remote, bOpts.Scheduler = f.phoneB.addr(), s
	f.a = newTestEndpoint(t, aOpts)
	f.b = newTestEndpoint(t, bOpts)
	require.NoError(t, f.a.PlayMusic(testFrames(aOpts.Codec, 2)))
	require.NoError(t, f.b.PlayMusic(testFrames(bOpts.Codec, 2)))
	f.phoneA.read()
	f.phoneB.read()
	return f
}

// bridge bridges the legs and reads the rest of the music each phone was
// sent, keeping the last packet.
func (f *bridgeFixture) bridge(t *testing.T) *Relay {
	t.Helper()
	r, err := Bridge(f.a, f.b)
	require.NoError(t, err)
	f.lastA = drainMusic(t, f.phoneA, f.a)
	f.lastB = drainMusic(t, f.phoneB, f.b)
	return r
}

// drainMusic reads the music packets e sent to p beyond the one already
// read, and returns the last. The music has stopped, so the count is final.
func drainMusic(t *testing.T, p *phone, e *Endpoint) rtp.Packet {
	t.Helper()
	sent := e.Stats().Sent
	require.Positive(t, sent)
	var last rtp.Packet
	for range sent - 1 {
		last = p.read()
	}
	if sent == 1 {
		// Only the packet read before bridging: ask the endpoint's state.
		e.mu.Lock()
		last.SSRC, last.SequenceNumber, last.Timestamp = e.tx.ssrc, e.tx.seq-1, e.tx.lastTS
		e.mu.Unlock()
	}
	return last
}

// inject hands pkt to the leg as if its read goroutine had read it from
// from: synchronous, so a test knows it was handled before its next step.
func inject(e *Endpoint, from *phone, pkt []byte) {
	e.handle(pkt, from.addr())
}

// sine returns n samples of a 440 Hz tone starting at sample offset.
func sine(offset, n int) []int16 {
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(offset+i)/SampleRate))
	}
	return pcm
}

func encode(c Codec, pcm []int16) []byte {
	b := make([]byte, len(pcm))
	c.Encode(b, pcm)
	return b
}

func TestBridgeRelaysAndTranscodes(t *testing.T) {
	tests := []struct {
		a, b   Codec
		bPT    uint8
		wantPT uint8
	}{
		{PCMU, PCMA, 0, 8},
		{PCMA, PCMU, 0, 0},
		{PCMU, PCMU, 0, 0},
		{PCMA, PCMA, 0, 8},
		{PCMU, PCMA, 97, 97},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v-%v/%d", tt.a, tt.b, tt.bPT), func(t *testing.T) {
			verifyNoLeaks(t)
			f := newBridgeFixture(t, EndpointOptions{Codec: tt.a}, EndpointOptions{Codec: tt.b, PayloadType: tt.bPT})
			r := f.bridge(t)

			// Over the network: phone A talks, phone B hears.
			const packets = 5
			var sent [][]byte
			var pcm [][]int16
			for i := range packets {
				samples := sine(i*SamplesPerFrame, SamplesPerFrame)
				payload := encode(tt.a, samples)
				pkt := rtp.Packet{Header: rtp.Header{
					Version: 2, PayloadType: tt.a.PayloadType(), Marker: i == 0,
					SequenceNumber: f.phoneA.seq, Timestamp: f.phoneA.ts, SSRC: f.phoneA.ssrc,
				}, Payload: payload}
				if i == 2 {
					// CSRCs, an extension and padding must not reach phone B.
					pkt.CSRC = []uint32{1, 2, 3}
					require.NoError(t, pkt.SetExtension(3, []byte{9, 9, 9}))
					pkt.Padding, pkt.PaddingSize = true, 8
				}
				f.phoneA.seq++
				f.phoneA.ts += SamplesPerFrame
				f.phoneA.sendTo(f.a.LocalAddr(), rtpBytes(t, pkt))
				sent = append(sent, payload)
				pcm = append(pcm, samples)
			}
			got := f.phoneB.readN(packets)
			for i, p := range got {
				require.Equal(t, tt.wantPT, p.PayloadType)
				require.Equal(t, f.b.SSRC(), p.SSRC, "one SSRC for the leg's life")
				require.Equal(t, f.lastB.SSRC, p.SSRC)
				require.Equal(t, f.lastB.SequenceNumber+1+uint16(i), p.SequenceNumber, "sequence continues from the music")
				require.Equal(t, i == 0, p.Marker, "marker on the first relayed packet only")
				require.Empty(t, p.CSRC)
				require.False(t, p.Extension)
				require.False(t, p.Padding)
				require.Len(t, p.Payload, SamplesPerFrame)
				want := bytes.Clone(sent[i])
				Transcode(want, tt.a, tt.b)
				require.Equal(t, want, p.Payload)
				decoded := make([]int16, SamplesPerFrame)
				tt.b.Decode(decoded, p.Payload)
				for k, s := range pcm[i] {
					diff := math.Abs(float64(decoded[k]) - float64(s))
					require.LessOrEqualf(t, diff, math.Abs(float64(s))/8+32, "packet %d sample %d", i, k)
				}
			}
			step := got[0].Timestamp - f.lastB.Timestamp
			require.GreaterOrEqual(t, step, uint32(SamplesPerFrame), "timestamps continue after the music's")
			require.Less(t, step, uint32(10*SampleRate))
			for i := 1; i < packets; i++ {
				require.Equal(t, uint32(SamplesPerFrame), got[i].Timestamp-got[i-1].Timestamp)
			}

			// And back: phone B talks, phone A hears under leg a's identity.
			f.phoneB.sendTo(f.b.LocalAddr(), f.phoneB.packet(tt.wantPT, false, encode(tt.b, sine(0, SamplesPerFrame))))
			back := f.phoneA.read()
			require.Equal(t, tt.a.PayloadType(), back.PayloadType)
			require.Equal(t, f.a.SSRC(), back.SSRC)
			require.Equal(t, f.lastA.SequenceNumber+1, back.SequenceNumber)
			require.True(t, back.Marker)

			// Close waits for a forward in progress: its counters are final.
			require.NoError(t, r.Close())
			stats := r.Stats()
			require.Equal(t, uint64(packets), stats.AToB.Packets)
			require.Equal(t, uint64(packets*SamplesPerFrame), stats.AToB.Octets)
			require.Equal(t, uint64(1), stats.BToA.Packets)
			wantTranscoded := uint64(0)
			if tt.a != tt.b {
				wantTranscoded = packets
			}
			require.Equal(t, wantTranscoded, stats.AToB.Transcoded)
			require.Zero(t, stats.AToB.Dropped)
		})
	}
}

func TestBridgeTelephoneEvents(t *testing.T) {
	audio := make([]byte, SamplesPerFrame)
	event := func(end bool, duration uint16) []byte {
		e := byte(0)
		if end {
			e = 0x80
		}
		return []byte{5, e | 10, byte(duration >> 8), byte(duration)} // digit 5, volume 10
	}
	tests := []struct {
		name    string
		aTE     uint8
		bTE     uint8
		wantPTs []uint8 // what phone B receives, in order
		wantMks []bool
		dropped uint64
		events  uint64
	}{
		{
			name: "rewritten to the other leg's type",
			aTE:  101, bTE: 96,
			wantPTs: []uint8{8, 96, 96, 96, 8},
			wantMks: []bool{true, true, false, false, false},
			events:  3,
		},
		{
			name: "dropped when the other leg has none",
			aTE:  101, bTE: 0,
			wantPTs: []uint8{8, 8},
			wantMks: []bool{true, false},
			dropped: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verifyNoLeaks(t)
			f := newBridgeFixture(t, EndpointOptions{Codec: PCMU, TelephoneEvent: tt.aTE}, EndpointOptions{Codec: PCMA, TelephoneEvent: tt.bTE})
			r := f.bridge(t)
			p := f.phoneA
			inject(f.a, p, p.packet(0, false, audio))
			// An event keeps one timestamp (its start) over its packets.
			inject(f.a, p, p.packet(tt.aTE, true, event(false, 160)))
			p.ts -= SamplesPerFrame
			inject(f.a, p, p.packet(tt.aTE, false, event(false, 320)))
			p.ts -= SamplesPerFrame
			inject(f.a, p, p.packet(tt.aTE, false, event(true, 480)))
			inject(f.a, p, p.packet(0, false, audio))

			got := f.phoneB.readN(len(tt.wantPTs))
			for i, pkt := range got {
				require.Equalf(t, tt.wantPTs[i], pkt.PayloadType, "packet %d", i)
				require.Equalf(t, tt.wantMks[i], pkt.Marker, "packet %d marker", i)
				require.Equal(t, f.lastB.SequenceNumber+1+uint16(i), pkt.SequenceNumber, "no gap, even for dropped events")
				if pkt.PayloadType == tt.bTE && tt.bTE != 0 {
					require.Len(t, pkt.Payload, 4, "events are not transcoded")
					require.Equal(t, byte(5), pkt.Payload[0])
					require.Equal(t, got[1].Timestamp, pkt.Timestamp, "one timestamp per event")
				}
			}
			stats := r.Stats().AToB
			require.Equal(t, tt.dropped, stats.Dropped)
			require.Equal(t, tt.events, stats.Events)
		})
	}
}

func TestBridgeDropsUnknownPayloadTypes(t *testing.T) {
	verifyNoLeaks(t)
	f := newBridgeFixture(t, EndpointOptions{Codec: PCMA}, EndpointOptions{Codec: PCMA})
	r := f.bridge(t)
	p := f.phoneA
	inject(f.a, p, p.packet(8, false, make([]byte, SamplesPerFrame)))
	inject(f.a, p, p.packet(13, false, []byte{40})) // comfort noise, not negotiated
	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	inject(f.a, p, p.packet(8, false, make([]byte, SamplesPerFrame)))
	got := f.phoneB.readN(2)
	require.Equal(t, got[0].SequenceNumber+1, got[1].SequenceNumber)
	require.Equal(t, uint64(2), r.Stats().AToB.Dropped)
	require.Equal(t, uint64(2), f.a.Stats().UnknownPayloadType)
}

func TestBridgeHold(t *testing.T) {
	verifyNoLeaks(t)
	f := newBridgeFixture(t, EndpointOptions{Codec: PCMU}, EndpointOptions{Codec: PCMU})
	r := f.bridge(t)
	p := f.phoneA
	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	before := f.phoneB.read()

	f.b.Hold() // phone B put the call on hold: send it nothing
	for range 3 {
		inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	}
	f.b.Unhold()
	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	got := f.phoneB.readN(2)
	require.True(t, got[0].Marker, "marker after the hold")
	require.False(t, got[1].Marker)
	require.Equal(t, before.SequenceNumber+1, got[0].SequenceNumber, "no gap over the hold")
	require.Equal(t, before.Timestamp+4*SamplesPerFrame, got[0].Timestamp, "timestamps keep the sender's clock")
	require.Equal(t, uint64(3), r.Stats().AToB.Dropped)
}

func TestBridgeFollowsSymmetricRTP(t *testing.T) {
	verifyNoLeaks(t)
	f := newBridgeFixture(t, EndpointOptions{Codec: PCMU}, EndpointOptions{Codec: PCMU})
	f.bridge(t)
	moved := newPhone(t) // phone B's NAT gave it a new port
	f.b.handle(moved.packet(0, false, make([]byte, SamplesPerFrame)), moved.addr())
	inject(f.a, f.phoneA, f.phoneA.packet(0, false, make([]byte, SamplesPerFrame)))
	got := moved.read()
	require.Equal(t, f.b.SSRC(), got.SSRC)
	require.Equal(t, moved.addr(), f.b.Remote())
	// Phone B's packet went to phone A.
	require.Equal(t, f.a.SSRC(), f.phoneA.read().SSRC)
}

func TestBridgeErrors(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	opts := EndpointOptions{Codec: PCMU, Scheduler: s}
	a, b, c := newTestEndpoint(t, opts), newTestEndpoint(t, opts), newTestEndpoint(t, opts)
	closed := newTestEndpoint(t, opts)
	require.NoError(t, closed.Close())

	_, err := Bridge(a, a)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = Bridge(nil, a)
	require.ErrorIs(t, err, ErrInvalidArgument)
	_, err = Bridge(a, closed)
	require.ErrorIs(t, err, ErrClosed)

	r, err := Bridge(a, b)
	require.NoError(t, err, "a failed Bridge leaves the endpoints free")
	_, err = Bridge(c, b)
	require.ErrorIs(t, err, ErrBridged)
	_, err = Bridge(a, c)
	require.ErrorIs(t, err, ErrBridged)
	require.ErrorIs(t, a.PlayMusic(testFrames(PCMU, 1)), ErrBridged)

	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "Close is idempotent")
	r2, err := Bridge(c, b)
	require.NoError(t, err, "a closed relay frees its endpoints")
	require.NoError(t, r2.Close())
}

// After the relay closes, nothing is relayed and music can start again on
// the same stream.
func TestRelayCloseThenMusicContinuesStream(t *testing.T) {
	verifyNoLeaks(t)
	f := newBridgeFixture(t, EndpointOptions{Codec: PCMU}, EndpointOptions{Codec: PCMA})
	r := f.bridge(t)
	p := f.phoneA
	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	relayed := f.phoneB.read()
	require.NoError(t, r.Close())

	inject(f.a, p, p.packet(0, false, make([]byte, SamplesPerFrame)))
	require.Equal(t, uint64(1), r.Stats().AToB.Packets, "nothing relayed after Close")
	require.NoError(t, f.b.PlayMusic(testFrames(PCMA, 1)))
	music := f.phoneB.read()
	require.Equal(t, relayed.SSRC, music.SSRC)
	require.Equal(t, relayed.SequenceNumber+1, music.SequenceNumber)
	require.True(t, music.Marker)
	require.GreaterOrEqual(t, music.Timestamp-relayed.Timestamp, uint32(SamplesPerFrame))
	require.Less(t, music.Timestamp-relayed.Timestamp, uint32(10*SampleRate))
}

func TestEndpointCloseEndsRelay(t *testing.T) {
	verifyNoLeaks(t)
	f := newBridgeFixture(t, EndpointOptions{Codec: PCMU}, EndpointOptions{Codec: PCMU})
	r := f.bridge(t)
	require.NoError(t, f.a.Close())
	require.NoError(t, r.Close())
	// Phone B's leg is free for music again (a re-park).
	require.NoError(t, f.b.PlayMusic(testFrames(PCMU, 1)))
	require.True(t, f.phoneB.read().Marker)
}

// Bridge, Close and packet handling racing each other must leave the
// endpoints consistent (and the race detector quiet).
func TestBridgeRacesClose(t *testing.T) {
	verifyNoLeaks(t)
	s := newTestScheduler(t)
	for range 20 {
		phoneA := newPhone(t)
		opts := EndpointOptions{Codec: PCMU, Scheduler: s, Remote: phoneA.addr()}
		a, b := newTestEndpoint(t, opts), newTestEndpoint(t, opts)
		require.NoError(t, a.PlayMusic(testFrames(PCMU, 1)))
		pkts := make([][]byte, 10)
		for i := range pkts {
			pkts[i] = phoneA.packet(0, false, make([]byte, SamplesPerFrame))
		}
		var wg sync.WaitGroup
		var bridgeErr error
		wg.Go(func() { _, bridgeErr = Bridge(a, b) })
		wg.Go(func() { _ = a.Close() })
		wg.Go(func() {
			for _, pkt := range pkts {
				a.handle(pkt, phoneA.addr())
			}
		})
		wg.Wait()
		if bridgeErr != nil {
			require.ErrorIs(t, bridgeErr, ErrClosed)
		}
		require.NoError(t, b.PlayMusic(testFrames(PCMU, 1)), "a closed leg frees its partner")
		require.NoError(t, b.Close())
	}
	require.Zero(t, s.Stats().Streams)
}

// FuzzRewriteRelayed relays arbitrary datagrams: whatever parseRTP accepts
// must come out as a clean RTP packet (12-byte header, the leg's SSRC and
// payload type, no CSRC, extension or padding) carrying the transcoded
// payload.
func FuzzRewriteRelayed(f *testing.F) {
	f.Add(rtpBytes(f, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 9}, Payload: make([]byte, 160)}), false, true)
	f.Add([]byte{0xb1, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 9, 9, 2}, true, false)
	f.Fuzz(func(t *testing.T, pkt []byte, fromPCMA, toPCMA bool) {
		v, ok := parseRTP(pkt)
		if !ok {
			return
		}
		from, to := PCMU, PCMU
		if fromPCMA {
			from = PCMA
		}
		if toPCMA {
			to = PCMA
		}
		want := bytes.Clone(pkt[v.payloadStart:v.payloadEnd])
		Transcode(want, from, to)
		tx := txState{ssrc: 0xfeedface, seq: 7, sent: true}
		seq, ts, first := tx.mapRelayed(v, tx.clock.at)
		hdr := rtp.Header{Version: 2, Marker: first, PayloadType: to.PayloadType(), SequenceNumber: seq, Timestamp: ts, SSRC: tx.ssrc}
		out := rewriteRelayed(pkt, v, &hdr, from, to)
		var p rtp.Packet
		if err := p.Unmarshal(out); err != nil {
			t.Fatalf("relayed packet does not parse: %v", err)
		}
		if len(out) != rtpHeaderSize+len(want) || p.SSRC != tx.ssrc || p.PayloadType != to.PayloadType() ||
			p.SequenceNumber != 7 || !p.Marker || len(p.CSRC) != 0 || p.Extension || p.Padding {
			t.Fatalf("bad relayed header %+v (%d bytes)", p.Header, len(out))
		}
		if !bytes.Equal(p.Payload, want) {
			t.Fatalf("payload %x, want %x", p.Payload, want)
		}
	})
}
