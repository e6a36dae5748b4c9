package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/parktest"
)

// testAgent starts the tool's user agent against target, as run does.
func testAgent(t *testing.T, target string, extra ...string) *agent {
	t.Helper()
	cfg, err := parseFlags(append([]string{"-target", target, "-rtp-ports", "46000-46999"}, extra...), io.Discard)
	require.NoError(t, err)
	a, err := newAgent(cfg, io.Discard)
	require.NoError(t, err)
	t.Cleanup(a.close)
	return a
}

// A run that stops with a call retrieved and not yet hung up (its cycle
// cut short) hangs it up: the server, shutting down, drains at once
// instead of waiting for the call until its drain time runs out.
func TestStopHangsUpWhatTheRunLeftConnected(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := parkServer(t)
			a := testAgent(t, srv.Addr().String(), "-transport", transport)
			ctx := context.Background()
			var offers [2][]byte
			var rtp [2]*net.UDPConn
			require.NoError(t, openLegMedia(newRTPPorts(a.cfg.local, 46000, 46999), a.cfg.local, rtp[:], offers[:]))
			t.Cleanup(func() { closeLegMedia(rtp[:]) })

			parked, res, err := a.invite(ctx, a.cfg.parkExt, offers[0])
			require.NoError(t, err)
			require.NoError(t, parked.Ack(ctx))
			retriever, _, err := a.invite(ctx, res.GetHeader("X-Park-Orbit").Value(), offers[1])
			require.NoError(t, err)
			require.NoError(t, retriever.Ack(ctx))
			require.Zero(t, srv.Lot().Len(), "retrieved")

			// The run stops here, mid-cycle: both calls are the tool's.
			require.Equal(t, uint64(2), a.hangupHeld(ctx), "the retriever's call and the parked party's")
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			require.NoError(t, srv.Shutdown(sctx), "nothing left to drain")
			require.Zero(t, a.hangupHeld(ctx), "nothing is hung up twice")
		})
	}
}

// An answer that comes after the tool stopped waiting for it (-timeout)
// connected a call nobody holds: the tool acknowledges it and hangs it up
// at once, rather than leave the far end waiting for its ACK.
func TestLateAnswerIsAcknowledgedAndHungUp(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: transport})
			bob.SetAnswer(parktest.AnswerPolicy{Delay: 600 * time.Millisecond, Mute: true})
			a := testAgent(t, bob.Addr().String(), "-transport", transport, "-timeout", "200ms")
			var offers [1][]byte
			var rtp [1]*net.UDPConn
			require.NoError(t, openLegMedia(newRTPPorts(a.cfg.local, 46000, 46999), a.cfg.local, rtp[:], offers[:]))
			t.Cleanup(func() { closeLegMedia(rtp[:]) })

			_, _, err := a.invite(context.Background(), "bob", offers[0])
			require.Error(t, err, "bob answers after the tool's timeout")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var call *parktest.Call
			select {
			case call = <-bob.Incoming():
			case <-ctx.Done():
				t.Fatal("bob never answered")
			}
			select {
			case <-call.Done():
				require.True(t, call.EndedByRemote(), "the tool's BYE ended it")
			case <-ctx.Done():
				t.Fatal("the late answer's call was left connected")
			}
			require.Equal(t, uint64(1), a.hangupHeld(ctx), "counted with what the run left")
		})
	}
}

// Requests the agent reads just before it closes are answered after: sipgo
// runs each handler on a goroutine of its own and does not wait for them.
// An answer whose peer sipgo no longer finds in its connection pool made
// it bind a new socket, with a read goroutine nothing closed (goleak saw
// one once in CI). Closed as the park server closes, the agent leaves none.
func TestCloseWhileAnsweringLeavesNoSocket(t *testing.T) {
	before := goleak.IgnoreCurrent()
	for round := range 20 {
		cfg, err := parseFlags([]string{"-target", "127.0.0.1:9", "-rtp-ports", "46000-46999"}, io.Discard)
		require.NoError(t, err)
		a, err := newAgent(cfg, io.Discard)
		require.NoError(t, err)
		peers := make([]*net.UDPConn, 8)
		for i := range peers {
			peers[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			require.NoError(t, err)
			defer peers[i].Close()
		}
		to := net.UDPAddrFromAddrPort(a.stack.Addr)
		for n := range 64 {
			p := peers[n%len(peers)]
			msg := fmt.Sprintf("OPTIONS sip:parkload@%s SIP/2.0\r\n"+
				"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%d-%d;rport\r\n"+
				"From: <sip:peer@127.0.0.1>;tag=%d\r\nTo: <sip:parkload@%s>\r\n"+
				"Call-ID: close-%d-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
				a.stack.Addr, p.LocalAddr(), round, n, n, a.stack.Addr, round, n)
			_, err := p.WriteTo([]byte(msg), to)
			require.NoError(t, err)
		}
		a.close()
	}
	// Handlers still running answer into the closed socket, and end.
	require.NoError(t, goleak.Find(before,
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*connectionPool).startIdleCheck")))
}
