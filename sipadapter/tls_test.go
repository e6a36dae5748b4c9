package sipadapter_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// tlsServer is a park server with SIP over TLS on a certificate of ca;
// mutual requires its peers' certificates from ca too.
func tlsServer(t *testing.T, ca *tlstest.CA, mutual bool, cfg sipadapter.Config) *sipadapter.Server {
	t.Helper()
	conf := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{})}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	if mutual {
		conf.ClientAuth, conf.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	}
	cfg.TLSListen, cfg.TLS = "127.0.0.1:0", conf
	return testServer(t, cfg)
}

// tlsPhone is a parktest phone over TLS with a certificate of ca that
// trusts roots.
func tlsPhone(t *testing.T, user string, cert tls.Certificate, roots *tlstest.CA) *parktest.Phone {
	t.Helper()
	return parktest.NewPhone(t, parktest.PhoneOptions{User: user, Transport: "tls",
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots.Pool(), MinVersion: tls.VersionTLS12}})
}

func tlsURI(srv *sipadapter.Server, user string) string {
	return fmt.Sprintf("sip:%s@%s;transport=tls", user, srv.TLSAddr())
}

// Park and retrieve over TLS: the dialogs' Contacts are the TLS address,
// so the BYE that ends the parked call comes over TLS too; the audio is
// relayed both ways. Plain UDP is still served beside.
func TestParkAndRetrieveOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	srv := tlsServer(t, ca, false, sipadapter.Config{})
	require.True(t, srv.TLSAddr().IsValid())
	alice := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)
	bob := tlsPhone(t, "bob", ca.Issue(t, tlstest.Leaf{}), ca)
	ctx := ctxFor(t, 20*time.Second)

	parked, err := alice.Call(ctx, tlsURI(srv, "700"), parktest.CallOptions{})
	require.NoError(t, err)
	require.Equal(t, "701", parked.Orbit())
	require.Contains(t, parked.Header("Contact"), fmt.Sprintf("%s;transport=tls", srv.TLSAddr()), "the dialog stays on TLS")
	require.NoError(t, parked.WaitReceived(ctx, 10))

	talk, err := bob.Call(ctx, tlsURI(srv, "701"), parktest.CallOptions{})
	require.NoError(t, err)
	before := parked.Received()
	require.NoError(t, talk.WaitReceived(ctx, 25))
	require.NoError(t, parked.WaitReceived(ctx, before+25))
	require.NoError(t, talk.Hangup(ctx))
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote(), "bob's hang-up reached alice over TLS")
	case <-ctx.Done():
		t.Fatal("alice's call did not end")
	}

	udp := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	c, err := udp.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "UDP beside TLS")
	require.NoError(t, c.Hangup(ctx))
}

// Mutual TLS, as Lync's Call Park Service required: a peer with a
// certificate from the CA is served; one from another CA, or an expired
// one, is refused at the handshake.
func TestMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	other := tlstest.NewCA(t, "someone else's CA")
	srv := tlsServer(t, ca, true, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)

	good := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)
	c, err := good.Call(ctx, tlsURI(srv, "700"), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, c.Hangup(ctx))

	for name, cert := range map[string]tls.Certificate{
		"another CA's": other.Issue(t, tlstest.Leaf{}),
		"expired":      ca.Issue(t, tlstest.Leaf{Expired: true}),
	} {
		p := tlsPhone(t, "mallory", cert, ca)
		_, err := p.Call(ctxFor(t, 5*time.Second), tlsURI(srv, "700"), parktest.CallOptions{Mute: true})
		require.Error(t, err, "a peer with %s certificate is refused", name)
	}
	require.Zero(t, srv.Lot().Len(), "nobody else parked")
}

// A recall to a parker reached over TLS goes over TLS, and the server
// checks the parker's certificate: one for another host is refused, so the
// recall fails and the call goes on to the fallback (none: dropped).
func TestRecallOverTLSChecksTheParkersCertificate(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	srv := tlsServer(t, ca, false, sipadapter.Config{Park: park.Config{PickupTimeout: 10 * time.Second, RecallRingTime: 3 * time.Second}})
	ctx := ctxFor(t, 40*time.Second)
	alice := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)

	for _, tc := range []struct {
		name    string
		cert    tls.Certificate
		outcome park.Outcome
	}{
		{"the parker's own certificate", ca.Issue(t, tlstest.Leaf{}), park.Recalled},
		{"a certificate for another host", ca.Issue(t, tlstest.Leaf{Hosts: []string{"phone.example.com"}}), park.Dropped},
	} {
		bob := tlsPhone(t, "bob", tc.cert, ca)
		require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.AutoAnswer}))
		parker := fmt.Sprintf("<%s>", bob.URI())
		parked, err := alice.Call(ctx, tlsURI(srv, "700"), parktest.CallOptions{Mute: true,
			Headers: []sip.Header{sip.NewHeader("Referred-By", parker)}})
		require.NoError(t, err)
		o := parked.Orbit()
		ended := make(chan park.Event, 1)
		stop := srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
			if e.Kind == park.EventEnded && string(e.Call.Orbit) == o {
				ended <- e
			}
		}))
		select {
		case e := <-ended:
			require.Equal(t, tc.outcome, e.Outcome, tc.name)
		case <-ctx.Done():
			t.Fatalf("%s: the call never left its orbit", tc.name)
		}
		stop()
		_ = parked.Hangup(ctx)
	}
}

