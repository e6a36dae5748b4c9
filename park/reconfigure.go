package park

import (
	"fmt"

	"github.com/callpark/callpark/orbit"
)

// settings are what a running lot reads of its configuration; Reconfigure
// and SetRanges replace them whole, so a reader sees one or the other.
type settings struct {
	cfg    Config        // with defaults filled in
	music  Music         // what parked callers hear; nil: music disabled
	ranges []orbit.Range // the allocator's, when it is an orbit.Ranger
}

func newSettings(cfg Config, ranges []orbit.Range) *settings {
	s := &settings{cfg: cfg, ranges: ranges}
	if !cfg.DisableMusicOnHold {
		s.music = cfg.MusicOnHold
		if s.music == nil {
			s.music = BuiltinMusic()
		}
	}
	return s
}

// Reconfigure changes a running lot's settings, as a reload of its
// configuration file does: PickupTimeout, MaxPickupAttempts,
// RecallRingTime, FallbackURI, FallbackRingTime, DisableMusicOnHold and
// MusicOnHold, checked as NewLot checks them (zero values mean the
// defaults). The other fields (Orbits, Cluster, Dialer, Adopter,
// AuthorizeRetrieve, Logger) are the lot's for its life and are ignored;
// SetRanges changes the orbit ranges.
//
// Nothing parked is touched: a call keeps the recall time it was given
// and the music it is hearing, and a recall that is ringing goes on as it
// started. Calls parked from now on get the new settings, and so do recall
// sequences that start from now on. On error the lot keeps its settings.
func (l *Lot) Reconfigure(cfg Config) error {
	next, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	l.mu.Lock() // one change at a time
	defer l.mu.Unlock()
	cur := l.live.Load()
	c := cur.cfg
	c.PickupTimeout, c.MaxPickupAttempts, c.RecallRingTime = next.PickupTimeout, next.MaxPickupAttempts, next.RecallRingTime
	c.FallbackURI, c.FallbackRingTime = next.FallbackURI, next.FallbackRingTime
	c.DisableMusicOnHold, c.MusicOnHold = next.DisableMusicOnHold, next.MusicOnHold
	l.live.Store(newSettings(c, cur.ranges))
	return nil
}

// SetRanges changes the orbit ranges of a running lot, when its allocator
// can (orbit.Reranger: the in-memory one can, a cluster's shared one
// cannot, since every node serves the same table). A call parked in an
// orbit the new ranges leave out stays there until it ends, and can still
// be retrieved; its orbit is then gone. New parks use the new ranges.
func (l *Lot) SetRanges(ranges []orbit.Range) error {
	rr, ok := l.orbits.(orbit.Reranger)
	if !ok {
		return fmt.Errorf("park: the lot's orbit allocator (%T) cannot change its ranges while it runs: %w", l.orbits, ErrInvalidConfig)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := rr.SetRanges(ranges); err != nil {
		return err
	}
	cur := l.live.Load()
	l.live.Store(&settings{cfg: cur.cfg, music: cur.music, ranges: rr.Ranges()})
	return nil
}
