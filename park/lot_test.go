package park

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/orbit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRequestRules(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		lot, alloc, _ := newTestLot(t, "701-709", Config{})

		_, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Parker: "bob"})
		var rerr *RequestError
		require.ErrorAs(t, err, &rerr)
		require.ErrorIs(t, err, ErrInvalidRequest)
		require.Equal(t, "ParkRequest.Parker", rerr.Field, "a parker a recall cannot ring is refused, naming the field")
		require.Contains(t, err.Error(), `ParkRequest.Parker = "bob"`)
		_, err = lot.Park(ctx, ParkRequest{})
		require.ErrorAs(t, err, &rerr)
		require.Equal(t, "ParkRequest.Leg", rerr.Field)
		require.Zero(t, alloc.InUse(), "a refused request takes no orbit")

		leg := &testLeg{}
		c, err := lot.Park(ctx, ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		_, err = lot.Park(ctx, ParkRequest{Leg: leg})
		require.ErrorIs(t, err, ErrAlreadyParked, "one leg is parked once")
		require.Equal(t, 1, alloc.InUse(), "the second park took no orbit")
		holds, _ := leg.counts()
		require.Equal(t, 1, holds, "nor held the leg again")
		require.ErrorIs(t, c.Replace(ctx, ReplaceRequest{Leg: leg}), ErrAlreadyParked)
		require.ErrorIs(t, c.Replace(ctx, ReplaceRequest{Leg: &testLeg{}, Parker: "sip:"}), ErrInvalidRequest)

		// Once the call has left the lot its leg may be parked again (a
		// re-park after a retrieve).
		_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: c.Orbit()})
		require.NoError(t, err)
		again, err := lot.Park(ctx, ParkRequest{Leg: leg})
		require.NoError(t, err)
		require.True(t, again.Abandon())

		// A leg replaced out of the lot may be parked again; the new one not.
		first, second := &testLeg{}, &testLeg{}
		c, err = lot.Park(ctx, ParkRequest{Leg: first})
		require.NoError(t, err)
		require.NoError(t, c.Replace(ctx, ReplaceRequest{Leg: second}))
		_, err = lot.Park(ctx, ParkRequest{Leg: second})
		require.ErrorIs(t, err, ErrAlreadyParked)
		other, err := lot.Park(ctx, ParkRequest{Leg: first})
		require.NoError(t, err)
		require.True(t, other.Abandon())
		require.True(t, c.Abandon())
		require.Zero(t, alloc.InUse())
	})
}

func TestRangesComeFromTheAllocator(t *testing.T) {
	lot, _, _ := newTestLot(t, "701-709", Config{})
	require.Equal(t, "701-709", fmt.Sprint(lot.Ranges()[0]))
	require.Len(t, lot.Ranges(), 1)
}

func TestConfigDefaultsAreTheSeeds(t *testing.T) {
	lot, err := NewLot(Config{MusicOnHold: testMusic(t)})
	require.NoError(t, err)
	cfg := lot.Config()
	require.Equal(t, 90*time.Second, cfg.PickupTimeout)
	require.Equal(t, 1, cfg.MaxPickupAttempts)
	require.Equal(t, 30*time.Second, cfg.RecallRingTime)
	require.Equal(t, 30*time.Second, cfg.FallbackRingTime)
	require.Empty(t, cfg.FallbackURI)
	require.NotNil(t, lot.Music())

	// The default orbits are 701-799, handed out lowest first while unused.
	c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), c.Orbit())
	require.True(t, c.Abandon())
}

