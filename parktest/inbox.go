package parktest

import (
	"context"
	"slices"
	"sync"
)

// Message is a MESSAGE request the phone received: the park server's
// "Parked at 701".
type Message struct {
	From        string // the From URI
	ContentType string // the Content-Type header, empty if none
	Body        string
}

// Inbox counts what reached a phone from outside its calls: new INVITEs
// (answered or not), the CANCELs of ringing ones, and MESSAGEs. A test of
// recalls reads it: "the parker's phone rang twice and was cancelled once".
// Get it from Phone.Inbox; it is safe for concurrent use.
type Inbox struct {
	closing <-chan struct{} // the phone's: waits end with ErrPhoneClosed

	mu       sync.Mutex
	invites  int
	cancels  int
	messages []Message
	changed  chan struct{} // closed and replaced on every change
}

func newInbox(closing <-chan struct{}) *Inbox {
	return &Inbox{closing: closing, changed: make(chan struct{})}
}

// Invites returns how many new INVITEs (not re-INVITEs) have arrived.
func (b *Inbox) Invites() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.invites
}

// Cancels returns how many ringing INVITEs the caller cancelled.
func (b *Inbox) Cancels() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cancels
}

// Messages returns the MESSAGE requests received so far, oldest first.
func (b *Inbox) Messages() []Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.messages)
}

// WaitInvites waits until at least n new INVITEs have arrived.
func (b *Inbox) WaitInvites(ctx context.Context, n int) error {
	return b.waitUntil(ctx, func() bool { return b.invites >= n })
}

// WaitCancels waits until at least n ringing INVITEs have been cancelled.
func (b *Inbox) WaitCancels(ctx context.Context, n int) error {
	return b.waitUntil(ctx, func() bool { return b.cancels >= n })
}

// WaitMessages waits until at least n MESSAGEs have arrived and returns them
// all.
func (b *Inbox) WaitMessages(ctx context.Context, n int) ([]Message, error) {
	if err := b.waitUntil(ctx, func() bool { return len(b.messages) >= n }); err != nil {
		return nil, err
	}
	return b.Messages(), nil
}

// waitUntil waits until cond, evaluated under b.mu, holds.
func (b *Inbox) waitUntil(ctx context.Context, cond func() bool) error {
	for {
		b.mu.Lock()
		ok, changed := cond(), b.changed
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.closing:
			return ErrPhoneClosed
		}
	}
}

// record applies one arrival under the lock and wakes the waiters.
func (b *Inbox) record(apply func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	apply()
	close(b.changed)
	b.changed = make(chan struct{})
}

func (b *Inbox) addInvite() { b.record(func() { b.invites++ }) }
func (b *Inbox) addCancel() { b.record(func() { b.cancels++ }) }
func (b *Inbox) addMessage(m Message) {
	b.record(func() { b.messages = append(b.messages, m) })
}
