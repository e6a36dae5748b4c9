package media

import (
	"bytes"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/require"
)

// capturedPacket is one write seen by memWriter.
type capturedPacket struct {
	at      time.Time
	dst     netip.AddrPort
	hdr     rtp.Header
	payload []byte
	size    int
	parsed  bool // pion could unmarshal it
}

// memWriter is an in-memory PacketWriter for tests inside a synctest bubble,
// where time.Now is the fake clock and pacing can be checked exactly.
type memWriter struct {
	// stall, if set, makes the write of packet i take that long (fake time):
	// a sender stalled by a slow machine.
	stall func(i int) time.Duration
	// fail, if set, is the error of the write of packet i.
	fail func(i int) error
	// dropPayload skips storing payloads, for long runs.
	dropPayload bool

	mu      sync.Mutex
	packets []capturedPacket
}

func (w *memWriter) WriteToUDPAddrPort(b []byte, dst netip.AddrPort) (int, error) {
	var p rtp.Packet
	err := p.Unmarshal(b)
	c := capturedPacket{at: time.Now(), dst: dst, hdr: p.Header, size: len(b), parsed: err == nil}
	if !w.dropPayload {
		c.payload = bytes.Clone(p.Payload)
	}
	w.mu.Lock()
	i := len(w.packets)
	w.packets = append(w.packets, c)
	w.mu.Unlock()
	if w.stall != nil {
		if d := w.stall(i); d > 0 {
			time.Sleep(d)
		}
	}
	if w.fail != nil {
		if err := w.fail(i); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (w *memWriter) snapshot() []capturedPacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]capturedPacket(nil), w.packets...)
}

// testFrames returns n frames of codec whose frame i holds one distinct
// sample value, so a payload tells which frame it is.
func testFrames(codec Codec, n int) *Frames {
	pcm := make([]int16, n*SamplesPerFrame)
	for i := range pcm {
		pcm[i] = int16((i/SamplesPerFrame + 1) * 1000)
	}
	return NewFrames(codec, pcm)
}

var testDst = netip.MustParseAddrPort("192.0.2.10:4000")

func TestSchedulerPacesFiftyPacketsPerSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
		defer s.Close()
		w := &memWriter{}
		begin := time.Now()
		_, err := s.Play(w, testDst, testFrames(PCMU, 3))
		require.NoError(t, err)

		time.Sleep(time.Second + 10*time.Millisecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, 51, "first packet within 20 ms, then 50 a second")
		require.Less(t, pkts[0].at.Sub(begin), FrameDuration)
		for i := 1; i < len(pkts); i++ {
			require.Equalf(t, FrameDuration, pkts[i].at.Sub(pkts[i-1].at), "interval before packet %d", i)
		}
		st := s.Stats()
		require.Equal(t, uint64(51), st.Packets)
		require.Equal(t, uint64(51), st.Lateness.Within1ms)
		require.Equal(t, 1, st.Streams)
	})
}

func TestSchedulerDoesNotDriftOverTenMinutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 2, SendAhead: exactDeadlines})
		defer s.Close()
		// One stream per shard.
		writers := []*memWriter{{dropPayload: true}, {dropPayload: true}}
		for _, w := range writers {
			_, err := s.Play(w, testDst, testFrames(PCMA, 2))
			require.NoError(t, err)
		}
		time.Sleep(10*time.Minute + 10*time.Millisecond)
		synctest.Wait()
		for _, w := range writers {
			pkts := w.snapshot()
			require.Len(t, pkts, 30001)
			first := pkts[0]
			for k, p := range pkts {
				// Absolute deadlines: packet k is exactly k×20 ms after the first.
				require.Equal(t, first.at.Add(time.Duration(k)*FrameDuration), p.at)
				require.Equal(t, first.hdr.SequenceNumber+uint16(k), p.hdr.SequenceNumber)
				require.Equal(t, first.hdr.Timestamp+uint32(k)*SamplesPerFrame, p.hdr.Timestamp)
			}
		}
		st := s.Stats()
		require.Equal(t, uint64(2*30001), st.Lateness.Within1ms)
		require.Equal(t, st.Packets, st.Lateness.Total())
	})
}

