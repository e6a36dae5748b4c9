package park

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
)

func TestReconfigureAppliesToNewParksOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:bob@example.com": neverAnswer, "sip:op@example.com": answerAfter(time.Second)}}
		lot, _, _ := newTestLot(t, "701-709", Config{Dialer: dialer})
		before := &testLeg{}
		a, err := lot.Park(t.Context(), ParkRequest{Leg: before, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		oldMusic := before.music

		tone, err := media.Tone("new", 330, 100*time.Millisecond)
		require.NoError(t, err)
		require.NoError(t, lot.Reconfigure(Config{PickupTimeout: 20 * time.Second, RecallRingTime: 5 * time.Second,
			FallbackURI: "sip:op@example.com", MusicOnHold: tone}))
		require.Equal(t, 20*time.Second, lot.Config().PickupTimeout)
		require.Equal(t, "sip:op@example.com", lot.Config().FallbackURI)
		require.Equal(t, Music(tone), lot.Music())
		require.Equal(t, 90*time.Second, a.Info().RecallAt.Sub(a.Info().Since), "a parked call keeps its recall time")

		after := &testLeg{}
		start := time.Now()
		b, err := lot.Park(t.Context(), ParkRequest{Leg: after, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		require.Equal(t, Music(tone), after.music, "a new park hears the new music")
		require.Equal(t, oldMusic, before.music, "the old one is not put on hold again")
		<-b.Done()
		require.Equal(t, Forwarded, b.Outcome())
		require.Equal(t, 26*time.Second, time.Since(start), "20 s, 5 s of recall, 1 s to the new fallback")
		require.Equal(t, Parked, a.Info().State, "the first call still waits for its 90 s")

		err = lot.Reconfigure(Config{PickupTimeout: 5 * time.Second})
		require.ErrorIs(t, err, ErrInvalidConfig)
		var ce *ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "PickupTimeout", ce.Field)
		require.Equal(t, 20*time.Second, lot.Config().PickupTimeout, "a refused change changes nothing")

		require.NoError(t, lot.Reconfigure(Config{DisableMusicOnHold: true}))
		require.Nil(t, lot.Music())
		require.Equal(t, DefaultPickupTimeout, lot.Config().PickupTimeout, "zero means the default again")
		require.NotNil(t, lot.Config().Dialer, "the lot's own parts stay")
		a.Abandon()
	})
}

func TestSetRangesKeepsACallInARemovedRange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, alloc, _ := newTestLot(t, "701-709", Config{})
		a, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Orbit: "705"})
		require.NoError(t, err)
		r, err := orbit.ParseRange("710-719")
		require.NoError(t, err)
		require.NoError(t, lot.SetRanges([]orbit.Range{r}))
		require.Equal(t, []orbit.Range{r}, lot.Ranges())

		b, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		require.Equal(t, orbit.Orbit("710"), b.Orbit())
		_, err = lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Orbit: "706"})
		require.ErrorIs(t, err, ErrUnknownOrbit)
		info, ok := lot.Lookup("705")
		require.True(t, ok, "the call in the removed range stays")
		require.Equal(t, a.ID(), info.ParkID)

		got, err := lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "705"})
		require.NoError(t, err, "and can still be retrieved")
		require.Equal(t, a, got)
		_, err = lot.Retrieve(t.Context(), RetrieveRequest{Orbit: "705"})
		require.ErrorIs(t, err, ErrUnknownOrbit, "its orbit is gone once it ended")
		require.Equal(t, 1, alloc.InUse())

		require.Error(t, lot.SetRanges(nil))
		require.Equal(t, []orbit.Range{r}, lot.Ranges())
	})
}

// fixedRanges is an allocator whose ranges cannot change.
type fixedRanges struct{ orbit.Allocator }

func TestSetRangesNeedsAReranger(t *testing.T) {
	r, err := orbit.ParseRange("701-709")
	require.NoError(t, err)
	alloc, err := orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{})
	require.NoError(t, err)
	lot, err := NewLot(Config{Orbits: fixedRanges{alloc}})
	require.NoError(t, err)
	require.ErrorIs(t, lot.SetRanges([]orbit.Range{r}), ErrInvalidConfig)
	require.NoError(t, lot.Shutdown(context.Background()))
}

// A recall ringing when the lot is reconfigured goes on as it started:
// its ring time, attempts and (lack of) fallback are those it began with.
func TestReconfigureLeavesARingingRecallAsItIs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:bob@example.com": neverAnswer, "sip:op@example.com": answerAfter(time.Second)}}
		lot, _, log := newTestLot(t, "701-709", Config{Dialer: dialer})
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(95 * time.Second)
		require.Equal(t, Recalling, c.Info().State)
		require.NoError(t, lot.Reconfigure(Config{RecallRingTime: 5 * time.Second, MaxPickupAttempts: 3, FallbackURI: "sip:op@example.com"}))
		<-c.Done()
		require.Equal(t, 120*time.Second, time.Since(start), "the recall rang its 30 s")
		require.Equal(t, Dropped, c.Outcome(), "one attempt and no fallback, as when it started")
		synctest.Wait()
		require.Equal(t, []EventKind{EventParked, EventRinging, EventRingFailed, EventEnded}, log.kinds())
	})
}
