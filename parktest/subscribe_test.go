package parktest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// orbitBLF is a served BLF state: orbit 701, with a parked call or empty.
type orbitBLF struct {
	version atomic.Int64
	parked  atomic.Bool
}

// document returns the next dialog-info document (version + 1 each time).
// It runs on the phone's request goroutine too, so it reports a failure in
// the body, which the test's ParseDialogInfo then rejects.
func (o *orbitBLF) document() []byte {
	info := DialogInfo{Version: int(o.version.Add(1) - 1), State: "full", Entity: "sip:701@127.0.0.1"}
	if o.parked.Load() {
		info.Dialogs = []DialogInfoDialog{{ID: "park-1", State: "confirmed", Direction: "recipient", Remote: "sip:carol@127.0.0.1"}}
	}
	b, err := info.Marshal()
	if err != nil {
		return []byte(err.Error())
	}
	return b
}

// nextNotify reads one NOTIFY or fails the test.
func nextNotify(t *testing.T, ctx context.Context, s *Subscription) Notify {
	t.Helper()
	select {
	case n := <-s.Notifies():
		return n
	case <-ctx.Done():
		require.FailNow(t, "no NOTIFY arrived")
		return Notify{}
	}
}

func TestSubscribeNotifyUnsubscribe(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			var blf orbitBLF
			lamp := &Notifier{Event: "dialog", ContentType: "application/dialog-info+xml", State: blf.document}
			watcherPhone := NewPhone(t, PhoneOptions{User: "alice", Transport: tr})
			server := NewPhone(t, PhoneOptions{User: "bob", Transport: tr, Serve: []*Notifier{lamp}})

			sub, err := watcherPhone.Subscribe(ctx, server.URI(), "dialog", time.Hour)
			require.NoError(t, err)

			first := nextNotify(t, ctx, sub)
			require.Equal(t, "dialog", first.Event)
			require.Equal(t, "active;expires=3600", first.State)
			require.Equal(t, "application/dialog-info+xml", first.ContentType)
			require.False(t, first.Terminated())
			info, err := ParseDialogInfo(first.Body)
			require.NoError(t, err)
			require.Equal(t, 0, info.Version)
			require.Empty(t, info.Dialogs)

			blf.parked.Store(true)
			n, err := lamp.Notify(ctx, blf.document())
			require.NoError(t, err)
			require.Equal(t, 1, n)
			update := nextNotify(t, ctx, sub)
			info, err = ParseDialogInfo(update.Body)
			require.NoError(t, err)
			require.Equal(t, 1, info.Version)
			require.Len(t, info.Dialogs, 1)
			require.Equal(t, "confirmed", info.Dialogs[0].State)

			require.NoError(t, sub.Unsubscribe(ctx))
			final := nextNotify(t, ctx, sub)
			require.True(t, final.Terminated())
			require.Equal(t, "terminated;reason=timeout", final.State)
			<-sub.Done()
			require.NoError(t, sub.Unsubscribe(ctx), "an ended subscription: nothing to do")

			n, err = lamp.Notify(ctx, blf.document())
			require.NoError(t, err)
			require.Zero(t, n, "the watcher is gone")
		})
	}
}

func TestSubscribeRejected(t *testing.T) {
	tests := []struct {
		name  string
		event string
		want  int
	}{
		{name: "unknown package is 489", event: "presence", want: 489},
		{name: "refer is not served here either", event: "refer", want: 489},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			watcherPhone, server := servingPair(t, &Notifier{Event: "dialog", ContentType: "application/dialog-info+xml"})
			_, err := watcherPhone.Subscribe(ctx, server.URI(), tt.event, time.Hour)
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tt.want, se.Code)
			require.Equal(t, "dialog", se.Response.GetHeader("Allow-Events").Value())
		})
	}
}

func TestSubscribeExpiresZeroFetchesOnce(t *testing.T) {
	ctx := testContext(t)
	watcherPhone, server := servingPair(t, &Notifier{Event: "dialog", ContentType: "application/dialog-info+xml",
		State: func() []byte { return []byte("state") }})
	sub, err := watcherPhone.Subscribe(ctx, server.URI(), "dialog", 0)
	require.NoError(t, err)
	n := nextNotify(t, ctx, sub)
	require.True(t, n.Terminated())
	require.Equal(t, "state", string(n.Body))
	<-sub.Done()
}

func TestSubscribeRefresh(t *testing.T) {
	ctx := testContext(t)
	watcherPhone, server := servingPair(t, &Notifier{Event: "dialog", ContentType: "application/dialog-info+xml",
		State: func() []byte { return []byte("x") }})
	sub, err := watcherPhone.Subscribe(ctx, server.URI(), "dialog", time.Minute)
	require.NoError(t, err)
	require.Equal(t, "active;expires=60", nextNotify(t, ctx, sub).State)
	// A refresh inside the subscription's dialog gets a fresh NOTIFY.
	req := sub.dlg.newRequest("SUBSCRIBE")
	req.AppendHeader(sipHeader("Event", "dialog"))
	req.AppendHeader(sipHeader("Expires", "120"))
	res, err := watcherPhone.do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	require.Equal(t, "active;expires=120", nextNotify(t, ctx, sub).State)
}

func TestSubscribeInvalidArguments(t *testing.T) {
	p := NewPhone(t, PhoneOptions{User: "alice"})
	ctx := testContext(t)
	_, err := p.Subscribe(ctx, p.URI(), "dia log", time.Hour)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = p.Subscribe(ctx, p.URI(), "dialog", -time.Second)
	require.ErrorIs(t, err, ErrInvalidOptions)
	_, err = p.Subscribe(ctx, "nonsense", "dialog", time.Hour)
	require.ErrorIs(t, err, ErrBadTarget)
	_, err = (&Notifier{Event: "dialog"}).Notify(ctx, nil)
	require.ErrorIs(t, err, ErrInvalidOptions, "a notifier no phone serves")
}

func TestServeInvalid(t *testing.T) {
	lamp := &Notifier{Event: "dialog"}
	tests := []struct {
		name  string
		serve []*Notifier
	}{
		{name: "nil", serve: []*Notifier{nil}},
		{name: "not a token", serve: []*Notifier{{Event: "dia log"}}},
		{name: "twice", serve: []*Notifier{{Event: "dialog"}, {Event: "dialog"}}},
		{name: "already serving", serve: []*Notifier{lamp}},
	}
	NewPhone(t, PhoneOptions{User: "bob", Serve: []*Notifier{lamp}})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := StartPhone(PhoneOptions{User: "carol", Serve: tt.serve})
			require.ErrorIs(t, err, ErrInvalidOptions)
		})
	}
}

// servingPair starts a watcher phone and a phone serving subscriptions
// with serve, both over UDP.
func servingPair(t *testing.T, serve ...*Notifier) (watcher, server *Phone) {
	t.Helper()
	watcher = NewPhone(t, PhoneOptions{User: "alice"})
	server = NewPhone(t, PhoneOptions{User: "bob", Serve: serve})
	return watcher, server
}
