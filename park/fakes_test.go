package park

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
)

// testLeg is a parked leg that records what the lot asked of it.
type testLeg struct {
	name    string
	holdErr error
	// gone makes Hangup wait for its context to end, as a BYE to a phone
	// that has vanished does.
	gone bool

	mu      sync.Mutex
	holds   int
	music   Music
	hangups int
}

func (l *testLeg) Hold(_ context.Context, music Music) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holdErr != nil {
		return l.holdErr
	}
	l.holds++
	l.music = music
	return nil
}

func (l *testLeg) Hangup(ctx context.Context) error {
	l.mu.Lock()
	l.hangups++
	gone := l.gone
	l.mu.Unlock()
	if gone {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (l *testLeg) counts() (holds, hangups int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holds, l.hangups
}

// testAnswer is an answered recall or fallback call.
type testAnswer struct {
	target string

	mu        sync.Mutex
	connected []Leg
	hangups   int
}

func (a *testAnswer) Connect(_ context.Context, leg Leg) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.connected = append(a.connected, leg)
	return nil
}

func (a *testAnswer) Hangup(context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hangups++
	return nil
}

func (a *testAnswer) counts() (connects, hangups int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.connected), a.hangups
}

// ringBehaviour is how a dialled target reacts.
type ringBehaviour func(ctx context.Context, target string) (Answered, error)

// answerAfter picks up after d unless the ringing is cancelled first.
func answerAfter(d time.Duration) ringBehaviour {
	return func(ctx context.Context, target string) (Answered, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return &testAnswer{target: target}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// neverAnswer rings until cancelled.
func neverAnswer(ctx context.Context, _ string) (Answered, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// refuseAfter answers with a final error (486, 603, ...) after d.
func refuseAfter(d time.Duration, err error) ringBehaviour {
	return func(ctx context.Context, _ string) (Answered, error) {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// testDialer rings targets with a per-target behaviour and records every
// request and answer.
type testDialer struct {
	behaviours map[string]ringBehaviour // by target; missing: neverAnswer

	mu       sync.Mutex
	requests []DialRequest
	started  []time.Time
	answers  []*testAnswer
}

func (d *testDialer) Dial(ctx context.Context, req DialRequest) (Answered, error) {
	d.mu.Lock()
	d.requests = append(d.requests, req)
	d.started = append(d.started, time.Now())
	b := d.behaviours[req.Target]
	d.mu.Unlock()
	if b == nil {
		b = neverAnswer
	}
	a, err := b(ctx, req.Target)
	if ta, ok := a.(*testAnswer); ok {
		d.mu.Lock()
		d.answers = append(d.answers, ta)
		d.mu.Unlock()
	}
	return a, err
}

func (d *testDialer) log() ([]DialRequest, []time.Time, []*testAnswer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]DialRequest(nil), d.requests...), append([]time.Time(nil), d.started...), append([]*testAnswer(nil), d.answers...)
}

// eventLog records every event a lot publishes.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (e *eventLog) Observe(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.events = append(e.events, ev)
}

func (e *eventLog) all() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.events...)
}

func (e *eventLog) kinds() []EventKind {
	var out []EventKind
	for _, ev := range e.all() {
		out = append(out, ev.Kind)
	}
	return out
}

func (e *eventLog) ended(parkID string) []Event {
	var out []Event
	for _, ev := range e.all() {
		if ev.Kind == EventEnded && ev.Call.ParkID == parkID {
			out = append(out, ev)
		}
	}
	return out
}

// testMusic is a tiny clip so tests do not generate the built-in music.
func testMusic(t testing.TB) *media.Clip {
	t.Helper()
	c, err := media.Tone("test", 440, 100*time.Millisecond)
	require.NoError(t, err)
	return c
}

// newTestLot builds a lot over orbits (e.g. "701-703") with a test dialer,
// observed by an event log.
func newTestLot(t testing.TB, orbits string, cfg Config) (*Lot, *orbit.MemoryAllocator, *eventLog) {
	t.Helper()
	r, err := orbit.ParseRange(orbits)
	require.NoError(t, err)
	alloc, err := orbit.NewMemoryAllocator([]orbit.Range{r}, orbit.MemoryOptions{})
	require.NoError(t, err)
	cfg.Orbits = alloc
	if cfg.MusicOnHold == nil && !cfg.DisableMusicOnHold {
		cfg.MusicOnHold = testMusic(t)
	}
	lot, err := NewLot(cfg)
	require.NoError(t, err)
	log := &eventLog{}
	lot.Observe(log)
	return lot, alloc, log
}

var errBusy = errors.New("486 Busy Here")
