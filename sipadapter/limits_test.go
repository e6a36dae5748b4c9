package sipadapter_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// warningOf returns the Warning header of a refusal, or "".
func warningOf(t *testing.T, err error) string {
	t.Helper()
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	if h := se.Response.GetHeader("Warning"); h != nil {
		return h.Value()
	}
	return ""
}

// Guessing orbits: after FailedRetrieves 404s from one source, its
// retrieves get 403 whether the orbit holds a call or not, while parking
// still works; a trusted source is never blocked.
func TestOrbitGuessingIsBlocked(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Limits: sipadapter.Limits{FailedRetrieves: 3}})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	mallory := parktest.NewPhone(t, parktest.PhoneOptions{User: "mallory"})

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "701", parked.Orbit())

	// Two empty orbits and one user that is no orbit at all: three 404s.
	for _, target := range []string{srv.OrbitURI("702"), srv.OrbitURI("703"), "sip:9999@" + srv.Addr().String()} {
		_, err := mallory.Call(ctx, target, parktest.CallOptions{Mute: true})
		require.Equal(t, 404, statusOf(t, err), target)
	}
	// Now even the occupied orbit is refused: the answer no longer tells
	// which orbits hold calls.
	_, err = mallory.Call(ctx, srv.OrbitURI("701"), parktest.CallOptions{Mute: true})
	require.Equal(t, 403, statusOf(t, err))
	require.Contains(t, warningOf(t, err), "too many failed retrieves from 127.0.0.1")
	_, err = mallory.Call(ctx, "sip:9999@"+srv.Addr().String(), parktest.CallOptions{Mute: true})
	require.Equal(t, 403, statusOf(t, err))
	_, ok := srv.Lot().Lookup("701")
	require.True(t, ok, "the blocked retrieve took nothing")

	// Parking is not blocked (the phones share 127.0.0.1 with mallory).
	second, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, second.Hangup(ctx))
	require.NoError(t, parked.Hangup(ctx))
}

func TestTrustedSourceIsNotBlocked(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Limits: sipadapter.Limits{
		FailedRetrieves: 1,
		Trusted:         []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}})
	ctx := ctxFor(t, 20*time.Second)
	pbx := parktest.NewPhone(t, parktest.PhoneOptions{User: "pbx"})
	for range 5 {
		_, err := pbx.Call(ctx, srv.OrbitURI("702"), parktest.CallOptions{Mute: true})
		require.Equal(t, 404, statusOf(t, err))
	}
	parked, err := pbx.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	got, err := pbx.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "a trusted source retrieves after any number of misses")
	require.NoError(t, got.Hangup(ctx))
	<-parked.Done()
}

// One source may hold DialogsPerSource calls; the next gets 503 with
// Retry-After, and a call that ends frees its slot.
func TestDialogsPerSource(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Limits: sipadapter.Limits{DialogsPerSource: 2}})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})

	first, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	second, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, 2, srv.DialogsFrom(loopback))

	_, err = alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.Equal(t, 503, statusOf(t, err))
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.NotNil(t, se.Response.GetHeader("Retry-After"))
	require.Contains(t, warningOf(t, err), "too many calls from 127.0.0.1")
	require.Equal(t, 2, srv.Lot().Len(), "the refused call parked nothing")

	// A retrieve is a dialog too: with both slots taken it is refused, and
	// the parked call stays.
	_, err = alice.Call(ctx, srv.OrbitURI(orbit.Orbit(first.Orbit())), parktest.CallOptions{Mute: true})
	require.Equal(t, 503, statusOf(t, err))

	require.NoError(t, second.Hangup(ctx))
	waitUntil(t, 5*time.Second, "the hung-up call's slot is freed", func() bool { return srv.DialogsFrom(loopback) == 1 })
	got, err := alice.Call(ctx, srv.OrbitURI(orbit.Orbit(first.Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, 2, srv.DialogsFrom(loopback), "the retriever and the retrieved call")
	require.NoError(t, got.Hangup(ctx))
	<-first.Done()
	waitUntil(t, 5*time.Second, "every slot is freed", func() bool { return srv.DialogsFrom(loopback) == 0 })
}

func TestSubscriptionsPerSource(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Limits: sipadapter.Limits{SubscriptionsPerSource: 2}})
	ctx := ctxFor(t, 20*time.Second)
	console := parktest.NewPhone(t, parktest.PhoneOptions{User: "console"})

	a, err := console.Subscribe(ctx, srv.OrbitURI("701"), "dialog", time.Hour)
	require.NoError(t, err)
	b, err := console.Subscribe(ctx, srv.OrbitURI("702"), "dialog", time.Hour)
	require.NoError(t, err)
	_, err = console.Subscribe(ctx, srv.OrbitURI("703"), "dialog", time.Hour)
	require.Equal(t, 503, statusOf(t, err))
	require.Contains(t, warningOf(t, err), "too many subscriptions from 127.0.0.1")
	require.Equal(t, 2, srv.Subscriptions())

	// A fetch (Expires: 0) holds nothing, so it is answered even at the cap.
	fetch, err := console.Subscribe(ctx, srv.OrbitURI("703"), "dialog", 0)
	require.NoError(t, err)
	<-fetch.Done()

	require.NoError(t, b.Unsubscribe(ctx))
	waitUntil(t, 5*time.Second, "the ended subscription's slot is freed", func() bool { return srv.SubscriptionsFrom(loopback) == 1 })
	c, err := console.Subscribe(ctx, srv.OrbitURI("703"), "dialog", time.Hour)
	require.NoError(t, err)
	require.NoError(t, a.Unsubscribe(ctx))
	require.NoError(t, c.Unsubscribe(ctx))
	waitUntil(t, 5*time.Second, "every slot is freed", func() bool { return srv.SubscriptionsFrom(loopback) == 0 })
}