func TestSchedulerSpreadsPhases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
		defer s.Close()
		const streams = 200
		w := &memWriter{dropPayload: true}
		begin := time.Now()
		for range streams {
			_, err := s.Play(w, testDst, testFrames(PCMU, 1))
			require.NoError(t, err)
		}
		time.Sleep(FrameDuration - time.Microsecond)
		synctest.Wait()
		pkts := w.snapshot()
		require.Len(t, pkts, streams, "every stream starts within one period")
		perMillisecond := map[time.Duration]int{}
		for _, p := range pkts {
			perMillisecond[p.at.Sub(begin)]++
		}
		require.Len(t, perMillisecond, phaseSlots, "every 1 ms slot is used")
		for at, n := range perMillisecond {
			require.LessOrEqualf(t, n, streams/phaseSlots, "%d streams due at %v", n, at)
		}
	})
}

func TestSchedulerBalancesShards(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 3, SendAhead: exactDeadlines})
		defer s.Close()
		for range 30 {
			_, err := s.Play(&memWriter{}, testDst, testFrames(PCMU, 1))
			require.NoError(t, err)
		}
		for _, sh := range s.shards {
			require.Equal(t, int64(10), sh.streams.Load())
		}
		require.Equal(t, 30, s.Stats().Streams)
	})
}

// A stalled write delays the packets behind it; they must go out at once
// when the write returns (up to 100 ms behind), or be skipped beyond that,
// and the schedule must not shift either way.
func TestSchedulerCatchesUpAfterStall(t *testing.T) {
	tests := []struct {
		name        string
		stall       time.Duration // of the write of the first packet
		wantOffsets []time.Duration
		wantTSSteps []uint32 // timestamp step from the previous packet, in frames
		wantSkipped uint64
	}{
		{
			name:  "short stall: burst of the missed packets",
			stall: 70 * time.Millisecond,
			// Deadlines 20, 40, 60 ms pass during the stall: sent at 70 ms,
			// then 80 ms is on time again.
			wantOffsets: []time.Duration{0, 70, 70, 70, 80, 100},
			wantTSSteps: []uint32{0, 1, 1, 1, 1, 1},
		},
		{
			name:  "long stall: skip ahead, one packet, then on schedule",
			stall: 250 * time.Millisecond,
			// At 250 ms the 20 ms slot is 230 ms late: 11 slots are skipped,
			// the 240 ms one goes out late and 260 ms is on time.
			wantOffsets: []time.Duration{0, 250, 260, 280},
			wantTSSteps: []uint32{0, 12, 1, 1},
			wantSkipped: 11,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
				defer s.Close()
				w := &memWriter{stall: func(i int) time.Duration {
					if i == 0 {
						return tt.stall
					}
					return 0
				}}
				st, err := s.Play(w, testDst, testFrames(PCMU, 4))
				require.NoError(t, err)
				for {
					time.Sleep(time.Millisecond)
					synctest.Wait()
					if len(w.snapshot()) >= len(tt.wantOffsets) {
						break
					}
				}
				st.Stop()
				pkts := w.snapshot()
				require.Len(t, pkts, len(tt.wantOffsets))
				for i, p := range pkts {
					require.Equalf(t, tt.wantOffsets[i]*time.Millisecond, p.at.Sub(pkts[0].at), "packet %d", i)
					require.Equal(t, pkts[0].hdr.SequenceNumber+uint16(i), p.hdr.SequenceNumber, "sequence never skips")
					require.Equal(t, i == 0, p.hdr.Marker)
					if i > 0 {
						require.Equalf(t, tt.wantTSSteps[i]*SamplesPerFrame, p.hdr.Timestamp-pkts[i-1].hdr.Timestamp, "timestamp step before packet %d", i)
					}
				}
				require.Equal(t, tt.wantSkipped, s.Stats().Skipped)
			})
		})
	}
}

