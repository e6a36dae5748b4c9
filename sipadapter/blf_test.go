package sipadapter_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// hostPBX is a host's own SIP stack, as examples/pbx has one: a sipgo server
// and client on a free loopback port, whose OnSubscribe hands the BLF the
// SUBSCRIBEs it watches and answers the others itself, or, for a host with
// nothing else to serve, is the BLF's ServeSubscribe itself.
type hostPBX struct {
	addr   netip.AddrPort
	client *sipgo.Client
	lot    *park.Lot
	blf    *sipadapter.BLF
}

// newHostPBX starts a host with its own lot and a BLF for it. Cleanup shuts
// the lot down, closes the BLF and stops the SIP stack, in the order a host
// would.
func newHostPBX(t *testing.T, cfg sipadapter.BLFConfig, onlyBLF bool) *hostPBX {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	h := &hostPBX{addr: conn.LocalAddr().(*net.UDPAddr).AddrPort()}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("host-pbx"), sipgo.WithUserAgentHostname("127.0.0.1"))
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua)
	require.NoError(t, err)
	h.client, err = sipgo.NewClient(ua,
		sipgo.WithClientHostname("127.0.0.1"),
		sipgo.WithClientPort(int(h.addr.Port())),
		sipgo.WithClientConnectionAddr(h.addr.String()),
	)
	require.NoError(t, err)
	h.lot = cfg.Lot
	if h.lot == nil {
		h.lot, err = park.NewLot(park.Config{DisableMusicOnHold: true})
		require.NoError(t, err)
	}
	cfg.Lot, cfg.Client, cfg.Addr = h.lot, h.client, h.addr
	h.blf, err = sipadapter.NewBLF(cfg)
	require.NoError(t, err)

	if onlyBLF {
		srv.OnSubscribe(h.blf.ServeSubscribe)
	} else {
		srv.OnSubscribe(func(req *sip.Request, tx sip.ServerTransaction) {
			if req.To().Params.Has("tag") || h.blf.Watches(req.Recipient.User) {
				h.blf.ServeSubscribe(req, tx)
				return
			}
			// The host's own users: presence of its phones, say.
			res := sip.NewResponseFromRequest(req, sip.StatusForbidden, "Forbidden", nil)
			res.AppendHeader(sip.NewHeader("Warning", `399 host-pbx "not a park key"`))
			_ = tx.Respond(res)
		})
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeUDP(conn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, h.lot.Shutdown(ctx))
		require.NoError(t, h.blf.Close(ctx))
		require.Zero(t, h.blf.Len(), "subscriptions left")
		conn.Close()
		<-served
		ua.Close()
	})
	return h
}

func (h *hostPBX) uri(user string) string { return "sip:" + user + "@" + h.addr.String() }

// hostLeg is a parked party the host holds in its own way: the lot only
// needs to hold and hang it up.
type hostLeg struct{}

func (hostLeg) Hold(context.Context, park.Music) error { return nil }
func (hostLeg) Hangup(context.Context) error           { return nil }

// nextNotify waits for the subscription's next NOTIFY.
func nextNotify(t *testing.T, ctx context.Context, sub *parktest.Subscription) parktest.Notify {
	t.Helper()
	select {
	case n := <-sub.Notifies():
		return n
	case <-ctx.Done():
		t.Fatal("no NOTIFY")
	}
	return parktest.Notify{}
}

// nextDialogInfo waits for the next NOTIFY and parses its full-state body.
func nextDialogInfo(t *testing.T, ctx context.Context, sub *parktest.Subscription) parktest.DialogInfo {
	t.Helper()
	n := nextNotify(t, ctx, sub)
	require.Equal(t, "dialog", n.Event)
	require.Equal(t, "application/dialog-info+xml", n.ContentType)
	info, err := parktest.ParseDialogInfo(n.Body)
	require.NoError(t, err)
	require.Equal(t, "full", info.State)
	return info
}

