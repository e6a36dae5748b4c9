package sipadapter_test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// rawUDPParty is a caller made of bare UDP sockets, for what parktest will
// not do on purpose: an INVITE without SDP, a Contact on another socket
// than the one it sends from, an ACK that answers nothing.
type rawUDPParty struct {
	t       *testing.T
	send    *net.UDPConn // requests leave from here; responses come back here
	contact *net.UDPConn // the Contact: the server's requests arrive here
	server  *net.UDPAddr

	from, callID, target string
}

// newRawUDPParty opens the party's sockets; with separateContact its
// Contact is a second socket that never sends anything.
func newRawUDPParty(t *testing.T, server netip.AddrPort, separateContact bool) *rawUDPParty {
	t.Helper()
	p := &rawUDPParty{t: t, send: listenLoopbackUDP(t), server: net.UDPAddrFromAddrPort(server)}
	p.contact = p.send
	if separateContact {
		p.contact = listenLoopbackUDP(t)
	}
	p.from = fmt.Sprintf("<sip:raw@%s>;tag=%s", p.send.LocalAddr(), sip.GenerateTagN(8))
	p.callID = sip.GenerateTagN(16)
	return p
}

func listenLoopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// sdpOffer is a PCMU offer for media on port, version v of its o= line.
func sdpOffer(port, v int, direction string) string {
	return fmt.Sprintf("v=0\r\no=raw 1 %d IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=%s\r\n", v, port, direction)
}

// withBody is the Content-Type and Content-Length lines and the body of an
// SDP body, or just Content-Length: 0 for none.
func withBody(body string) string {
	if body == "" {
		return "Content-Length: 0\r\n\r\n"
	}
	return fmt.Sprintf("Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// invite sends an INVITE to target with body (none: a delayed offer) and
// returns the final response.
func (p *rawUDPParty) invite(target, body string) *sip.Response {
	p.t.Helper()
	p.target = target
	p.write(fmt.Sprintf("INVITE %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]s\r\nMax-Forwards: 70\r\n"+
		"From: %[4]s\r\nTo: <%[1]s>\r\nCall-ID: %[5]s\r\nCSeq: 1 INVITE\r\nContact: <sip:raw@%[6]s>\r\n%[7]s",
		target, p.send.LocalAddr(), sip.GenerateTagN(12), p.from, p.callID, p.contact.LocalAddr(), withBody(body)))
	for {
		msg, _ := readDatagram(p.t, p.send)
		res, ok := msg.(*sip.Response)
		require.True(p.t, ok, "a response to the INVITE, not %v", msg)
		if !res.IsProvisional() {
			return res
		}
	}
}

// ack acknowledges the 200 res, with body as the answer to a delayed
// offer ("" for none).
func (p *rawUDPParty) ack(res *sip.Response, body string) {
	p.t.Helper()
	toTag, _ := res.To().Params.Get("tag")
	p.write(fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\nMax-Forwards: 70\r\n"+
		"From: %s\r\nTo: <%s>;tag=%s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\n%s",
		res.Contact().Address.String(), p.send.LocalAddr(), sip.GenerateTagN(12), p.from, p.target, toTag, p.callID, withBody(body)))
}

func (p *rawUDPParty) write(msg string) {
	p.t.Helper()
	_, err := p.send.WriteToUDP([]byte(msg), p.server)
	require.NoError(p.t, err)
}

// serveUntilBye answers what the server sends to the Contact until its BYE:
// a re-INVITE gets answer (an SDP body), a retransmitted 200 is skipped, and
// each request must come from the server's own port.
func (p *rawUDPParty) serveUntilBye(answer string) {
	p.t.Helper()
	for {
		msg, src := readDatagram(p.t, p.contact)
		if res, ok := msg.(*sip.Response); ok && res.StatusCode == 200 && p.contact == p.send {
			continue // our 200 again, sent before the server read the ACK
		}
		req, ok := msg.(*sip.Request)
		require.True(p.t, ok, "the Contact gets requests only, not %v", msg)
		require.Equal(p.t, netip.AddrPortFrom(p.server.AddrPort().Addr().Unmap(), p.server.AddrPort().Port()), src,
			"%s leaves from the server's own port", req.Method)
		var reply *sip.Response
		switch req.Method {
		case sip.ACK:
			continue
		case sip.INVITE:
			reply = sip.NewResponseFromRequest(req, 200, "OK", []byte(answer))
			reply.AppendHeader(sip.NewHeader("Contact", "<sip:raw@"+p.contact.LocalAddr().String()+">"))
			reply.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
		case sip.BYE:
			reply = sip.NewResponseFromRequest(req, 200, "OK", nil)
		default:
			p.t.Fatalf("unexpected %s", req.Method)
		}
		_, err := p.contact.WriteToUDP([]byte(reply.String()), net.UDPAddrFromAddrPort(src))
		require.NoError(p.t, err)
		if req.Method == sip.BYE {
			return
		}
	}
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