func TestSchedulerLatenessHistogram(t *testing.T) {
	tests := []struct {
		stall time.Duration // of the first write; the second packet is late by stall - 20 ms
		want  Lateness
	}{
		{20*time.Millisecond + 500*time.Microsecond, Lateness{Within1ms: 3}},
		{21*time.Millisecond + 500*time.Microsecond, Lateness{Within1ms: 2, Within2ms: 1}},
		{24 * time.Millisecond, Lateness{Within1ms: 2, Within5ms: 1}},
		{35 * time.Millisecond, Lateness{Within1ms: 2, Within20ms: 1}},
		// 25 ms late, and the third packet (due at 40 ms) goes right after
		// it, 5 ms late.
		{45 * time.Millisecond, Lateness{Within1ms: 1, Within5ms: 1, Later: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.stall.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
				defer s.Close()
				w := &memWriter{stall: func(i int) time.Duration {
					if i == 0 {
						return tt.stall
					}
					return 0
				}}
				st, err := s.Play(w, testDst, testFrames(PCMU, 1))
				require.NoError(t, err)
				for len(w.snapshot()) < 3 {
					time.Sleep(time.Millisecond)
					synctest.Wait()
				}
				st.Stop()
				stats := s.Stats()
				require.Equal(t, tt.want, stats.Lateness)
				require.Equal(t, uint64(3), stats.Packets)
			})
		})
	}
}

func TestSchedulerWriteErrorsDoNotStopStreams(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
		defer s.Close()
		// The peer's port is closed: every other write is refused.
		refused := &memWriter{fail: func(i int) error {
			if i%2 == 1 {
				return syscall.ECONNREFUSED
			}
			return nil
		}}
		healthy := &memWriter{}
		bad, err := s.Play(refused, testDst, testFrames(PCMU, 1))
		require.NoError(t, err)
		good, err := s.Play(healthy, testDst, testFrames(PCMU, 1))
		require.NoError(t, err)

		time.Sleep(200*time.Millisecond - time.Microsecond)
		synctest.Wait()
		require.Len(t, refused.snapshot(), 10)
		require.Len(t, healthy.snapshot(), 10)
		require.Equal(t, StreamStats{Packets: 5, Octets: 5 * SamplesPerFrame, WriteErrors: 5}, bad.Stats())
		require.Equal(t, StreamStats{Packets: 10, Octets: 10 * SamplesPerFrame}, good.Stats())
		stats := s.Stats()
		require.Equal(t, uint64(15), stats.Packets)
		require.Equal(t, uint64(5), stats.WriteErrors)
		require.Equal(t, uint64(20), stats.Lateness.Total())
		pkts := refused.snapshot()
		for i := 1; i < len(pkts); i++ {
			require.Equal(t, pkts[i-1].hdr.SequenceNumber+1, pkts[i].hdr.SequenceNumber)
		}
	})
}

func TestSchedulerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		w := &memWriter{}
		st, err := s.Play(w, testDst, testFrames(PCMU, 1))
		require.NoError(t, err)
		time.Sleep(50 * time.Millisecond)
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
		sent := len(w.snapshot())
		require.Positive(t, sent)
		time.Sleep(time.Second)
		synctest.Wait()
		require.Len(t, w.snapshot(), sent, "nothing sent after Close")
		require.Zero(t, s.Stats().Streams)
		st.Stop() // a stream stopped by Close may still be stopped

		_, err = s.Play(w, testDst, testFrames(PCMU, 1))
		require.ErrorIs(t, err, ErrClosed)
		// synctest.Test fails if a shard goroutine is still running.
	})
}

