package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

func statusCode(t *testing.T, err error) (int, string) {
	t.Helper()
	var se *parktest.StatusError
	require.True(t, errors.As(err, &se), "want a SIP refusal, got %v", err)
	warning := ""
	if h := se.Response.GetHeader("Warning"); h != nil {
		warning = h.Value()
	}
	return se.Code, warning
}

// -allow wires park.AllowFrom: a phone outside the prefixes is refused 403
// and the call stays parked; -failed-retrieves blocks a guessing source.
func TestAllowAndFailedRetrievesFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	t.Run("allow", func(t *testing.T) {
		srv := startParkServer(t, "-allow", "10.0.0.0/8")
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
		parked, err := alice.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		_, err = carol.Call(ctx, "sip:"+parked.Orbit()+"@"+srv.Addr, parktest.CallOptions{Mute: true})
		code, warning := statusCode(t, err)
		require.Equal(t, 403, code)
		require.Contains(t, warning, "127.0.0.1 is not in 10.0.0.0/8")
		require.NoError(t, parked.Hangup(ctx), "still parked after the refusal")
	})

	t.Run("allow loopback", func(t *testing.T) {
		srv := startParkServer(t, "-allow", "127.0.0.1")
		alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
		carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
		parked, err := alice.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		got, err := carol.Call(ctx, "sip:"+parked.Orbit()+"@"+srv.Addr, parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		require.NoError(t, got.Hangup(ctx))
		<-parked.Done()
	})

	t.Run("failed-retrieves", func(t *testing.T) {
		srv := startParkServer(t, "-failed-retrieves", "2")
		mallory := parktest.NewPhone(t, parktest.PhoneOptions{User: "mallory"})
		for _, o := range []string{"701", "702"} {
			_, err := mallory.Call(ctx, "sip:"+o+"@"+srv.Addr, parktest.CallOptions{Mute: true})
			code, _ := statusCode(t, err)
			require.Equal(t, 404, code)
		}
		_, err := mallory.Call(ctx, "sip:703@"+srv.Addr, parktest.CallOptions{Mute: true})
		code, warning := statusCode(t, err)
		require.Equal(t, 403, code)
		require.Contains(t, warning, "too many failed retrieves")
		srv.WaitLine("source blocked: too many failed retrieves", 5*time.Second, "source=127.0.0.1")
	})
}

// -late-offer: a delayed-offer INVITE (no SDP, as CUCM sends) parks, with
// music once the ACK has answered the server's offer; without the flag it
// gets 488.
func TestLateOfferFlag(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})

	off := startParkServer(t)
	_, err := alice.Call(ctx, "sip:700@"+off.Addr, parktest.CallOptions{LateOffer: true})
	code, warning := statusCode(t, err)
	require.Equal(t, 488, code)
	require.Contains(t, warning, "-late-offer")

	on := startParkServer(t, "-late-offer")
	parked, err := alice.Call(ctx, "sip:700@"+on.Addr, parktest.CallOptions{LateOffer: true})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 10), "hold music")
	require.NoError(t, parked.Hangup(ctx))
}