// The lot's AuthorizeRetrieve hook decides, and its refusal is a 403 that
// names the reason; the call stays parked for whoever may retrieve it.
func TestRetrieveAuthorization(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Park: park.Config{
		AuthorizeRetrieve: park.AllowFrom(netip.MustParsePrefix("10.0.0.0/8")),
	}})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	_, err = carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	require.Equal(t, 403, statusOf(t, err))
	require.Contains(t, warningOf(t, err), "127.0.0.1 is not in 10.0.0.0/8")
	_, ok := srv.Lot().Lookup(orbit.Orbit(parked.Orbit()))
	require.True(t, ok, "the call is still parked")
	_, err = carol.Call(ctx, srv.OrbitURI("702"), parktest.CallOptions{Mute: true})
	require.Equal(t, 403, statusOf(t, err), "an empty orbit looks the same to a refused source")
	require.NoError(t, parked.Hangup(ctx))
}

// sipOptions is an OPTIONS request from local, padded with a header of pad
// bytes to make it as large as a test needs.
func sipOptions(server, local, callID string, pad int) string {
	return fmt.Sprintf("OPTIONS sip:700@%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/%[5]s %[2]s;branch=z9hG4bK-%[3]s\r\n"+
		"From: <sip:probe@%[2]s>;tag=p1\r\nTo: <sip:700@%[1]s>\r\n"+
		"Call-ID: %[3]s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nX-Pad: %[4]s\r\nContent-Length: 0\r\n\r\n",
		server, local, callID, strings.Repeat("x", pad), map[bool]string{true: "TCP", false: "UDP"}[strings.HasPrefix(callID, "tcp")])
}

// A message over MaxMessageSize is dropped unread over UDP, and closes the
// connection over TCP; the server goes on answering everything else.
func TestMaxMessageSize(t *testing.T) {
	srv := testServer(t, sipadapter.Config{MaxMessageSize: 2048})
	addr := srv.Addr().String()

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer conn.Close()
	dst, err := net.ResolveUDPAddr("udp4", addr)
	require.NoError(t, err)
	local := conn.LocalAddr().String()
	_, err = conn.WriteTo([]byte(sipOptions(addr, local, "too-big", 3000)), dst)
	require.NoError(t, err)
	_, err = conn.WriteTo([]byte(sipOptions(addr, local, "small", 100)), dst)
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 8192)
	n, _, err := conn.ReadFrom(buf)
	require.NoError(t, err)
	// Loopback keeps the two datagrams in order, so had the first been
	// answered its answer would come first (or at all: only one is read).
	require.Contains(t, string(buf[:n]), "SIP/2.0 200 OK")
	require.Contains(t, string(buf[:n]), "Call-ID: small")

	tcp, err := net.Dial("tcp4", addr)
	require.NoError(t, err)
	defer tcp.Close()
	require.NoError(t, tcp.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(tcp, sipOptions(addr, tcp.LocalAddr().String(), "tcp-too-big", 3000))
	require.NoError(t, err)
	rest, err := io.ReadAll(bufio.NewReader(tcp))
	require.NoError(t, err, "the server closes the connection (EOF), not a timeout")
	require.NotContains(t, string(rest), "SIP/2.0 200", "the oversized request is not answered")

	tcp2, err := net.Dial("tcp4", addr)
	require.NoError(t, err)
	defer tcp2.Close()
	require.NoError(t, tcp2.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(tcp2, sipOptions(addr, tcp2.LocalAddr().String(), "tcp-small", 100))
	require.NoError(t, err)
	line, err := bufio.NewReader(tcp2).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "SIP/2.0 200 OK\r\n", line)
}

func TestLimitsConfigErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  sipadapter.Config
		want string
	}{
		{sipadapter.Config{MaxMessageSize: 100}, "Config.MaxMessageSize"},
		{sipadapter.Config{MaxMessageSize: 70000}, "Config.MaxMessageSize"},
		{sipadapter.Config{Limits: sipadapter.Limits{FailedRetrieveBlock: -time.Second}}, "Config.Limits.FailedRetrieveBlock"},
		{sipadapter.Config{Limits: sipadapter.Limits{Trusted: []netip.Prefix{{}}}}, "Config.Limits.Trusted[0]"},
		{sipadapter.Config{Listen: "localhost"}, "Config.Listen"},
		{sipadapter.Config{Listen: "0.0.0.0:5060"}, "Config.MediaIP"},
		{sipadapter.Config{ParkExtension: "750"}, "Config.ParkExtension"},
		{sipadapter.Config{RTPPortMin: 80, RTPPortMax: 90}, "RTP port range"},
		{sipadapter.Config{OutboundProxy: "10.0.0.5:5060"}, "Config.OutboundProxy"},
		{sipadapter.Config{Park: park.Config{Dialer: park.DialerFunc(nil)}}, "Config.Park.Dialer"},
	} {
		_, err := sipadapter.New(tc.cfg)
		// One style for every configuration error: a *ConfigError naming
		// the field, as park.ConfigError does for the lot.
		var cerr *sipadapter.ConfigError
		require.ErrorAs(t, err, &cerr, tc.want)
		require.ErrorIs(t, err, sipadapter.ErrInvalidConfig)
		require.Equal(t, tc.want, cerr.Field)
	}
}