func TestSchedulerPlayRejectsBadArguments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{SendAhead: exactDeadlines})
		defer s.Close()
		tests := []struct {
			name   string
			w      PacketWriter
			frames *Frames
			want   string
		}{
			{"nil writer", nil, testFrames(PCMU, 1), "PacketWriter"},
			{"nil frames", &memWriter{}, nil, "frames"},
			{"empty frames", &memWriter{}, &Frames{}, "frames"},
		}
		for _, tt := range tests {
			_, err := s.Play(tt.w, testDst, tt.frames)
			require.ErrorIs(t, err, ErrInvalidArgument, tt.name)
			require.ErrorContains(t, err, tt.want, tt.name)
		}
		require.Zero(t, s.Stats().Streams)
	})
}

// Stopping streams in the middle of the heap must leave the others on
// their exact schedule.
func TestSchedulerStopManyKeepsOthersPaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines})
		defer s.Close()
		const n = 60
		writers := make([]*memWriter, n)
		streams := make([]*Stream, n)
		for i := range writers {
			writers[i] = &memWriter{dropPayload: true}
			var err error
			streams[i], err = s.Play(writers[i], testDst, testFrames(PCMU, 1))
			require.NoError(t, err)
		}
		time.Sleep(55*time.Millisecond + 500*time.Microsecond)
		for i := 0; i < n; i += 3 {
			streams[i].Stop()
		}
		stoppedAt := make([]int, n)
		for i := range writers {
			stoppedAt[i] = len(writers[i].snapshot())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		for i, w := range writers {
			pkts := w.snapshot()
			if i%3 == 0 {
				require.Lenf(t, pkts, stoppedAt[i], "stopped stream %d sent on", i)
				continue
			}
			for k := 1; k < len(pkts); k++ {
				require.Equal(t, FrameDuration, pkts[k].at.Sub(pkts[k-1].at))
			}
			require.GreaterOrEqual(t, len(pkts), 52)
		}
		require.Equal(t, 40, s.Stats().Streams)
	})
}

// exactDeadlines makes a scheduler on the fake clock send on each deadline
// exactly, so the tests can state packet times to the nanosecond.
const exactDeadlines = -1

// TestSchedulerSendsAheadByDefault checks the default lead: each packet
// leaves 1 ms before its deadline, counts as on time, and the spacing stays
// 20 ms.
func TestSchedulerSendsAheadByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := NewScheduler(SchedulerOptions{Shards: 1})
		defer s.Close()
		w := &memWriter{dropPayload: true}
		t0 := time.Now()
		st, err := s.Play(w, netip.MustParseAddrPort("127.0.0.1:4000"), testFrames(PCMU, 1))
		require.NoError(t, err)
		time.Sleep(990 * time.Millisecond)
		st.Stop()
		pkts := w.snapshot()
		require.Len(t, pkts, 50)
		// The first free phase starts 1 ms after Play; the packet leaves 1 ms
		// ahead of it.
		require.Equal(t, t0, pkts[0].at)
		for i := 1; i < len(pkts); i++ {
			require.Equal(t, FrameDuration, pkts[i].at.Sub(pkts[i-1].at))
		}
		stats := s.Stats()
		require.Equal(t, uint64(50), stats.Lateness.Within1ms, "early is on time")
		require.Equal(t, uint64(50), stats.Lateness.Total())
	})
}

// While Hold says so nothing is sent; afterwards the stream goes on from
// the present, without a burst of what was held.
func TestSchedulerHoldSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var held atomic.Bool
		s := NewScheduler(SchedulerOptions{Shards: 1, SendAhead: exactDeadlines, Hold: held.Load})
		defer s.Close()
		w := &memWriter{}
		_, err := s.Play(w, testDst, testFrames(PCMU, 3))
		require.NoError(t, err)
		time.Sleep(time.Second)
		synctest.Wait()
		before := len(w.snapshot())
		require.Positive(t, before)

		held.Store(true)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		require.LessOrEqual(t, len(w.snapshot()), before+1, "nothing while held (a round under way may end)")
		during := len(w.snapshot())

		held.Store(false)
		time.Sleep(time.Second)
		synctest.Wait()
		after := len(w.snapshot()) - during
		require.InDelta(t, 50, after, 6, "a second of packets, no burst of the two held seconds")
	})
}