func TestConfigValidationNamesTheField(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"timeout below Lync minimum", Config{PickupTimeout: 5 * time.Second}, "PickupTimeout"},
		{"timeout above Lync maximum", Config{PickupTimeout: 11 * time.Minute}, "PickupTimeout"},
		{"negative timeout", Config{PickupTimeout: -time.Second}, "PickupTimeout"},
		{"attempts above 10", Config{MaxPickupAttempts: 11}, "MaxPickupAttempts"},
		{"negative attempts", Config{MaxPickupAttempts: -1}, "MaxPickupAttempts"},
		{"ring time too short", Config{RecallRingTime: time.Millisecond}, "RecallRingTime"},
		{"fallback ring too long", Config{FallbackRingTime: time.Hour}, "FallbackRingTime"},
		{"fallback not sip", Config{FallbackURI: "tel:+15551234"}, "FallbackURI"},
		{"fallback without host", Config{FallbackURI: "sip:"}, "FallbackURI"},
		{"fallback with space", Config{FallbackURI: "sip:op erator@x"}, "FallbackURI"},
		{"music set but disabled", Config{DisableMusicOnHold: true, MusicOnHold: testMusic(t)}, "MusicOnHold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLot(tt.cfg)
			require.ErrorIs(t, err, ErrInvalidConfig)
			var ce *ConfigError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, tt.field, ce.Field)
			require.Contains(t, err.Error(), "Config."+tt.field)
		})
	}

	for _, ok := range []Config{
		{PickupTimeout: 10 * time.Second, MaxPickupAttempts: 10, RecallRingTime: time.Second},
		{PickupTimeout: 10 * time.Minute, FallbackURI: "sip:operator@example.com"},
		{FallbackURI: "SIP:7000@10.0.0.1:5060;transport=tcp"},
		{DisableMusicOnHold: true},
	} {
		if ok.MusicOnHold == nil && !ok.DisableMusicOnHold {
			ok.MusicOnHold = testMusic(t)
		}
		_, err := NewLot(ok)
		require.NoError(t, err, "%+v", ok)
	}
}

func TestMusicOnHoldReachesTheLeg(t *testing.T) {
	music := testMusic(t)
	lot, _, _ := newTestLot(t, "701-702", Config{MusicOnHold: music})
	leg := &testLeg{}
	c, err := lot.Park(t.Context(), ParkRequest{Leg: leg})
	require.NoError(t, err)
	require.Same(t, music, leg.music)
	c.Abandon()

	quiet, _, _ := newTestLot(t, "701-702", Config{DisableMusicOnHold: true})
	leg = &testLeg{}
	c, err = quiet.Park(t.Context(), ParkRequest{Leg: leg})
	require.NoError(t, err)
	holds, _ := leg.counts()
	require.Equal(t, 1, holds)
	require.Nil(t, leg.music, "music disabled: the leg holds in silence")
	c.Abandon()
}

func TestParkAssignsAndDirects(t *testing.T) {
	ctx := t.Context()
	lot, alloc, _ := newTestLot(t, "701-703", Config{})

	a, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com", Party: "sip:alice@example.com"})
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("701"), a.Orbit())
	require.Len(t, a.ID(), 24)

	b, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Orbit: "703"})
	require.NoError(t, err, "directed park onto a free orbit")
	require.Equal(t, orbit.Orbit("703"), b.Orbit())
	require.NotEqual(t, a.ID(), b.ID())

	_, err = lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Orbit: "703"})
	require.ErrorIs(t, err, ErrOrbitInUse, "directed park onto an occupied orbit is an error, never a pickup")
	_, err = lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Orbit: "799"})
	require.ErrorIs(t, err, ErrUnknownOrbit)

	c, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
	require.NoError(t, err)
	require.Equal(t, orbit.Orbit("702"), c.Orbit())

	_, err = lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
	require.ErrorIs(t, err, ErrLotFull)
	require.Equal(t, 3, lot.Len())
	require.Equal(t, 3, alloc.InUse())

	_, err = lot.Park(ctx, ParkRequest{})
	require.Error(t, err, "a request without a leg")

	for _, call := range []*Call{a, b, c} {
		require.True(t, call.Abandon())
	}
	require.Zero(t, alloc.InUse())
}

func TestParkFailsCleanlyWhenHoldFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, alloc, log := newTestLot(t, "701-701", Config{})
		holdErr := errors.New("no RTP port")
		_, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{holdErr: holdErr}})
		require.ErrorIs(t, err, holdErr)
		require.Zero(t, alloc.InUse(), "the orbit goes back")
		require.Zero(t, lot.Len())
		synctest.Wait()
		require.Empty(t, log.all(), "a park that failed is no event")
	})
}

