package sipadapter

import (
	"log/slog"

	"github.com/callpark/callpark/media"
)

// newSharedPort takes a port from ports for the parked legs to share
// (EngineConfig.SharedRTPPort).
func newSharedPort(ports *PortPool, sched *media.Scheduler, log *slog.Logger) (*media.SharedPort, error) {
	conn, err := ports.takeShared()
	if err != nil {
		return nil, err
	}
	p, err := media.NewSharedPort(conn, media.SharedPortOptions{Scheduler: sched, Logger: log.With("component", "rtp")})
	if err != nil {
		ports.freeShared(conn)
		return nil, err
	}
	return p, nil
}

// closeShared closes the shared RTP port, once every leg on it has ended,
// and gives it back to the pool. It is idempotent.
func (e *Engine) closeShared() {
	p := e.media.Shared
	if p == nil {
		return
	}
	e.sharedOnce.Do(func() {
		p.Close()
		e.ports.returnShared(p.LocalAddr().Port())
	})
}

// SharedRTPStats returns the counters of the shared RTP port
// (EngineConfig.SharedRTPPort), and false when there is none.
func (e *Engine) SharedRTPStats() (media.SharedPortStats, bool) {
	if e.media.Shared == nil {
		return media.SharedPortStats{}, false
	}
	return e.media.Shared.Stats(), true
}

// RTPStats returns what the engine's music scheduler has sent, and how
// late against its deadlines.
func (e *Engine) RTPStats() media.SchedulerStats { return e.sched.Stats() }

// RTPStats returns what the server's music scheduler has sent and how
// late (zero before Listen).
func (s *Server) RTPStats() media.SchedulerStats {
	if e := s.listeningEngine(); e != nil {
		return e.RTPStats()
	}
	return media.SchedulerStats{}
}

// SharedRTPStats returns the counters of the server's shared RTP port
// (Config.SharedRTPPort), and false when there is none.
func (s *Server) SharedRTPStats() (media.SharedPortStats, bool) {
	if e := s.listeningEngine(); e != nil {
		return e.SharedRTPStats()
	}
	return media.SharedPortStats{}, false
}

func (s *Server) listeningEngine() *Engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.engine
}
