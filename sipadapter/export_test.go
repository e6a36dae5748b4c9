package sipadapter

// Counters for the tests' leak checks.

// OpenLegs returns the number of SIP dialogs the server holds a leg for.
func (s *Server) OpenLegs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.legs)
}

// PortsInUse returns the number of RTP ports handed out.
func (s *Server) PortsInUse() int { return s.ports.InUse() }

// Subscriptions returns the number of live BLF subscriptions.
func (s *Server) Subscriptions() int {
	if s.blf == nil {
		return 0
	}
	return s.blf.Len()
}