func TestRetrieve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		lot, alloc, log := newTestLot(t, "701-709", Config{})
		leg := &testLeg{}
		parked, err := lot.Park(ctx, ParkRequest{Leg: leg})
		require.NoError(t, err)

		got, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: parked.Orbit(), Retriever: "sip:carol@example.com"})
		require.NoError(t, err)
		require.Same(t, parked, got)
		require.Same(t, leg, got.Leg(), "the retriever gets the parked leg to connect")
		require.Equal(t, Retrieved, got.Outcome())
		require.Zero(t, alloc.InUse(), "the orbit is free at once")
		<-got.Done()

		_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: parked.Orbit()})
		require.ErrorIs(t, err, ErrNotParked)
		_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: "999"})
		require.ErrorIs(t, err, ErrUnknownOrbit, "999 is in none of the lot's ranges")
		require.NotErrorIs(t, err, ErrNotParked)
		require.False(t, parked.Abandon(), "a retrieved call cannot be abandoned")
		_, hangups := leg.counts()
		require.Zero(t, hangups, "the lot never hangs up a call it handed over")

		synctest.Wait()
		require.Equal(t, []EventKind{EventParked, EventEnded}, log.kinds())
		require.Equal(t, Retrieved, log.all()[1].Outcome)
	})
}

func TestSafeRetrieve(t *testing.T) {
	ctx := t.Context()
	lot, _, _ := newTestLot(t, "701-701", Config{})
	first, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
	require.NoError(t, err)
	first.Abandon()
	second, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
	require.NoError(t, err)
	require.Equal(t, first.Orbit(), second.Orbit(), "one orbit: reused")

	// A retriever that still holds the first call's park ID must not get
	// the second call.
	_, err = lot.Retrieve(ctx, RetrieveRequest{Orbit: "701", ParkID: first.ID()})
	require.ErrorIs(t, err, ErrStale)
	require.Contains(t, err.Error(), first.ID())
	require.Equal(t, NoOutcome, second.Outcome(), "a failed safe retrieve hands nothing over")

	got, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: "701", ParkID: second.ID()})
	require.NoError(t, err)
	require.Same(t, second, got)
}

func TestConcurrentRetrievesHaveOneWinner(t *testing.T) {
	ctx := t.Context()
	lot, alloc, _ := newTestLot(t, "701-710", Config{})
	for round := 0; round < 50; round++ {
		c, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		const racers = 50
		results := make(chan error, racers)
		start := make(chan struct{})
		for range racers {
			go func() {
				<-start
				_, err := lot.Retrieve(ctx, RetrieveRequest{Orbit: c.Orbit()})
				results <- err
			}()
		}
		close(start)
		wins := 0
		for range racers {
			err := <-results
			if err == nil {
				wins++
			} else {
				require.ErrorIs(t, err, ErrNotParked)
			}
		}
		require.Equal(t, 1, wins)
	}
	require.Zero(t, alloc.InUse())
}

func TestAbandonWhileParkedFreesOrbitAndCancelsRecall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{}
		lot, alloc, log := newTestLot(t, "701-709", Config{Dialer: dialer, FallbackURI: "sip:op@example.com"})
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(30 * time.Second)
		require.True(t, c.Abandon())
		require.Zero(t, alloc.InUse())
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Empty(t, reqs, "no recall after the parked party hung up")
		require.Equal(t, []EventKind{EventParked, EventEnded}, log.kinds())
		require.Equal(t, Abandoned, c.Outcome())
	})
}

