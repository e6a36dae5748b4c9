package sipadapter

import (
	"bytes"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
)

// A retrieve that races the park (the retriever bridged the leg before the
// park's ACK confirmed it) used to log "WARN hold music did not start ...
// endpoint is bridged": a normal race is not a warning.
func TestRetrieveRacingTheAckIsNoWarning(t *testing.T) {
	sched := media.NewScheduler(media.SchedulerOptions{})
	defer sched.Close()
	endpoint := func() *media.Endpoint {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		ep, err := media.NewEndpoint(conn, media.EndpointOptions{Codec: media.PCMU, Scheduler: sched})
		require.NoError(t, err)
		t.Cleanup(func() { ep.Close() })
		return ep
	}
	parked, retriever := endpoint(), endpoint()
	clip, err := media.Tone("music", 440, time.Second)
	require.NoError(t, err)
	var logs bytes.Buffer
	l := &callLeg{ep: parked, music: clip, settled: make(chan struct{}),
		log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}

	relay, err := media.Bridge(parked, retriever) // the retrieve, before the leg knows
	require.NoError(t, err)
	defer relay.Close()
	l.Confirm() // the park's ACK
	require.Empty(t, logs.String())
}