// A host serves BLF from its own sipgo server: SUBSCRIBEs to the orbits and
// the park extension go to the BLF, the rest stay the host's; watchers hear
// a park and its end with versions counting up.
func TestBLFServedByHost(t *testing.T) {
	h := newHostPBX(t, sipadapter.BLFConfig{Orbits: orbitsTable(t, "701-710,nodeB=801-810"), ParkExtension: "70"}, false)
	ctx := ctxFor(t, 20*time.Second)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})

	require.True(t, h.blf.Watches("70"), "the park extension")
	require.True(t, h.blf.Watches("705"), "a local orbit")
	require.False(t, h.blf.Watches("805"), "an orbit of another node")
	require.False(t, h.blf.Watches("711"), "outside every range")
	require.False(t, h.blf.Watches("alice"))

	orbitSub, err := watcher.Subscribe(ctx, h.uri("701"), "dialog", time.Hour)
	require.NoError(t, err)
	lotSub, err := watcher.Subscribe(ctx, h.uri("70"), "dialog", time.Hour)
	require.NoError(t, err)
	first := nextDialogInfo(t, ctx, orbitSub)
	require.Empty(t, first.Dialogs, "an empty orbit")
	require.Equal(t, h.uri("701"), first.Entity, "entity URIs name the host's address")
	require.Empty(t, nextDialogInfo(t, ctx, lotSub).Dialogs)
	waitUntil(t, 5*time.Second, "both subscriptions are alive", func() bool { return h.blf.Len() == 2 })

	// A call parked in another orbit reaches the lot's watcher only.
	other, err := h.lot.Park(ctx, park.ParkRequest{Leg: hostLeg{}, Orbit: "702", Party: "sip:carol@example.com"})
	require.NoError(t, err)
	require.Len(t, nextDialogInfo(t, ctx, lotSub).Dialogs, 1)

	call, err := h.lot.Park(ctx, park.ParkRequest{Leg: hostLeg{}, Orbit: "701", Party: "sip:alice@example.com"})
	require.NoError(t, err)
	busy := nextDialogInfo(t, ctx, orbitSub)
	require.Equal(t, first.Version+1, busy.Version, "the orbit's watcher heard nothing of 702")
	require.Len(t, busy.Dialogs, 1)
	require.Equal(t, "confirmed", busy.Dialogs[0].State)
	require.Equal(t, "sip:alice@example.com", busy.Dialogs[0].Remote)
	require.Equal(t, h.uri("701"), busy.Dialogs[0].Local)
	require.Len(t, nextDialogInfo(t, ctx, lotSub).Dialogs, 2)

	require.True(t, call.Abandon())
	free := nextDialogInfo(t, ctx, orbitSub)
	require.Equal(t, busy.Version+1, free.Version)
	require.Len(t, free.Dialogs, 1)
	require.Equal(t, "terminated", free.Dialogs[0].State)
	nextDialogInfo(t, ctx, lotSub)
	require.True(t, other.Abandon())
	nextDialogInfo(t, ctx, lotSub)

	// What the BLF does not watch is the host's to answer; what it
	// watches but cannot serve, it refuses as the park server does.
	_, err = watcher.Subscribe(ctx, h.uri("alice"), "dialog", time.Hour)
	require.Equal(t, 403, statusOf(t, err), "the host's own answer")
	_, err = watcher.Subscribe(ctx, h.uri("701"), "presence", time.Hour)
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 489, se.Code)
	require.Equal(t, "dialog, refer", se.Response.GetHeader("Allow-Events").Value())

	require.NoError(t, orbitSub.Unsubscribe(ctx))
	require.NoError(t, lotSub.Unsubscribe(ctx))
	require.Zero(t, h.blf.Len())
}