func TestRecallAnsweredByParker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:bob@example.com": answerAfter(4 * time.Second)}}
		lot, alloc, log := newTestLot(t, "701-709", Config{Dialer: dialer})
		leg := &testLeg{}
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
		require.NoError(t, err)

		<-c.Done()
		require.Equal(t, 94*time.Second, time.Since(start), "90 s pickup timeout, then 4 s of ringing")
		require.Equal(t, Recalled, c.Outcome())
		require.Zero(t, alloc.InUse(), "the orbit is free once the recall is answered")
		synctest.Wait()

		reqs, started, answers := dialer.log()
		require.Len(t, reqs, 1)
		require.Equal(t, DialRequest{Purpose: Recall, Target: "sip:bob@example.com", Attempt: 1, Call: reqs[0].Call}, reqs[0])
		require.Equal(t, c.Orbit(), reqs[0].Call.Orbit)
		require.Equal(t, 90*time.Second, started[0].Sub(start))
		require.Len(t, answers, 1)
		connects, hangups := answers[0].counts()
		require.Equal(t, 1, connects)
		require.Zero(t, hangups)
		require.Same(t, leg, answers[0].connected[0])
		require.Equal(t, []EventKind{EventParked, EventRinging, EventEnded}, log.kinds())
	})
}

func TestRecallAttemptsThenFallback(t *testing.T) {
	tests := []struct {
		name      string
		attempts  int
		parker    ringBehaviour
		fallback  ringBehaviour
		want      Outcome
		wantDials int
		wantEnd   time.Duration // from park to the end of the call
	}{
		{
			name: "two unanswered recalls, fallback answers", attempts: 2,
			parker: neverAnswer, fallback: answerAfter(3 * time.Second),
			want: Forwarded, wantDials: 3, wantEnd: 90*time.Second + 2*30*time.Second + 3*time.Second,
		},
		{
			name: "refusals end each attempt at once", attempts: 3,
			parker: refuseAfter(time.Second, errBusy), fallback: answerAfter(time.Second),
			want: Forwarded, wantDials: 4, wantEnd: 90*time.Second + 3*time.Second + time.Second,
		},
		{
			name: "second recall answered", attempts: 3,
			parker:    sequence(neverAnswer, answerAfter(2*time.Second)),
			fallback:  answerAfter(time.Second),
			want:      Recalled,
			wantDials: 2, wantEnd: 90*time.Second + 30*time.Second + 2*time.Second,
		},
		{
			name: "nobody answers: dropped after the fallback rang", attempts: 1,
			parker: neverAnswer, fallback: neverAnswer,
			want: Dropped, wantDials: 2, wantEnd: 90*time.Second + 30*time.Second + 30*time.Second,
		},
		{
			name: "fallback refuses (404): dropped", attempts: 1,
			parker: neverAnswer, fallback: refuseAfter(0, errors.New("404 Not Found")),
			want: Dropped, wantDials: 2, wantEnd: 90*time.Second + 30*time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dialer := &testDialer{behaviours: map[string]ringBehaviour{
					"sip:bob@example.com": tt.parker,
					"sip:op@example.com":  tt.fallback,
				}}
				lot, alloc, log := newTestLot(t, "701-709", Config{Dialer: dialer, MaxPickupAttempts: tt.attempts, FallbackURI: "sip:op@example.com"})
				leg := &testLeg{}
				start := time.Now()
				c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
				require.NoError(t, err)
				<-c.Done()
				require.Equal(t, tt.wantEnd, time.Since(start))
				require.Equal(t, tt.want, c.Outcome())
				synctest.Wait()
				require.Zero(t, alloc.InUse())

				reqs, _, _ := dialer.log()
				require.Len(t, reqs, tt.wantDials)
				for i, r := range reqs[:len(reqs)-1] {
					require.Equal(t, Recall, r.Purpose)
					require.Equal(t, i+1, r.Attempt)
				}
				_, hangups := leg.counts()
				if tt.want == Dropped {
					require.Equal(t, 1, hangups, "a dropped call is hung up once")
				} else {
					require.Zero(t, hangups)
				}
				ends := log.ended(c.ID())
				require.Len(t, ends, 1)
				require.Equal(t, tt.want, ends[0].Outcome)
				require.Equal(t, len(reqs), countKind(log.all(), EventRinging))
			})
		})
	}
}

