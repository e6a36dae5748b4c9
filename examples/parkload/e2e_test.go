package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

func TestMain(m *testing.M) {
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler)) // as main does
	goleak.VerifyTestMain(m,
		// sipgo's transport layer keeps package-level idle connection
		// janitors; they belong to the library, not to a leaked call.
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*connectionPool).startIdleCheck"),
	)
}

// parkServer runs the park server in process on a free loopback port.
func parkServer(t *testing.T) *sipadapter.Server {
	t.Helper()
	return parkServerWith(t, park.Config{})
}

// parkServerWith is parkServer with the lot configured by pc (test music
// unless pc names some).
func parkServerWith(t *testing.T, pc park.Config) *sipadapter.Server {
	t.Helper()
	if pc.MusicOnHold == nil {
		music, err := media.Tone("test music", 440, time.Second)
		require.NoError(t, err)
		pc.MusicOnHold = music
	}
	srv, err := sipadapter.New(sipadapter.Config{
		Listen:     "127.0.0.1:0",
		RTPPortMin: 44000, RTPPortMax: 44999,
		Park: pc,
	})
	require.NoError(t, err)
	require.NoError(t, srv.Listen(context.Background()))
	t.Cleanup(func() {
		// Shutdown drains connected calls; the tool hangs up what its run
		// left connected when it stops (agent.hangupHeld), so the drain
		// has nothing to wait for.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx), "the tool left calls connected")
		require.Zero(t, srv.Lot().Len(), "parked calls left")
	})
	return srv
}

// runJSON runs the tool with -json and decodes its report.
func runJSON(t *testing.T, args ...string) report {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append(args, "-json", "-progress", "0"), &out, &errOut)
	require.Equal(t, 0, code, "stderr: %s", errOut.String())
	var r report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r), "stdout: %s", out.String())
	return r
}

func TestCycleAgainstParkServer(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := parkServer(t)
			r := runJSON(t, "-target", srv.Addr().String(), "-transport", transport,
				"-workers", "4", "-duration", "1s", "-rtp-ports", "46000-46999", "-timeout", "2s",
				"-server-pid", fmt.Sprint(os.Getpid()))
			require.Equal(t, "cycle", r.Mode)
			require.Zero(t, r.Failures, "failures: %v", r.FailuresBy)
			require.Positive(t, r.Cycles)
			require.Equal(t, r.Cycles, r.Park.Count)
			require.Equal(t, r.Cycles, r.Retrieve.Count)
			require.Equal(t, r.Cycles, r.ServerBye.Count)
			require.Equal(t, r.Cycles, r.Inbound.Bye, "the server BYEs every parked call once its retriever hangs up")
			require.Zero(t, r.Inbound.ByeNoDialog)
			require.Zero(t, r.Inbound.Invite)
			require.Positive(t, r.Park.P50)
			require.LessOrEqual(t, r.Park.P50, r.Park.P99)
			require.LessOrEqual(t, r.Park.P99, r.Park.Max)
			require.Positive(t, r.Tool.CPUS)
			require.NotNil(t, r.Server)
			require.Len(t, r.Server.Samples, 2)
			require.Positive(t, r.Server.Samples[0].RSS)
		})
	}
}

// Issue 16, goal 4 under load: the tool's phones answer the server's
// re-INVITEs 3 s late, and every parked party still gets its BYE well within
// -timeout (2 s) of the retriever's, over both transports; before the fix
// each cycle's server BYE waited the 3 s and timed out.
func TestCycleWithLateReInviteAnswers(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := parkServer(t)
			r := runJSON(t, "-target", srv.Addr().String(), "-transport", transport,
				"-workers", "4", "-duration", "1s", "-rtp-ports", "46000-46999", "-timeout", "2s",
				"-reinvite-delay", "3s")
			require.Zero(t, r.Failures, "failures: %v", r.FailuresBy)
			require.Positive(t, r.Cycles)
			require.Equal(t, r.Cycles, r.ServerBye.Count)
			require.Less(t, r.ServerBye.Max, 2000.0, "a parked party's BYE waited for its re-INVITE's answer")
			require.Zero(t, r.Inbound.ByeNoDialog)
		})
	}
}

func TestHoldAgainstParkServer(t *testing.T) {
	srv := parkServer(t)
	r := runJSON(t, "-target", srv.Addr().String(), "-mode", "hold",
		"-calls", "20", "-rate", "200", "-hold", "1500ms", "-warmup", "300ms",
		"-rtp-ports", "46000-46999", "-checkpoints", "10")
	require.Equal(t, "hold", r.Mode)
	require.Zero(t, r.Failures, "failures: %v", r.FailuresBy)
	require.Equal(t, 20, r.Parked)
	require.Zero(t, r.EndedByServer)
	require.Equal(t, uint64(20), r.Park.Count)
	require.Equal(t, uint64(20), r.Bye.Count, "every call hung up with a 200")
	require.Equal(t, uint64(20*75), r.RTP.Expected) // 1.5 s / 20 ms per call
	// How much arrives inside the window depends on how loaded the machine
	// is (79.8 % once beside the sipadapter tests), so it is reported, not
	// asserted tightly; a packet lost outright, or a silent call, is a bug.
	require.Greater(t, r.RTP.ReceivedPct, 25.0, "music flows")
	require.Zero(t, r.RTP.SeqLost, "no packet lost")
	require.Zero(t, r.RTP.CallsSilent)
	require.NotNil(t, r.RTP.Jitter)
	require.NotNil(t, r.RTP.FirstPacket)
	require.Equal(t, uint64(20), r.RTP.FirstPacket.Count)
	require.Zero(t, srv.Lot().Len(), "the tool hung up every call")
}

func TestTextReport(t *testing.T) {
	srv := parkServer(t)
	var out, errOut bytes.Buffer
	code := run([]string{"-target", srv.Addr().String(), "-workers", "2", "-duration", "300ms", "-rtp-ports", "46000-46999", "-progress", "100ms"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	for _, want := range []string{"cycles", "failures", "park", "retrieve", "tool cpu", "from server"} {
		require.Contains(t, out.String(), want)
	}
	require.Contains(t, errOut.String(), "parkload:", "progress lines")
}