// ServeSubscribe as the host's whole OnSubscribe answers what it cannot
// serve as the park server does: 404 for a user it does not watch, 489 for
// no Event, 400 for a bad Expires, 481 for a refresh of no subscription.
func TestBLFRefusals(t *testing.T) {
	h := newHostPBX(t, sipadapter.BLFConfig{}, true)
	ctx := ctxFor(t, 20*time.Second)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})

	send := func(user string, headers ...sip.Header) *sip.Response {
		t.Helper()
		var uri sip.Uri
		require.NoError(t, sip.ParseUri(h.uri(user), &uri))
		req := sip.NewRequest(sip.SUBSCRIBE, uri)
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "blf", Host: "127.0.0.1", Port: int(watcher.Addr().Port())}})
		for _, hdr := range headers {
			req.AppendHeader(hdr)
		}
		res, err := watcher.Send(ctx, req)
		require.NoError(t, err)
		return res
	}
	dialog := sip.NewHeader("Event", "dialog")
	require.Equal(t, 404, send("600", dialog).StatusCode)
	require.Equal(t, 400, send("701", dialog, sip.NewHeader("Expires", "soon")).StatusCode)
	require.Equal(t, 489, send("701").StatusCode, "no Event at all")

	var uri sip.Uri
	require.NoError(t, sip.ParseUri(h.uri("701"), &uri))
	refresh := sip.NewRequest(sip.SUBSCRIBE, uri)
	refresh.AppendHeader(dialog)
	to := sip.ToHeader{Address: uri, Params: sip.NewParams()}
	to.Params.Add("tag", "nosuchtag")
	refresh.AppendHeader(&to)
	res, err := watcher.Send(ctx, refresh)
	require.NoError(t, err)
	require.Equal(t, 481, res.StatusCode)
	require.Zero(t, h.blf.Len())
}

// A fetch (Expires: 0) gets one NOTIFY with the state and no subscription.
func TestBLFFetch(t *testing.T) {
	h := newHostPBX(t, sipadapter.BLFConfig{}, false)
	ctx := ctxFor(t, 20*time.Second)
	_, err := h.lot.Park(ctx, park.ParkRequest{Leg: hostLeg{}, Orbit: "703", Party: "sip:alice@example.com"})
	require.NoError(t, err)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})
	sub, err := watcher.Subscribe(ctx, h.uri("703"), "dialog", 0)
	require.NoError(t, err)
	n := nextNotify(t, ctx, sub)
	require.Equal(t, "terminated;reason=timeout", n.State)
	info, err := parktest.ParseDialogInfo(n.Body)
	require.NoError(t, err)
	require.Len(t, info.Dialogs, 1)
	require.Equal(t, "confirmed", info.Dialogs[0].State)
	require.Zero(t, h.blf.Len())
}

// Close tells every watcher the lot is gone (terminated;reason=noresource),
// answers a later SUBSCRIBE the same way, and can be called again.
func TestBLFCloseEndsSubscriptions(t *testing.T) {
	h := newHostPBX(t, sipadapter.BLFConfig{}, false)
	ctx := ctxFor(t, 20*time.Second)
	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})
	var subs []*parktest.Subscription
	for _, user := range []string{"701", "702", "700"} {
		sub, err := watcher.Subscribe(ctx, h.uri(user), "dialog", time.Hour)
		require.NoError(t, err)
		require.Equal(t, "active;expires=3600", nextNotify(t, ctx, sub).State)
		subs = append(subs, sub)
	}
	waitUntil(t, 5*time.Second, "three subscriptions", func() bool { return h.blf.Len() == 3 })

	require.NoError(t, h.blf.Close(ctx))
	require.Zero(t, h.blf.Len())
	for _, sub := range subs {
		n := nextNotify(t, ctx, sub)
		require.Equal(t, "terminated;reason=noresource", n.State)
		select {
		case <-sub.Done():
		case <-ctx.Done():
			t.Fatal("the subscription did not end")
		}
	}

	late, err := watcher.Subscribe(ctx, h.uri("701"), "dialog", time.Hour)
	require.NoError(t, err)
	require.Equal(t, "terminated;reason=noresource", nextNotify(t, ctx, late).State)
	require.Zero(t, h.blf.Len())

	// The lot lives on without its watchers: no NOTIFY for this park.
	_, err = h.lot.Park(ctx, park.ParkRequest{Leg: hostLeg{}, Orbit: "701"})
	require.NoError(t, err)
	require.NoError(t, h.blf.Close(ctx), "idempotent")
}