// sequence answers the n-th dial with the n-th behaviour (the last repeats).
func sequence(bs ...ringBehaviour) ringBehaviour {
	n := 0
	return func(ctx context.Context, target string) (Answered, error) {
		b := bs[min(n, len(bs)-1)]
		n++
		return b(ctx, target)
	}
}

func countKind(events []Event, k EventKind) int {
	n := 0
	for _, e := range events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

func TestNoParkerGoesStraightToFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:op@example.com": answerAfter(time.Second)}}
		lot, _, _ := newTestLot(t, "701-709", Config{Dialer: dialer, MaxPickupAttempts: 3, FallbackURI: "sip:op@example.com"})
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		<-c.Done()
		require.Equal(t, 91*time.Second, time.Since(start))
		require.Equal(t, Forwarded, c.Outcome())
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1)
		require.Equal(t, Fallback, reqs[0].Purpose)
		require.Zero(t, c.Info().Attempts)
	})
}

func TestNoDialerDropsAtTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, alloc, _ := newTestLot(t, "701-709", Config{PickupTimeout: 10 * time.Second})
		leg := &testLeg{}
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		<-c.Done()
		require.Equal(t, 10*time.Second, time.Since(start))
		require.Equal(t, Dropped, c.Outcome())
		synctest.Wait()
		_, hangups := leg.counts()
		require.Equal(t, 1, hangups)
		require.Zero(t, alloc.InUse())
	})
}

func TestRetrieveDuringRecallWins(t *testing.T) {
	for _, purpose := range []DialPurpose{Recall, Fallback} {
		t.Run(purpose.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dialer := &testDialer{}
				cfg := Config{Dialer: dialer, FallbackURI: "sip:op@example.com"}
				lot, alloc, log := newTestLot(t, "701-709", cfg)
				parker := "sip:bob@example.com"
				if purpose == Fallback {
					parker = ""
				}
				c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: parker})
				require.NoError(t, err)
				time.Sleep(95 * time.Second)
				synctest.Wait()
				info := c.Info()
				if purpose == Recall {
					require.Equal(t, Recalling, info.State)
					require.Equal(t, 1, info.Attempts)
				} else {
					require.Equal(t, Forwarding, info.State)
				}

				got, err := lot.Retrieve(t.Context(), RetrieveRequest{Orbit: c.Orbit()})
				require.NoError(t, err)
				require.Same(t, c, got)
				synctest.Wait()
				require.Zero(t, alloc.InUse())
				reqs, _, answers := dialer.log()
				require.Len(t, reqs, 1, "the ringing was cancelled and nothing else was tried")
				require.Empty(t, answers)
				require.Equal(t, []EventKind{EventParked, EventRinging, EventEnded}, log.kinds())
				require.Equal(t, Retrieved, log.ended(c.ID())[0].Outcome)
			})
		})
	}
}

// An answer that comes back just after the call was taken must be hung up,
// never connected to a leg somebody else now owns.
func TestAnswerThatLosesTheRaceIsHungUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		dialer := &testDialer{behaviours: map[string]ringBehaviour{
			"sip:bob@example.com": func(ctx context.Context, target string) (Answered, error) {
				<-release // answers whatever the context says
				return &testAnswer{target: target}, nil
			},
		}}
		lot, _, _ := newTestLot(t, "701-709", Config{Dialer: dialer})
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(91 * time.Second)
		_, err = lot.Retrieve(t.Context(), RetrieveRequest{Orbit: c.Orbit()})
		require.NoError(t, err)
		close(release)
		synctest.Wait()
		_, _, answers := dialer.log()
		require.Len(t, answers, 1)
		connects, hangups := answers[0].counts()
		require.Zero(t, connects)
		require.Equal(t, 1, hangups)
		require.Equal(t, Retrieved, c.Outcome())
	})
}

func TestAbandonDuringRecallCancelsRinging(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{}
		lot, alloc, _ := newTestLot(t, "701-709", Config{Dialer: dialer, MaxPickupAttempts: 5, FallbackURI: "sip:op@example.com"})
		leg := &testLeg{}
		c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(100 * time.Second)
		require.True(t, c.Abandon())
		time.Sleep(time.Hour)
		synctest.Wait()
		reqs, _, _ := dialer.log()
		require.Len(t, reqs, 1)
		require.Equal(t, Abandoned, c.Outcome())
		_, hangups := leg.counts()
		require.Zero(t, hangups, "the party already hung up")
		require.Zero(t, alloc.InUse())
	})
}

func TestReplaceKeepsOrbitAndTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{"sip:carol@example.com": answerAfter(time.Second)}}
		lot, _, log := newTestLot(t, "701-709", Config{Dialer: dialer})
		consult := &testLeg{name: "consult"}
		start := time.Now()
		c, err := lot.Park(t.Context(), ParkRequest{Leg: consult, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		time.Sleep(40 * time.Second)

		other := &testLeg{name: "other"}
		require.NoError(t, c.Replace(t.Context(), ReplaceRequest{Leg: other, Parker: "sip:carol@example.com", Party: "sip:dave@example.com"}))
		require.Equal(t, "sip:dave@example.com", c.Info().Party, "the new leg's party is the one parked")
		require.Same(t, other, c.Leg())
		holds, _ := other.counts()
		require.Equal(t, 1, holds)
		_, hangups := consult.counts()
		require.Equal(t, 1, hangups, "the replaced leg is hung up")

		<-c.Done()
		require.Equal(t, 91*time.Second, time.Since(start), "the timer ran from the first park")
		require.Equal(t, Recalled, c.Outcome())
		reqs, _, answers := dialer.log()
		require.Equal(t, "sip:carol@example.com", reqs[0].Target, "the new parker is recalled")
		synctest.Wait()
		require.Same(t, other, answers[0].connected[0])
		require.Equal(t, []EventKind{EventParked, EventReplaced, EventRinging, EventEnded}, log.kinds())

		require.ErrorIs(t, c.Replace(t.Context(), ReplaceRequest{Leg: &testLeg{}}), ErrNotParked)
	})
}

func TestSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, _, _ := newTestLot(t, "701-709", Config{Dialer: &testDialer{}, MaxPickupAttempts: 2})
		t0 := time.Now()
		a, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com", Party: "sip:alice@example.com"})
		require.NoError(t, err)
		time.Sleep(80 * time.Second)
		b, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}, Orbit: "705"})
		require.NoError(t, err)
		time.Sleep(45 * time.Second) // a: recall attempt 2 rings; b: parked
		synctest.Wait()

		calls := lot.Calls()
		require.Equal(t, []CallInfo{
			{Orbit: "701", ParkID: a.ID(), Parker: "sip:bob@example.com", Party: "sip:alice@example.com", Since: t0, State: Recalling, Attempts: 2},
			{Orbit: "705", ParkID: b.ID(), Since: t0.Add(80 * time.Second), State: Parked, RecallAt: t0.Add(170 * time.Second)},
		}, calls)
		info, ok := lot.Lookup("705")
		require.True(t, ok)
		require.Equal(t, calls[1], info)
		_, ok = lot.Lookup("702")
		require.False(t, ok)
		require.NoError(t, lot.Shutdown(t.Context()))
	})
}

func TestShutdownRecallsEveryCallAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{behaviours: map[string]ringBehaviour{
			"sip:bob@example.com":   answerAfter(2 * time.Second),
			"sip:carol@example.com": neverAnswer,
			"sip:op@example.com":    answerAfter(time.Second),
		}}
		lot, alloc, log := newTestLot(t, "701-709", Config{Dialer: dialer, MaxPickupAttempts: 5, FallbackURI: "sip:op@example.com"})
		ctx := t.Context()
		bobs, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		carols, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}, Parker: "sip:carol@example.com"})
		require.NoError(t, err)
		nobodys, err := lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		time.Sleep(5 * time.Second)

		start := time.Now()
		require.NoError(t, lot.Shutdown(ctx))
		// Carol's one recall rings for 30 s, then the fallback answers in 1 s.
		require.Equal(t, 31*time.Second, time.Since(start))
		require.Equal(t, Recalled, bobs.Outcome())
		require.Equal(t, Forwarded, carols.Outcome())
		require.Equal(t, Forwarded, nobodys.Outcome())
		require.Zero(t, alloc.InUse())
		reqs, started, _ := dialer.log()
		require.Len(t, reqs, 4, "one recall each for bob and carol, two fallbacks")
		for i, r := range reqs {
			if r.Purpose == Recall {
				require.Equal(t, start, started[i], "recalls start at once")
				require.Equal(t, 1, r.Attempt, "one attempt on shutdown, whatever MaxPickupAttempts says")
			}
		}
		require.Len(t, log.ended(bobs.ID()), 1)

		_, err = lot.Park(ctx, ParkRequest{Leg: &testLeg{}})
		require.ErrorIs(t, err, ErrClosed)
		require.NoError(t, lot.Shutdown(ctx), "a second shutdown returns at once")
	})
}

func TestShutdownDeadlineDropsWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{}
		lot, alloc, _ := newTestLot(t, "701-709", Config{Dialer: dialer, RecallRingTime: time.Minute})
		legs := []*testLeg{{}, {}, {}}
		var calls []*Call
		for _, leg := range legs {
			c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
			require.NoError(t, err)
			calls = append(calls, c)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		err := lot.Shutdown(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 10*time.Second, time.Since(start))
		for i, c := range calls {
			require.Equal(t, Dropped, c.Outcome())
			_, hangups := legs[i].counts()
			require.Equal(t, 1, hangups)
		}
		require.Zero(t, alloc.InUse())
		require.Zero(t, lot.Len())
	})
}

// A hundred parties whose phones have gone, and parkers who do not answer:
// past the deadline the legs are hung up together, each given a short
// while, so the exit is not held for a hundred hang-up timeouts.
func TestShutdownDropsGonePartiesTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dialer := &testDialer{}
		lot, _, _ := newTestLot(t, "701-800", Config{Dialer: dialer, RecallRingTime: time.Minute})
		var legs []*testLeg
		for range 100 {
			leg := &testLeg{gone: true}
			_, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
			require.NoError(t, err)
			legs = append(legs, leg)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		start := time.Now()
		require.ErrorIs(t, lot.Shutdown(ctx), context.DeadlineExceeded)
		require.Equal(t, 10*time.Second+dropHangupTimeout, time.Since(start))
		for _, leg := range legs {
			_, hangups := leg.counts()
			require.Equal(t, 1, hangups)
		}
		require.Zero(t, lot.Len())
	})
}

func TestShutdownWithoutDialerDropsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, _, _ := newTestLot(t, "701-709", Config{})
		leg := &testLeg{}
		c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: "sip:bob@example.com"})
		require.NoError(t, err)
		start := time.Now()
		require.NoError(t, lot.Shutdown(t.Context()))
		require.Zero(t, time.Since(start))
		require.Equal(t, Dropped, c.Outcome())
	})
}

