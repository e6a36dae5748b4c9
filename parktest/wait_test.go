package parktest

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPollUntil(t *testing.T) {
	tests := []struct {
		name        string
		trueAfter   int // cond turns true on this call (0: never)
		timeout     time.Duration
		closeAfter  time.Duration // 0: never
		wantErr     error
		wantElapsed time.Duration
	}{
		{name: "already true: no wait", trueAfter: 1, timeout: time.Second, wantElapsed: 0},
		{name: "true on the 5th check", trueAfter: 5, timeout: time.Second, wantElapsed: 4 * pollInterval},
		{name: "context ends first", timeout: 100 * time.Millisecond, wantErr: context.DeadlineExceeded, wantElapsed: 100 * time.Millisecond},
		{name: "phone closes first", timeout: time.Second, closeAfter: 30 * time.Millisecond, wantErr: ErrPhoneClosed, wantElapsed: 30 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), tt.timeout)
				defer cancel()
				closing := make(chan struct{})
				if tt.closeAfter > 0 {
					time.AfterFunc(tt.closeAfter, func() { close(closing) })
				}
				calls := 0
				start := time.Now()
				err := pollUntil(ctx, closing, pollInterval, func() bool {
					calls++
					return tt.trueAfter > 0 && calls >= tt.trueAfter
				})
				require.ErrorIs(t, err, tt.wantErr)
				if tt.wantErr == nil {
					require.NoError(t, err)
				}
				require.Equal(t, tt.wantElapsed, time.Since(start))
			})
		})
	}
}

func TestSleepUnless(t *testing.T) {
	tests := []struct {
		name        string
		delay       time.Duration
		stopAfter   time.Duration // -1: never; 0: already stopped
		stopSecond  bool          // stop the second channel rather than the first
		want        bool
		wantElapsed time.Duration
	}{
		{name: "full delay", delay: 2 * time.Second, stopAfter: -1, want: true, wantElapsed: 2 * time.Second},
		{name: "cancel cuts it short", delay: 2 * time.Second, stopAfter: 300 * time.Millisecond, want: false, wantElapsed: 300 * time.Millisecond},
		{name: "close cuts it short", delay: 2 * time.Second, stopAfter: 300 * time.Millisecond, stopSecond: true, want: false, wantElapsed: 300 * time.Millisecond},
		{name: "no delay answers at once", delay: 0, stopAfter: -1, want: true},
		{name: "no delay but already cancelled", delay: 0, stopAfter: 0, want: false},
		{name: "no delay but already closed", delay: 0, stopAfter: 0, stopSecond: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				first, second := make(chan struct{}), make(chan struct{})
				stop := first
				if tt.stopSecond {
					stop = second
				}
				switch {
				case tt.stopAfter == 0:
					close(stop)
				case tt.stopAfter > 0:
					time.AfterFunc(tt.stopAfter, func() { close(stop) })
				}
				start := time.Now()
				require.Equal(t, tt.want, sleepUnless(tt.delay, first, second))
				require.Equal(t, tt.wantElapsed, time.Since(start))
			})
		})
	}
}

func TestRetransmitUntil(t *testing.T) {
	timers := retransmitTimers{T1: 500 * time.Millisecond, T2: 4 * time.Second, GiveUp: 32 * time.Second}
	tests := []struct {
		name        string
		reliable    bool
		ackAfter    time.Duration // 0: never
		abortAfter  time.Duration // 0: never
		want        bool
		wantResends []time.Duration // when each resend happened
		wantElapsed time.Duration
	}{
		{
			name: "no ACK over UDP: T1 doubling to T2, give up at 64×T1", want: false,
			wantResends: []time.Duration{
				500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond, 7500 * time.Millisecond,
				11500 * time.Millisecond, 15500 * time.Millisecond, 19500 * time.Millisecond, 23500 * time.Millisecond,
				27500 * time.Millisecond, 31500 * time.Millisecond,
			},
			wantElapsed: 32 * time.Second,
		},
		{
			name: "ACK after two resends", ackAfter: 2 * time.Second, want: true,
			wantResends: []time.Duration{500 * time.Millisecond, 1500 * time.Millisecond},
			wantElapsed: 2 * time.Second,
		},
		{name: "reliable transport never resends", reliable: true, ackAfter: 10 * time.Second, want: true, wantElapsed: 10 * time.Second},
		{name: "reliable transport gives up too", reliable: true, want: false, wantElapsed: 32 * time.Second},
		{
			name: "call ended meanwhile", abortAfter: time.Second, want: false,
			wantResends: []time.Duration{500 * time.Millisecond}, wantElapsed: time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				acked, abort := make(chan struct{}), make(chan struct{})
				if tt.ackAfter > 0 {
					time.AfterFunc(tt.ackAfter, func() { close(acked) })
				}
				if tt.abortAfter > 0 {
					time.AfterFunc(tt.abortAfter, func() { close(abort) })
				}
				start := time.Now()
				var resends []time.Duration
				got := retransmitUntil(acked, abort, tt.reliable, timers, func() {
					resends = append(resends, time.Since(start))
				})
				require.Equal(t, tt.want, got)
				require.Equal(t, tt.wantResends, resends)
				require.Equal(t, tt.wantElapsed, time.Since(start))
			})
		})
	}
}

// TestPollUntilStopsTicking checks that a finished poll leaves no timer
// behind that would still call cond.
func TestPollUntilStopsTicking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		require.NoError(t, pollUntil(t.Context(), nil, pollInterval, func() bool { return calls.Add(1) >= 3 }))
		time.Sleep(time.Second) // fake time: lets a leaked ticker fire
		synctest.Wait()
		require.Equal(t, int32(3), calls.Load())
	})
}

// When the ACK and the end of the call are both already there, the ACK wins
// every time, not by select's coin toss.
func TestRetransmitUntilPrefersAckOverAbort(t *testing.T) {
	timers := retransmitTimers{T1: 500 * time.Millisecond, T2: 4 * time.Second, GiveUp: 32 * time.Second}
	acked, abort := make(chan struct{}), make(chan struct{})
	close(acked)
	close(abort)
	for range 200 {
		require.True(t, retransmitUntil(acked, abort, false, timers, func() { t.Fatal("resent after the ACK") }))
	}
}
