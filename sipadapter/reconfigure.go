package sipadapter

import (
	"fmt"
	"slices"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
)

// Reconfigure applies a reload while calls are parked: the lot's settings
// (timers, fallback, music: park.Lot.Reconfigure) and, when orbits is not
// nil and lists other ranges than the lot's, the orbit ranges
// (park.Lot.SetRanges), which the engine and its BLF then answer for. Every
// parked call, ringing recall and BLF subscription goes on untouched; a
// call parked in a range the reload removed can be retrieved until it
// ends. On error nothing has changed.
func (e *Engine) Reconfigure(pc park.Config, orbits *orbit.Table) error {
	table, err := reconfigure(e.lot, pc, orbits, e.cfg.ParkExtension, "orbits")
	if err != nil {
		return err
	}
	if table != nil {
		e.table.Store(table)
		e.blf.table.Store(table)
	}
	return nil
}

// reconfigure is the reload of a lot served under parkExt, for an Engine
// and a Server not yet listening. It returns the new table of orbits to
// answer for, nil when the ranges are unchanged.
func reconfigure(lot *park.Lot, pc park.Config, orbits *orbit.Table, parkExt, field string) (*orbit.Table, error) {
	if err := checkMusic(pc.MusicOnHold); err != nil {
		return nil, &ConfigError{"MusicOnHold", pc.MusicOnHold.Name(), err.Error()}
	}
	var ranges []orbit.Range
	if orbits != nil {
		if pools := orbits.Pools(); len(pools) != 1 || pools[0] != "" {
			return nil, &ConfigError{field, orbits.String(), "must be plain ranges (no pool names): a lot's own orbits"}
		}
		if _, err := orbit.ParseOrbit(parkExt); err == nil && servesOrbit(orbits, orbit.Orbit(parkExt)) {
			return nil, &ConfigError{field, orbits.String(), fmt.Sprintf("holds the park extension %s; it must be outside every range", parkExt)}
		}
		if r := orbits.Ranges(""); !slices.Equal(r, lot.Ranges()) {
			ranges = r
		}
	}
	old := lot.Config()
	if err := lot.Reconfigure(pc); err != nil {
		return nil, err
	}
	if ranges == nil {
		return nil, nil
	}
	if err := lot.SetRanges(ranges); err != nil {
		_ = lot.Reconfigure(old) // it was valid: it goes back as it was
		return nil, err
	}
	return servedOrbits(nil, lot, field)
}

// Reconfigure is Engine.Reconfigure for the server's lot, before or after
// Listen.
func (s *Server) Reconfigure(pc park.Config, orbits *orbit.Table) error {
	if e := s.listeningEngine(); e != nil {
		if err := e.Reconfigure(pc, orbits); err != nil {
			return err
		}
		s.mu.Lock()
		s.table = e.table.Load()
		s.mu.Unlock()
		return nil
	}
	table, err := reconfigure(s.lot, pc, orbits, s.cfg.ParkExtension, "orbits")
	if err != nil || table == nil {
		return err
	}
	s.mu.Lock()
	s.table = table
	s.mu.Unlock()
	return nil
}
