package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

// connectedCall parks alice's call and has carol retrieve it: a call the
// server relays, with audio both ways.
func connectedCall(t *testing.T, srv *parkServerProcess) (alice, carol *parktest.Call) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	c := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	parked, err := a.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{})
	require.NoError(t, err)
	got, err := c.Call(ctx, "sip:"+parked.Orbit()+"@"+srv.Addr, parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, got.WaitReceived(ctx, got.Received()+10), "carol hears alice")
	return parked, got
}

// stillTalking checks that both sides of a call keep receiving audio.
func stillTalking(t *testing.T, calls ...*parktest.Call) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range calls {
		select {
		case <-c.Done():
			t.Fatal("the call ended")
		default:
		}
		require.NoError(t, c.WaitReceived(ctx, c.Received()+10), "audio still flows")
	}
}

// Point 7 of issue 11: SIGTERM does not cut a call the server relays; it
// goes on, audio and all, until -drain runs out, and then both sides get
// BYE and the exit status says the drain was cut short.
func TestSIGTERMDrainsConnectedCalls(t *testing.T) {
	srv := startParkServer(t, "-drain", "4s")
	alice, carol := connectedCall(t, srv)
	signalled := time.Now()
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGTERM))
	srv.WaitLine(`msg="shutdown: waiting for the calls still connected to hang up"`, 5*time.Second, "legs=2")
	stillTalking(t, alice, carol)

	late := parktest.NewPhone(t, parktest.PhoneOptions{User: "late"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := late.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{Mute: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se, "a park while draining")
	require.Equal(t, 503, se.Code)

	select {
	case <-srv.Exited:
	case <-time.After(15 * time.Second):
		t.Fatal("parkserver still running after the drain time")
	}
	require.GreaterOrEqual(t, time.Since(signalled), 4*time.Second, "the call went on for the drain time")
	require.Error(t, srv.Err, "cut short: exit status 1")
	for _, c := range []*parktest.Call{alice, carol} {
		select {
		case <-c.Done():
			require.True(t, c.EndedByRemote(), "the server said BYE")
		case <-time.After(5 * time.Second):
			t.Fatal("no BYE after the drain time")
		}
	}
}

// A second signal ends the drain at once.
func TestSecondSignalEndsTheDrain(t *testing.T) {
	srv := startParkServer(t) // -drain 60s
	alice, carol := connectedCall(t, srv)
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGTERM))
	srv.WaitLine(`msg="shutdown: waiting for the calls still connected to hang up"`, 5*time.Second)
	stillTalking(t, alice, carol)
	second := time.Now()
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-srv.Exited:
	case <-time.After(10 * time.Second):
		t.Fatal("parkserver still running after the second signal")
	}
	require.Less(t, time.Since(second), 5*time.Second)
	for _, c := range []*parktest.Call{alice, carol} {
		select {
		case <-c.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("no BYE after the second signal")
		}
	}
}

// When the parties hang up, the drain is over: the process exits 0 at once.
func TestDrainEndsWhenTheCallsDo(t *testing.T) {
	srv := startParkServer(t)
	alice, carol := connectedCall(t, srv)
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGTERM))
	srv.WaitLine(`msg="shutdown: waiting for the calls still connected to hang up"`, 5*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hungUp := time.Now()
	require.NoError(t, carol.Hangup(ctx))
	select {
	case <-srv.Exited:
	case <-time.After(10 * time.Second):
		t.Fatal("parkserver still running after the call ended")
	}
	require.Less(t, time.Since(hungUp), 3*time.Second)
	require.NoError(t, srv.Err, "exit status 0")
	select {
	case <-alice.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("alice got no BYE")
	}
	srv.WaitLine(`msg="every call ended; exiting"`, time.Second)
}
