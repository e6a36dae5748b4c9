package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// rtpBytes marshals a packet with pion, for tests.
func rtpBytes(t testing.TB, p rtp.Packet) []byte {
	t.Helper()
	b, err := p.Marshal()
	require.NoError(t, err)
	return b
}

func TestParseRTP(t *testing.T) {
	payload := bytes.Repeat([]byte{0x55}, SamplesPerFrame)
	withExtension := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: 7, Timestamp: 1600, SSRC: 0xdeadbeef, CSRC: []uint32{1, 2}}, Payload: payload}
	require.NoError(t, withExtension.SetExtension(1, []byte{0xaa, 0xbb}))
	withPadding := rtpBytes(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, Padding: true, PaddingSize: 4}, Payload: payload})

	tests := []struct {
		name    string
		pkt     []byte
		ok      bool
		want    rtpView
		payload []byte
	}{
		{
			name: "plain G.711",
			pkt:  rtpBytes(t, rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 0, SequenceNumber: 65535, Timestamp: 4294967200, SSRC: 42}, Payload: payload}),
			ok:   true,
			want: rtpView{marker: true, payloadType: 0, seq: 65535, timestamp: 4294967200, ssrc: 42, payloadStart: 12, payloadEnd: 172},
		},
		{
			name: "CSRCs and a one-byte extension are skipped",
			pkt:  rtpBytes(t, withExtension),
			ok:   true,
			want: rtpView{payloadType: 8, seq: 7, timestamp: 1600, ssrc: 0xdeadbeef, payloadStart: 12 + 8 + 8, payloadEnd: 12 + 8 + 8 + 160},
		},
		{
			name: "padding is cut off",
			pkt:  withPadding,
			ok:   true,
			want: rtpView{payloadStart: 12, payloadEnd: 172},
		},
		{name: "header only", pkt: rtpBytes(t, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 101}}), ok: true, want: rtpView{payloadType: 101, payloadStart: 12, payloadEnd: 12}},
		{name: "empty", pkt: nil},
		{name: "short", pkt: []byte{0x80, 0x00, 0x00}},
		{name: "version 1", pkt: append([]byte{0x40, 0x00}, make([]byte, 170)...)},
		{name: "version 0 (STUN)", pkt: append([]byte{0x00, 0x01}, make([]byte, 18)...)},
		{name: "RTCP sender report", pkt: append([]byte{0x80, 200}, make([]byte, 26)...)},
		{name: "RTCP receiver report", pkt: append([]byte{0x81, 201}, make([]byte, 30)...)},
		{name: "RTCP BYE", pkt: append([]byte{0x81, 203}, make([]byte, 6)...)},
		{name: "CSRC count past the end", pkt: append([]byte{0x8f, 0x00}, make([]byte, 20)...)},
		{name: "extension header past the end", pkt: append([]byte{0x90, 0x00}, make([]byte, 12)...)},
		{name: "extension length past the end", pkt: append(append([]byte{0x90, 0x00}, make([]byte, 10)...), 0xbe, 0xde, 0x00, 0x09, 1, 2, 3, 4)},
		{name: "padding count zero", pkt: append(append([]byte{0xa0, 0x00}, make([]byte, 10)...), 1, 2, 0)},
		{name: "padding longer than the payload", pkt: append(append([]byte{0xa0, 0x00}, make([]byte, 10)...), 1, 2, 9)},
		{name: "padding bit without a byte", pkt: append([]byte{0xa0, 0x00}, make([]byte, 10)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := parseRTP(tt.pkt)
			require.Equal(t, tt.ok, ok)
			if !tt.ok {
				return
			}
			require.Equal(t, tt.want, v)
		})
	}
}

