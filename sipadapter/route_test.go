package sipadapter_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// Over TCP, every request the server starts (the parker's MESSAGE, the
// recall INVITE) must go to its target, whatever other phones are connected:
// sipgo files each accepted TCP connection under the listener's own address
// too, so a request pinned to that address would ride the connection
// accepted last, to somebody else.
func TestTCPRequestsReachTheirTarget(t *testing.T) {
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob", Transport: "tcp"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol", Transport: "tcp"})
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: "tcp"})
	ctx := ctxFor(t, 20*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Headers: []sip.Header{referredBy(bob.URI())}, Mute: true})
	require.NoError(t, err)
	msgs, err := bob.WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+parked.Orbit(), msgs[0].Body)

	// carol's connection is now the one accepted last.
	res, err := carol.Send(ctx, sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: srv.Addr().Addr().String(), Port: int(srv.Addr().Port()), UriParams: tcpParam()}))
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)

	var outcome park.Outcome
	ended := make(chan struct{})
	srv.Lot().Observe(park.ObserverFunc(func(e park.Event) {
		if e.Kind == park.EventEnded {
			outcome = e.Outcome
			close(ended)
		}
	}))
	require.NoError(t, srv.Shutdown(ctx))
	<-ended
	require.Equal(t, park.Recalled, outcome)
	require.Equal(t, 1, bob.Invites(), "the recall rang the parker")
	require.Zero(t, carol.Invites(), "and nobody else")
	require.Empty(t, carol.Messages())
}

func tcpParam() sip.HeaderParams {
	p := sip.NewParams()
	p.Add("transport", "tcp")
	return p
}

// Over UDP, an in-dialog request (sipgo's dialogs build those without the
// connection address) to a Contact the server never heard from must still
// leave from the server's port, the one the peer knows, not from a new
// socket bound on every interface.
func TestUDPInDialogRequestLeavesFromTheListener(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	// The party sends from one socket and gives another as its Contact.
	send, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { send.Close() })
	contact, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { contact.Close() })
	rtp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { rtp.Close() })

	local, contactAddr := send.LocalAddr().String(), contact.LocalAddr().String()
	callID, tag := sip.GenerateTagN(16), sip.GenerateTagN(8)
	from := fmt.Sprintf("<sip:udpcaller@%s>;tag=%s", local, tag)
	sdp := fmt.Sprintf("v=0\r\no=udpcaller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n", rtp.LocalAddr().(*net.UDPAddr).Port)
	invite := fmt.Sprintf("INVITE %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]s\r\nMax-Forwards: 70\r\n"+
		"From: %[4]s\r\nTo: <%[1]s>\r\nCall-ID: %[5]s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:udpcaller@%[6]s>\r\nContent-Type: application/sdp\r\nContent-Length: %[7]d\r\n\r\n%[8]s",
		srv.ParkURI(), local, sip.GenerateTagN(12), from, callID, contactAddr, len(sdp), sdp)
	server := net.UDPAddrFromAddrPort(srv.Addr())
	_, err = send.WriteToUDP([]byte(invite), server)
	require.NoError(t, err)
	var res *sip.Response
	for res == nil || res.IsProvisional() {
		msg, _ := readDatagram(t, send)
		var ok bool
		res, ok = msg.(*sip.Response)
		require.True(t, ok, "a response to the INVITE, not %v", msg)
	}
	require.Equal(t, 200, res.StatusCode)
	toTag, _ := res.To().Params.Get("tag")
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
		"From: %s\r\nTo: <%s>;tag=%s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		res.Contact().Address.String(), local, sip.GenerateTagN(12), from, srv.ParkURI(), toTag, callID)
	_, err = send.WriteToUDP([]byte(ack), server)
	require.NoError(t, err)

	// carol retrieves and hangs up: the server passes the BYE on.
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	talk, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(res.GetHeader("X-Park-Orbit").Value())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, talk.Hangup(ctx))
	// The server re-INVITEs the party (it leaves hold) and then sends the
	// BYE: every one of its requests comes from its own port.
	for {
		msg, src := readDatagram(t, contact)
		req, ok := msg.(*sip.Request)
		require.True(t, ok, "the Contact gets requests only, not %v", msg)
		require.Equal(t, srv.Addr(), src, "%s leaves from the server's own port", req.Method)
		var answer *sip.Response
		switch req.Method {
		case sip.ACK:
			continue
		case sip.INVITE:
			answer = sip.NewResponseFromRequest(req, 200, "OK", []byte(strings.Replace(sdp, " 1 1 IN", " 1 2 IN", 1)))
			answer.AppendHeader(sip.NewHeader("Contact", "<sip:udpcaller@"+contactAddr+">"))
			answer.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		case sip.BYE:
			answer = sip.NewResponseFromRequest(req, 200, "OK", nil)
		default:
			t.Fatalf("unexpected %s", req.Method)
		}
		_, err = contact.WriteToUDP([]byte(answer.String()), net.UDPAddrFromAddrPort(src))
		require.NoError(t, err)
		if req.Method == sip.BYE {
			break
		}
	}
	waitUntil(t, 5*time.Second, "legs are freed", func() bool { return srv.OpenLegs() == 0 })
}

// readDatagram reads one SIP message from c within 10 s, skipping
// keep-alives, and returns it with its source.
func readDatagram(t *testing.T, c *net.UDPConn) (sip.Message, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65535)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		require.NoError(t, err, "waiting for a SIP message on %s", c.LocalAddr())
		if strings.TrimSpace(string(buf[:n])) == "" {
			continue
		}
		msg, err := sip.ParseMessage(buf[:n])
		require.NoError(t, err)
		return msg, netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	}
}

// Once closed, the router refuses requests with an error callers can test,
// rather than letting sipgo bind a socket that would outlive the user agent.
func TestSourceRouterClosedRefuses(t *testing.T) {
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	t.Cleanup(func() { ua.Close() })
	client, err := sipgo.NewClient(ua)
	require.NoError(t, err)
	r := sipadapter.RouteSources(client, ua, netip.MustParseAddrPort("127.0.0.1:5060"))
	r.Close()
	for _, method := range []sip.RequestMethod{sip.OPTIONS, sip.ACK} {
		req := sip.NewRequest(method, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 9})
		if method == sip.ACK {
			err = client.WriteRequest(req)
		} else {
			_, err = client.Do(context.Background(), req)
		}
		require.ErrorIs(t, err, sipadapter.ErrSenderClosed, "%s after Close", method)
	}
}