// TestSingleOutcomeUnderRaces fires retrieve, hang-up and an answering recall
// at the same instant, many times, and checks that each call ended exactly
// once, with an outcome that matches what each party was told.
func TestSingleOutcomeUnderRaces(t *testing.T) {
	const rounds = 300
	counts := map[Outcome]int{}
	for round := range rounds {
		synctest.Test(t, func(t *testing.T) {
			dialer := &testDialer{behaviours: map[string]ringBehaviour{
				"sip:bob@example.com": answerAfter(0),
				"sip:op@example.com":  answerAfter(0),
			}}
			lot, alloc, log := newTestLot(t, "701-702", Config{Dialer: dialer, PickupTimeout: 10 * time.Second, FallbackURI: "sip:op@example.com"})
			leg := &testLeg{}
			parker := "sip:bob@example.com"
			if round%2 == 1 {
				parker = ""
			}
			c, err := lot.Park(t.Context(), ParkRequest{Leg: leg, Parker: parker})
			require.NoError(t, err)

			var retrieved, abandoned bool
			done := make(chan struct{}, 2)
			time.AfterFunc(10*time.Second, func() {
				_, err := lot.Retrieve(context.Background(), RetrieveRequest{Orbit: c.Orbit()})
				retrieved = err == nil
				done <- struct{}{}
			})
			time.AfterFunc(10*time.Second, func() {
				abandoned = c.Abandon()
				done <- struct{}{}
			})
			<-done
			<-done
			<-c.Done()
			synctest.Wait()

			ends := log.ended(c.ID())
			require.Len(t, ends, 1, "exactly one end per call")
			outcome := ends[0].Outcome
			require.Equal(t, outcome, c.Outcome())
			counts[outcome]++
			require.Equal(t, outcome == Retrieved, retrieved)
			require.Equal(t, outcome == Abandoned, abandoned)
			_, _, answers := dialer.log()
			connected := 0
			for _, a := range answers {
				n, h := a.counts()
				connected += n
				require.Equal(t, 1, n+h, "every answered call is connected or hung up, once")
			}
			require.Equal(t, outcome == Recalled || outcome == Forwarded, connected == 1)
			require.LessOrEqual(t, connected, 1)
			_, hangups := leg.counts()
			require.Zero(t, hangups, "nobody dropped this call")
			require.Zero(t, alloc.InUse(), "no orbit leaked")
			require.Zero(t, lot.Len())
		})
	}
	t.Logf("outcomes over %d rounds: %v", rounds, counts)
	require.Greater(t, counts[Retrieved]+counts[Abandoned], 0)
}

func TestObserverStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lot, _, _ := newTestLot(t, "701-709", Config{})
		var seen []EventKind
		stop := lot.Observe(ObserverFunc(func(e Event) { seen = append(seen, e.Kind) }))
		c, err := lot.Park(t.Context(), ParkRequest{Leg: &testLeg{}})
		require.NoError(t, err)
		synctest.Wait()
		stop()
		stop() // idempotent
		c.Abandon()
		synctest.Wait()
		require.Equal(t, []EventKind{EventParked}, seen)
	})
}

func TestEventString(t *testing.T) {
	e := Event{Kind: EventRingFailed, Call: CallInfo{Orbit: "701", ParkID: "abc"}, Purpose: Recall, Target: "sip:bob@x", Attempt: 2, Err: errBusy}
	require.Equal(t, "ring-failed orbit=701 park-id=abc recall=sip:bob@x attempt=2 err=486 Busy Here", e.String())
	e = Event{Kind: EventEnded, Call: CallInfo{Orbit: "701", ParkID: "abc"}, Outcome: Forwarded}
	require.Equal(t, "ended orbit=701 park-id=abc outcome=forwarded", e.String())
}

func TestIsSIPURI(t *testing.T) {
	for s, want := range map[string]bool{
		"sip:op@example.com":            true,
		"sip:example.com":               true,
		"SIP:7000@10.0.0.1:5060":        true,
		"sip:op@[::1]:5060":             true,
		"sips:op@example.com":           false,
		"tel:+15551234":                 false,
		"sip:":                          false,
		"sip:@example.com":              false,
		"sip:op@":                       false,
		"<sip:op@example.com>":          false,
		"sip:op@example.com\r\nX: evil": false,
	} {
		require.Equal(t, want, IsSIPURI(s), s)
	}
}

func TestBuiltinMusicIsTheDefault(t *testing.T) {
	lot, err := NewLot(Config{})
	require.NoError(t, err)
	require.Equal(t, BuiltinMusic(), lot.Music(), "nil MusicOnHold is the host's built-in music")
	quiet, err := NewLot(Config{DisableMusicOnHold: true})
	require.NoError(t, err)
	require.Nil(t, quiet.Music())
}

// TestNoMediaLibraries keeps the lot's build small for a vendor who embeds
// it with its own SIP and media stack: park compiles no pion module (nor
// anything of media).
func TestNoMediaLibraries(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for dep := range strings.SplitSeq(string(out), "\n") {
		require.NotContains(t, dep, "github.com/pion/", "park must not compile pion")
		require.NotEqual(t, "github.com/callpark/callpark/media", dep)
	}
}
