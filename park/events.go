package park

import (
	"slices"
	"sync"
)

// eventQueue delivers a lot's events to its observers in order, from one
// goroutine that exists only while there is something to deliver: an idle
// lot owns no goroutine, and a slow observer never blocks the lot.
type eventQueue struct {
	mu        sync.Mutex
	observers []*observerEntry // replaced, never mutated, so the pump can range over a copy
	pending   []Event
	pumping   bool
	idle      chan struct{} // closed when the current pump exits
}

type observerEntry struct{ o Observer }

func (q *eventQueue) add(o Observer) (stop func()) {
	e := &observerEntry{o}
	q.mu.Lock()
	q.observers = append(slices.Clone(q.observers), e)
	q.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			next := make([]*observerEntry, 0, len(q.observers))
			for _, x := range q.observers {
				if x != e {
					next = append(next, x)
				}
			}
			q.observers = next
		})
	}
}

// push queues e. Callers hold the lot's mutex, so queue order is change order.
func (q *eventQueue) push(e Event) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.observers) == 0 {
		return // nobody listens: nothing to keep
	}
	q.pending = append(q.pending, e)
	if !q.pumping {
		q.pumping = true
		q.idle = make(chan struct{})
		go q.pump(q.idle)
	}
}

func (q *eventQueue) pump(idle chan struct{}) {
	defer close(idle)
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.pumping = false
			q.pending = nil // let a burst's backing array go
			q.mu.Unlock()
			return
		}
		batch := q.pending
		q.pending = make([]Event, 0, len(batch))
		observers := q.observers
		q.mu.Unlock()
		for _, e := range batch {
			for _, o := range observers {
				o.o.Observe(e)
			}
		}
	}
}

// wait returns once every queued event has been delivered.
func (q *eventQueue) wait() {
	for {
		q.mu.Lock()
		idle, pumping := q.idle, q.pumping
		q.mu.Unlock()
		if !pumping {
			return
		}
		<-idle
	}
}
