package sipadapter

import "net/netip"

// Counters for the tests' leak checks.

// OpenLegs returns the number of SIP dialogs the server holds a leg for.
func (s *Server) OpenLegs() int {
	if s.engine == nil {
		return 0
	}
	return s.engine.Len()
}

// PortsInUse returns the number of RTP ports handed out.
func (s *Server) PortsInUse() int { return s.ports.InUse() }

// Subscriptions returns the number of live BLF subscriptions.
func (s *Server) Subscriptions() int {
	if s.engine == nil {
		return 0
	}
	return s.engine.Subscriptions()
}

// DialogsFrom returns how many dialogs the server counts against src
// (Limits.DialogsPerSource).
func (s *Server) DialogsFrom(src netip.Addr) int { return s.engine.guard.dialogsFrom(src) }

// SubscriptionsFrom returns how many BLF subscriptions are counted against
// src (Limits.SubscriptionsPerSource).
func (s *Server) SubscriptionsFrom(src netip.Addr) int {
	if s.engine == nil {
		return 0
	}
	b := s.engine.blf
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perSource[src]
}

// The engine's own pieces, under the names the external tests use.
type (
	BLF       = blfService
	BLFConfig = blfConfig
	LegConfig = legConfig
	Refusal   = mediaRefusal
)

var (
	NewBLF        = newBLF
	NewLeg        = newCallLeg
	ParseReplaces = parseReplaces
	Warning       = warning
	StatusFor     = statusFor
	StatusSipfrag = statusSipfrag
	ParkedSipfrag = parkedSipfrag
	ReferredBy    = referredBy
)

// PortsFree returns the number of RTP ports in the pool's free queue.
func (s *Server) PortsFree() int {
	s.ports.mu.Lock()
	defer s.ports.mu.Unlock()
	return len(s.ports.free)
}