// A watcher that no longer answers holds Close no longer than its context:
// the NOTIFYs in flight are cancelled.
func TestBLFCloseBoundedByContext(t *testing.T) {
	h := newHostPBX(t, sipadapter.BLFConfig{}, false)
	ctx := ctxFor(t, 20*time.Second)
	// The watcher's Contact is a socket that reads NOTIFYs and never answers.
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer silent.Close()
	phone := parktest.NewPhone(t, parktest.PhoneOptions{User: "blf"})
	var uri sip.Uri
	require.NoError(t, sip.ParseUri(h.uri("701"), &uri))
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	req.AppendHeader(sip.NewHeader("Event", "dialog"))
	req.AppendHeader(sip.NewHeader("Expires", "3600"))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "gone", Host: "127.0.0.1", Port: silent.LocalAddr().(*net.UDPAddr).Port}})
	res, err := phone.Send(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)

	buf := make([]byte, 4096)
	require.NoError(t, silent.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, from, err := silent.ReadFromUDP(buf)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(buf[:n]), "NOTIFY "), "the first NOTIFY is out, waiting for its answer")
	// From the host's listener (the client's connection address), though
	// this Contact never sent the host anything: not from a socket sipgo
	// would bind for it.
	require.Equal(t, h.addr.String(), from.String())

	closeCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = h.blf.Close(closeCtx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second, "not the 5 s each NOTIFY may take")
	require.Zero(t, h.blf.Len())
}

// NewBLF names the field at fault.
func TestNewBLFConfigErrors(t *testing.T) {
	lot, err := park.NewLot(park.Config{DisableMusicOnHold: true})
	require.NoError(t, err)
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	t.Cleanup(func() { ua.Close() })
	client, err := sipgo.NewClient(ua)
	require.NoError(t, err)
	addr := netip.MustParseAddrPort("127.0.0.1:5060")

	for _, tc := range []struct {
		name string
		cfg  sipadapter.BLFConfig
		want string
	}{
		{"no lot", sipadapter.BLFConfig{Client: client, Addr: addr}, "blfConfig.Lot is nil"},
		{"no client", sipadapter.BLFConfig{Lot: lot, Addr: addr}, "blfConfig.Client is nil"},
		{"no address", sipadapter.BLFConfig{Lot: lot, Client: client}, "blfConfig.Addr"},
		{"port 0", sipadapter.BLFConfig{Lot: lot, Client: client, Addr: netip.MustParseAddrPort("127.0.0.1:0")}, "blfConfig.Addr"},
		{"extension in a range", sipadapter.BLFConfig{Lot: lot, Client: client, Addr: addr, ParkExtension: "750"}, "blfConfig.ParkExtension"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := sipadapter.NewBLF(tc.cfg)
			require.Nil(t, b)
			require.ErrorContains(t, err, tc.want)
			require.True(t, strings.HasPrefix(err.Error(), "sipadapter: "))
		})
	}

	b, err := sipadapter.NewBLF(sipadapter.BLFConfig{Lot: lot, Client: client, Addr: addr})
	require.NoError(t, err)
	require.True(t, b.Watches(sipadapter.DefaultParkExtension), "the default park extension")
	require.True(t, b.Watches("799"), "the default orbits")
	require.False(t, b.Watches("800"))
	require.NoError(t, b.Close(t.Context()))
}