// FuzzParseRTP checks parseRTP against pion's parser: whatever pion reads
// (RTCP aside) parseRTP reads the same way, and what parseRTP accepts lies
// within the packet.
func FuzzParseRTP(f *testing.F) {
	f.Add(rtpBytes(f, rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 9}, Payload: make([]byte, 160)}))
	f.Add([]byte{0x80, 200, 0, 6})
	f.Add([]byte{0xb1, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 9, 9, 2})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		v, ok := parseRTP(pkt)
		var p rtp.Packet
		pionErr := p.Unmarshal(pkt)
		rtcp := len(pkt) > 1 && pkt[1]&0x7f >= 72 && pkt[1]&0x7f <= 76
		if pionErr == nil && p.Version == 2 && !rtcp {
			if !ok {
				t.Fatalf("pion reads %x, parseRTP does not", pkt)
			}
			if v.payloadType != p.PayloadType || v.seq != p.SequenceNumber || v.timestamp != p.Timestamp || v.ssrc != p.SSRC || v.marker != p.Marker {
				t.Fatalf("header differs from pion's: %+v vs %+v", v, p.Header)
			}
			if !bytes.Equal(pkt[v.payloadStart:v.payloadEnd], p.Payload) {
				t.Fatalf("payload [%d:%d] differs from pion's %x", v.payloadStart, v.payloadEnd, p.Payload)
			}
		}
		if !ok {
			return
		}
		if rtcp || pkt[0]>>6 != 2 {
			t.Fatalf("accepted RTCP or a version other than 2: %x", pkt[:2])
		}
		if v.payloadStart < rtpHeaderSize || v.payloadStart > v.payloadEnd || v.payloadEnd > len(pkt) {
			t.Fatalf("payload bounds [%d:%d] outside a %d-byte packet", v.payloadStart, v.payloadEnd, len(pkt))
		}
	})
}

func TestRTPClock(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := rtpClock{ts: 1000, at: at}
	tests := []struct {
		offset time.Duration
		want   uint32
	}{
		{0, 1000},
		{19 * time.Millisecond, 1000},
		{20 * time.Millisecond, 1160},
		{time.Second, 1000 + 8000},
		{-time.Millisecond, 1000 - 160},
		{-20 * time.Millisecond, 1000 - 160},
		{-21 * time.Millisecond, 1000 - 320},
		// 2^32 samples at 8 kHz is about 6.2 days: the timestamp wraps.
		{6 * 24 * time.Hour, 1000 + uint32(uint64(6*24*3600*8000)%(1<<32))},
	}
	for _, tt := range tests {
		require.Equalf(t, tt.want, c.timestampAt(at.Add(tt.offset)), "offset %v", tt.offset)
	}
}

func TestTxStateTimestampNeverRewinds(t *testing.T) {
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tx := txState{clock: rtpClock{ts: 5000, at: at}, lastTS: 5000, sent: true}
	require.Equal(t, uint32(5160), tx.timestampAt(at.Add(5*time.Millisecond)), "same 20 ms step as the last packet: one frame on")
	require.Equal(t, uint32(5000+5*160), tx.timestampAt(at.Add(100*time.Millisecond)))
	tx.lastTS = 0xffffff00 // wraps: 5000 is "after" it
	require.Equal(t, uint32(5000), tx.timestampAt(at))
}

func TestTxStateRelayMapping(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tx := txState{ssrc: 77, seq: 1000, clock: rtpClock{ts: 90000, at: now}, lastTS: 89840, sent: true}
	in := func(ssrc uint32, seq uint16, ts uint32) rtpView {
		return rtpView{ssrc: ssrc, seq: seq, timestamp: ts}
	}
	type step struct {
		v       rtpView
		skip    bool
		after   time.Duration
		seq     uint16
		ts      uint32
		first   bool
		nextSeq uint16
	}
	steps := []step{
		{v: in(5, 65534, 400), seq: 1000, ts: 90000, first: true, nextSeq: 1001},
		{v: in(5, 65535, 560), seq: 1001, ts: 90160, nextSeq: 1002},
		{v: in(5, 0, 720), skip: true},                          // dropped in order: no gap
		{v: in(5, 1, 880), seq: 1002, ts: 90480, nextSeq: 1003}, // seq wraps on the way in
		{v: in(5, 3, 1200), seq: 1004, ts: 90800, nextSeq: 1005},
		{v: in(5, 2, 1040), seq: 1003, ts: 90640, nextSeq: 1005}, // late: mapped, not rewinding
		{v: in(5, 9, 1), skip: true},                             // out of order drop: ignored
		// A new source (the far end restarted its stream): new offsets,
		// continuing the leg's sequence and clock.
		{v: in(6, 500, 7), after: 100 * time.Millisecond, seq: 1005, ts: 90800 + 5*160, first: true, nextSeq: 1006},
	}
	for i, s := range steps {
		if s.skip {
			tx.skipRelayed(s.v)
			continue
		}
		seq, ts, first := tx.mapRelayed(s.v, now.Add(s.after))
		require.Equalf(t, s.seq, seq, "step %d seq", i)
		require.Equalf(t, s.ts, ts, "step %d ts", i)
		require.Equalf(t, s.first, first, "step %d first", i)
		require.Equalf(t, s.nextSeq, tx.seq, "step %d next seq", i)
	}
}
