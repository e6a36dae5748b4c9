package media

import (
	"bytes"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStreamHeaderRules(t *testing.T) {
	tests := []struct {
		codec Codec
		pt    uint8
	}{
		{PCMU, 0},
		{PCMA, 8},
	}
	for _, tt := range tests {
		t.Run(tt.codec.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
				defer s.Close()
				w := &memWriter{}
				frames := testFrames(tt.codec, 3)
				st, err := s.Play(w, testDst, frames)
				require.NoError(t, err)
				time.Sleep(200*time.Millisecond + 500*time.Microsecond)
				synctest.Wait()
				pkts := w.snapshot()
				require.Len(t, pkts, 10)
				for i, p := range pkts {
					require.True(t, p.parsed)
					require.Equal(t, rtpHeaderSize+SamplesPerFrame, p.size)
					require.Equal(t, uint8(2), p.hdr.Version)
					require.False(t, p.hdr.Padding)
					require.False(t, p.hdr.Extension)
					require.Empty(t, p.hdr.CSRC)
					require.Equal(t, tt.pt, p.hdr.PayloadType)
					require.Equal(t, st.SSRC(), p.hdr.SSRC)
					require.Equal(t, i == 0, p.hdr.Marker, "marker on the first packet only")
					require.Equal(t, pkts[0].hdr.SequenceNumber+uint16(i), p.hdr.SequenceNumber)
					require.Equal(t, pkts[0].hdr.Timestamp+uint32(i*SamplesPerFrame), p.hdr.Timestamp)
					require.Equal(t, frames.Payload(i), p.payload, "frames loop in order")
					require.Equal(t, testDst, p.dst)
				}
				require.Equal(t, StreamStats{Packets: 10, Octets: 10 * SamplesPerFrame}, st.Stats())
			})
		})
	}
}

func TestStreamsStartWithRandomIdentities(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		const n = 8
		writers := make([]*memWriter, n)
		for i := range writers {
			writers[i] = &memWriter{}
			_, err := s.Play(writers[i], testDst, testFrames(PCMU, 1))
			require.NoError(t, err)
		}
		time.Sleep(FrameDuration)
		synctest.Wait()
		ssrcs, seqs, timestamps := map[uint32]bool{}, map[uint16]bool{}, map[uint32]bool{}
		for _, w := range writers {
			first := w.snapshot()[0].hdr
			ssrcs[first.SSRC] = true
			seqs[first.SequenceNumber] = true
			timestamps[first.Timestamp] = true
		}
		// Eight equal draws of a random 16 or 32 bit value do not happen.
		require.Greater(t, len(ssrcs), 1)
		require.Greater(t, len(seqs), 1)
		require.Greater(t, len(timestamps), 1)
	})
}

func TestStreamPauseResume(t *testing.T) {
	tests := []struct {
		name   string
		paused time.Duration
		// wantTSFrames is the timestamp step across the pause, in frames.
		wantTSFrames uint32
	}{
		{"one slot", 20 * time.Millisecond, 2},
		{"five slots", 100 * time.Millisecond, 6},
		// Longer than the catch-up limit: nothing is "missed" while paused,
		// the clock just runs on.
		{"three seconds", 3 * time.Second, 151},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
				defer s.Close()
				w := &memWriter{}
				st, err := s.Play(w, testDst, testFrames(PCMU, 4))
				require.NoError(t, err)
				// Packets at 1, 21, 41 ms; pause between two of them.
				time.Sleep(50 * time.Millisecond)
				st.Pause()
				st.Pause()
				time.Sleep(tt.paused)
				synctest.Wait()
				require.Len(t, w.snapshot(), 3, "nothing sent while paused")
				st.Resume()
				st.Resume() // resuming a running stream changes nothing
				time.Sleep(40 * time.Millisecond)
				synctest.Wait()
				pkts := w.snapshot()
				require.Len(t, pkts, 5)
				last, resumed := pkts[2], pkts[3]
				require.True(t, resumed.hdr.Marker, "marker after Resume")
				require.False(t, pkts[4].hdr.Marker)
				require.Equal(t, last.hdr.SequenceNumber+1, resumed.hdr.SequenceNumber, "sequence does not jump")
				require.Equal(t, tt.wantTSFrames*SamplesPerFrame, resumed.hdr.Timestamp-last.hdr.Timestamp, "timestamp follows the clock")
				require.Equal(t, time.Duration(tt.wantTSFrames)*FrameDuration, resumed.at.Sub(last.at), "still on the same grid")
				require.Equal(t, testFrames(PCMU, 4).Payload(3), resumed.payload, "music resumes where it paused")
				require.Zero(t, s.Stats().Skipped)
			})
		})
	}
}

func TestStreamStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		st, err := s.Play(w, testDst, testFrames(PCMU, 1))
		require.NoError(t, err)
		other, err := s.Play(&memWriter{}, testDst, testFrames(PCMU, 1))
		require.NoError(t, err)
		time.Sleep(65 * time.Millisecond)
		st.Stop()
		st.Stop()
		sent := len(w.snapshot())
		require.Equal(t, 4, sent)
		time.Sleep(time.Second)
		synctest.Wait()
		require.Len(t, w.snapshot(), sent, "nothing after Stop")
		require.Equal(t, 1, s.Stats().Streams)
		require.Greater(t, other.Stats().Packets, uint64(50), "the other stream goes on")
	})
}