// A sips: Request-URI: over TLS the dialog's Contact is sips: too (RFC
// 3261 §12.1.1); over plain TCP the request is refused with 416, since a
// sips: request must cross TLS on every hop.
func TestSIPSRequestURI(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	srv := tlsServer(t, ca, false, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)
	parked, err := alice.Call(ctx, fmt.Sprintf("sips:700@%s", srv.TLSAddr()), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Contains(t, parked.Header("Contact"), "<sips:", "a sips: dialog has a sips: Contact")
	require.NoError(t, parked.Hangup(ctx))

	conn, err := net.Dial("tcp", srv.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	local := conn.LocalAddr().String()
	invite := "INVITE sips:700@" + srv.Addr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP " + local + ";branch=z9hG4bK-sips-over-tcp\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:mallory@" + local + ">;tag=m1\r\nTo: <sips:700@" + srv.Addr().String() + ">\r\n" +
		"Call-ID: sips-over-tcp\r\nCSeq: 1 INVITE\r\nContact: <sip:mallory@" + local + ";transport=tcp>\r\nContent-Length: 0\r\n\r\n"
	_, err = conn.Write([]byte(invite))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
	status, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "SIP/2.0 416 Unsupported URI Scheme\r\n", status)
	require.Zero(t, srv.Lot().Len())
}

// A BLF watcher over TLS hears a park in its orbit over its own
// connection: its certificate is one the server cannot check, so a
// connection the server opened to its Contact would fail.
func TestBLFOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	srv := tlsServer(t, ca, false, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	watcher := tlsPhone(t, "watcher", tlstest.NewCA(t, "self-signed, in effect").Issue(t, tlstest.Leaf{}), ca)
	sub, err := watcher.Subscribe(ctx, tlsURI(srv, "701"), "dialog", time.Hour)
	require.NoError(t, err)
	nextDialogInfo(t, ctx, sub)
	alice := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)
	parked, err := alice.Call(ctx, tlsURI(srv, "700"), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NotEmpty(t, nextDialogInfo(t, ctx, sub).Dialogs, "lit over TLS")
	require.NoError(t, parked.Hangup(ctx))
	require.NoError(t, sub.Unsubscribe(ctx))
}

// A watcher that subscribes to a sips: URI (the whole lot's) gets a sips: Contact in every
// NOTIFY (the subscription is a dialog: RFC 3261 §12.1.1, RFC 6665
// §4.1.2.2), and its lamp still lights; one subscribing to a sip: URI over
// TLS gets the TLS address with transport=tls.
func TestBLFOverTLSWithSipsURI(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	srv := tlsServer(t, ca, false, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	watcher := tlsPhone(t, "watcher", ca.Issue(t, tlstest.Leaf{}), ca)
	secure, err := watcher.Subscribe(ctx, fmt.Sprintf("sips:700@%s", srv.TLSAddr()), "dialog", time.Hour)
	require.NoError(t, err)
	plain, err := watcher.Subscribe(ctx, tlsURI(srv, "700"), "dialog", time.Hour)
	require.NoError(t, err)
	for _, sub := range []*parktest.Subscription{secure, plain} {
		n := nextNotify(t, ctx, sub)
		if sub == secure {
			require.Contains(t, n.Contact, "<sips:700@"+srv.TLSAddr().String(), "a sips: subscription's NOTIFY")
		} else {
			require.Contains(t, n.Contact, "<sip:700@"+srv.TLSAddr().String()+";transport=tls>", "a sip: subscription over TLS")
		}
	}

	alice := tlsPhone(t, "alice", ca.Issue(t, tlstest.Leaf{}), ca)
	parked, err := alice.Call(ctx, tlsURI(srv, "700"), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	n := nextNotify(t, ctx, secure)
	info, err := parktest.ParseDialogInfo(n.Body)
	require.NoError(t, err)
	require.NotEmpty(t, info.Dialogs, "lit over the sips: subscription")
	require.Contains(t, n.Contact, "<sips:")
	require.NoError(t, parked.Hangup(ctx))
	require.NoError(t, secure.Unsubscribe(ctx))
	require.NoError(t, plain.Unsubscribe(ctx))
}
