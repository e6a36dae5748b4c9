package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseFlagsDefaults(t *testing.T) {
	c, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.1:5060"), c.target)
	require.Equal(t, "udp", c.transport)
	require.Equal(t, "cycle", c.mode)
	require.Equal(t, 50, c.workers)
	require.Equal(t, 60*time.Second, c.duration)
	require.Equal(t, "700", c.parkExt)
	require.Equal(t, netip.MustParseAddr("127.0.0.1"), c.local)
	require.Equal(t, [2]int{50000, 59999}, [2]int{c.rtpMin, c.rtpMax})
	require.False(t, c.json)

	c, err = parseFlags([]string{"-cluster-targets", "127.0.0.1:5071, 127.0.0.1:5072,127.0.0.1:5073"}, io.Discard)
	require.NoError(t, err)
	require.Len(t, c.retrieveAt, 3)
	require.Equal(t, netip.MustParseAddrPort("127.0.0.1:5071"), c.target)

	c, err = parseFlags([]string{"-mode", "hold", "-calls", "2000", "-checkpoints", "0, 500,1000", "-server-debug", "http://127.0.0.1:6060/debug/pprof/"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []int{0, 500, 1000, 2000}, c.checkpoints)
	require.Equal(t, rxAuto, c.rx)
	require.Equal(t, 30*time.Second, c.hold)
	require.Equal(t, 500.0, c.rate)
	require.Equal(t, "http://127.0.0.1:6060", c.serverDebug)

	c, err = parseFlags([]string{"-mode", "soak", "-workers", "200", "-cycle-rate", "100", "-mix", "timeout=1,hangup=2", "-attempts", "2"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, soakMix{0, 2, 0, 0, 0, 1}, c.mix)
	require.Equal(t, 10*time.Second, c.pickupTimeout)
	require.Equal(t, 2*time.Second, c.recallRing)
	require.Equal(t, 2, c.attempts)
	require.Equal(t, time.Minute, c.sampleEvery)

	c, err = parseFlags([]string{"-mode", "HOLD", "-calls", "10", "-transport", "TCP"}, io.Discard)
	require.NoError(t, err)
	require.Equal(t, []int{0, 10}, c.checkpoints)
	require.Equal(t, "tcp", c.transport)
}

func TestParseFlagsRefusals(t *testing.T) {
	for _, tc := range []struct {
		args []string
		flag string // the error names it
	}{
		{[]string{"-target", "localhost:5060"}, "-target"},
		{[]string{"-target", "127.0.0.1"}, "-target"},
		{[]string{"-target", "127.0.0.1:0"}, "-target"},
		{[]string{"-transport", "tls"}, "-transport"},
		{[]string{"-cluster-targets", "127.0.0.1:5071"}, "-cluster-targets"},
		{[]string{"-cluster-targets", "127.0.0.1:5071,node2:5072"}, "-cluster-targets"},
		{[]string{"-mode", "hold", "-cluster-targets", "127.0.0.1:5071,127.0.0.1:5072"}, "-cluster-targets"},
		{[]string{"-mode", "storm"}, "-mode"},
		{[]string{"-workers", "0"}, "-workers"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-calls", "10"}, "-calls"}, // a hold flag in cycle mode
		{[]string{"-mode", "hold", "-workers", "5"}, "-workers"},
		{[]string{"-mode", "hold", "-duration", "5s"}, "-duration"},
		{[]string{"-mode", "hold", "-calls", "0"}, "-calls"},
		{[]string{"-mode", "hold", "-hold", "10ms"}, "-hold"},
		{[]string{"-mode", "hold", "-rate", "0"}, "-rate"},
		{[]string{"-mode", "hold", "-rate", "NaN"}, "-rate"},
		{[]string{"-mode", "hold", "-calls", "100", "-checkpoints", "0,200"}, "-checkpoints"},
		{[]string{"-mode", "hold", "-checkpoints", "500,100"}, "-checkpoints"},
		{[]string{"-mode", "hold", "-rx", "pcap"}, "-rx"},
		{[]string{"-rx", "ring"}, "-rx"}, // cycle mode
		{[]string{"-mode", "hold", "-checkpoints", "x"}, "-checkpoints"},
		{[]string{"-park-ext", ""}, "-park-ext"},
		{[]string{"-park-ext", "7@0"}, "-park-ext"},
		{[]string{"-local", "0.0.0.0"}, "-local"},
		{[]string{"-local", "::1"}, "-local"},
		{[]string{"-rtp-ports", "40000"}, "-rtp-ports"},
		{[]string{"-rtp-ports", "50000-40000"}, "-rtp-ports"},
		{[]string{"-rtp-ports", "80-90"}, "-rtp-ports"},
		{[]string{"-rtp-ports", "40000-40010"}, "-rtp-ports"}, // 6 even ports for 100 sockets
		{[]string{"-mode", "hold", "-calls", "100", "-rtp-ports", "40000-40100"}, "-rtp-ports"},
		{[]string{"-timeout", "0s"}, "-timeout"},
		{[]string{"-warmup", "-1s"}, "-warmup"},
		{[]string{"-reinvite-delay", "-1s"}, "-reinvite-delay"},
		{[]string{"-progress", "-1s"}, "-progress"},
		{[]string{"-server-pid", "-3"}, "-server-pid"},
		{[]string{"-server-pid", "999999999"}, "-server-pid"},
		{[]string{"-server-debug", "127.0.0.1:6060"}, "-server-debug"},
		{[]string{"stray"}, "unexpected argument"},
		{[]string{"-mix", "timeout=1"}, "-mix"}, // a soak flag in cycle mode
		{[]string{"-mode", "hold", "-attempts", "2"}, "-attempts"},
		{[]string{"-mode", "soak", "-calls", "10"}, "-calls"},
		{[]string{"-mode", "soak", "-mix", "storm=1"}, "-mix"},
		{[]string{"-mode", "soak", "-pickup-timeout", "5s"}, "-pickup-timeout"},
		{[]string{"-mode", "soak", "-recall-ring", "500ms"}, "-recall-ring"},
		{[]string{"-mode", "soak", "-attempts", "11"}, "-attempts"},
		{[]string{"-mode", "soak", "-sample-every", "10ms"}, "-sample-every"},
		{[]string{"-mode", "soak", "-settle", "-1s"}, "-settle"},
		{[]string{"-mode", "soak", "-workers", "100", "-rtp-ports", "40000-40400"}, "-rtp-ports"}, // 201 even ports for 300 sockets
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, err := parseFlags(tc.args, io.Discard)
			var fe *errFlag
			require.ErrorAs(t, err, &fe)
			require.Contains(t, err.Error(), tc.flag)
			require.NotContains(t, err.Error(), "\n")
		})
	}
}

func TestRunExitStatus(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"-workers", "-1"}, &out, &errOut))
	require.Equal(t, "parkload: -workers -1: want 1 to 10000\n", errOut.String())
	require.Empty(t, out.String())

	for _, args := range [][]string{{"-no-such-flag"}, {"-workers", "many"}} {
		errOut.Reset()
		require.Equal(t, 2, run(args, &out, &errOut))
		require.Contains(t, errOut.String(), args[0])
		require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one line: %q", errOut.String())
	}

	errOut.Reset()
	require.Equal(t, 0, run([]string{"-h"}, &out, &errOut))
	require.Contains(t, errOut.String(), "-target")

	if _, err := os.Stat("/proc/self/stat"); err == nil {
		errOut.Reset()
		// A server debug URL that does not answer is refused up front.
		require.Equal(t, 2, run([]string{"-server-debug", "http://" + closedTCPPort(t)}, &out, &errOut))
		require.Contains(t, errOut.String(), "-server-debug")
	}
}

func TestRunTargetNeverAnswers(t *testing.T) {
	// A UDP port nobody reads: OPTIONS goes unanswered for 3 s.
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	defer c.Close()
	var out, errOut bytes.Buffer
	require.Equal(t, 1, run([]string{"-target", c.LocalAddr().String(), "-workers", "1", "-duration", "1s"}, &out, &errOut))
	require.Contains(t, errOut.String(), "no answer to OPTIONS")
	require.Empty(t, out.String())
}

func closedTCPPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestHelpIsNotAnError(t *testing.T) {
	_, err := parseFlags([]string{"-help"}, io.Discard)
	require.True(t, errors.Is(err, flag.ErrHelp))
}