// gateWriter holds its first write until released, to catch a Stop that
// does not wait for a write in progress. It runs in real time: a goroutine
// blocked on a mutex (Stop, behind the write) would freeze a synctest clock.
type gateWriter struct {
	entered chan struct{}
	release chan struct{}
	writes  atomic.Int32
	done    atomic.Int32 // writes that have returned
}

func (w *gateWriter) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) {
	if w.writes.Add(1) == 1 {
		close(w.entered)
		<-w.release
	}
	w.done.Add(1)
	return len(b), nil
}

func TestStreamStopWaitsForWriteInProgress(t *testing.T) {
	s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
	defer s.Close()
	w := &gateWriter{entered: make(chan struct{}), release: make(chan struct{})}
	st, err := s.Play(w, testDst, testFrames(PCMU, 1))
	require.NoError(t, err)
	<-w.entered
	returned := make(chan int32)
	go func() {
		st.Stop()
		returned <- w.done.Load()
	}()
	close(w.release)
	require.Equal(t, int32(1), <-returned, "Stop returned before the write in progress")
	require.Equal(t, int32(1), w.writes.Load(), "nothing written after Stop")
}

func TestStreamSetDestination(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		// No destination yet (c=0.0.0.0 in the peer's SDP): silent, and the
		// first packet sent still carries the marker.
		st, err := s.Play(w, netip.MustParseAddrPort("0.0.0.0:4000"), testFrames(PCMU, 1))
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		require.Empty(t, w.snapshot())

		moved := netip.MustParseAddrPort("198.51.100.7:30000")
		st.SetDestination(testDst)
		time.Sleep(40 * time.Millisecond)
		st.SetDestination(moved)
		time.Sleep(40 * time.Millisecond)
		st.SetDestination(netip.AddrPort{})
		time.Sleep(40 * time.Millisecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, 4)
		require.True(t, pkts[0].hdr.Marker)
		for i, p := range pkts {
			want := testDst
			if i >= 2 {
				want = moved
			}
			require.Equal(t, want, p.dst, "packet %d", i)
			require.Equal(t, pkts[0].hdr.SequenceNumber+uint16(i), p.hdr.SequenceNumber)
			require.Equal(t, i == 0, p.hdr.Marker)
		}
	})
}

func TestStreamSetFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		st, err := s.Play(w, testDst, testFrames(PCMU, 3))
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond) // two packets: frames 0 and 1
		alaw := testFrames(PCMA, 2)
		require.NoError(t, st.SetFrames(alaw))
		require.ErrorIs(t, st.SetFrames(nil), ErrInvalidArgument)
		require.ErrorIs(t, st.SetFrames(&Frames{}), ErrInvalidArgument)
		time.Sleep(40 * time.Millisecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, 4)
		require.Equal(t, uint8(0), pkts[1].hdr.PayloadType)
		require.Equal(t, uint8(8), pkts[2].hdr.PayloadType)
		require.Equal(t, alaw.Payload(0), pkts[2].payload, "loop position 2 modulo the new length")
		require.Equal(t, alaw.Payload(1), pkts[3].payload)
		require.Equal(t, pkts[1].hdr.SSRC, pkts[2].hdr.SSRC)
		require.Equal(t, pkts[1].hdr.SequenceNumber+1, pkts[2].hdr.SequenceNumber)
		require.False(t, pkts[2].hdr.Marker)
	})
}

// A leg that negotiated one codec gets it even from frames of the other:
// the stream transcodes, under the leg's payload type.
func TestStreamTranscodesFramesToLegCodec(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		ulaw := testFrames(PCMU, 2)
		_, err := s.play(w, testDst, ulaw, PCMA, 97, newTxState(time.Now()), false, nil)
		require.NoError(t, err)
		time.Sleep(30 * time.Millisecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, 2)
		for i, p := range pkts {
			want := bytes.Clone(ulaw.Payload(i))
			Transcode(want, PCMU, PCMA)
			require.Equal(t, want, p.payload)
			require.Equal(t, uint8(97), p.hdr.PayloadType)
		}
		require.Equal(t, ulaw.Payload(0), testFrames(PCMU, 2).Payload(0), "shared frames untouched")
	})
}

// An endpoint's second stream continues the first: same SSRC, next
// sequence number, timestamps on from the first stream's clock, marker.
func TestStreamHandoffContinuesIdentity(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		frames := testFrames(PCMU, 1)
		first, err := s.play(w, testDst, frames, PCMU, 0, newTxState(time.Now()), false, nil)
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
		first.Stop()
		time.Sleep(time.Second + 5*time.Millisecond)
		second, err := s.play(w, testDst, frames, PCMU, 0, first.handoff(), false, nil)
		require.NoError(t, err)
		time.Sleep(15 * time.Millisecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, 4)
		last, next := pkts[2], pkts[3]
		require.Equal(t, first.SSRC(), second.SSRC())
		require.Equal(t, last.hdr.SSRC, next.hdr.SSRC)
		require.Equal(t, last.hdr.SequenceNumber+1, next.hdr.SequenceNumber)
		require.True(t, next.hdr.Marker)
		gap := next.at.Sub(last.at)
		require.Equal(t, uint32(gap/FrameDuration)*SamplesPerFrame, next.hdr.Timestamp-last.hdr.Timestamp, "timestamps follow the wall clock across streams (%v)", gap)
	})
}
