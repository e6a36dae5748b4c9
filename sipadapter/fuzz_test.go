package sipadapter_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

// The addresses the seeds of FuzzServerDatagram are written with; each
// input has them replaced by the live ones before it is sent, so that a
// seed reaches the server and what the server sends back (responses, BYE,
// NOTIFY, MESSAGE, recalls) reaches the fuzzer's peer, which answers it.
const (
	fuzzServerAddr = "127.0.0.1:5060"
	fuzzClientAddr = "127.0.0.1:5062"
)

// FuzzServerDatagram sends raw SIP to a live park server, as a datagram
// over UDP and as the whole of a TCP connection, and checks after each
// input that the server still answers OPTIONS (over TCP every so often,
// and at the end); at the end, that Shutdown ends every call it parked,
// bridged or subscribed with nothing left behind. A panic in any handler
// fails the run. Seeds live in testdata/fuzz/FuzzServerDatagram: well-formed
// requests of every flow (park, directed park, retrieve, Replaces, REFER,
// SUBSCRIBE, BYE, CANCEL, ACK, responses) and malformed ones.
func FuzzServerDatagram(f *testing.F) {
	// Cleanups run last first: the server's Shutdown comes before the
	// sockets close, since its BYEs and NOTIFYs are answered on them.
	peer := newFuzzPeer(f)
	probe := newFuzzProbe(f)
	srv := fuzzServer(f)
	peer.server = net.UDPAddrFromAddrPort(srv.Addr())
	probe.srv = srv
	f.Cleanup(func() {
		// The server must still answer after the last input, on both
		// transports.
		if err := probe.pingUDP(); err != nil {
			f.Errorf("after the last input, over UDP: %v", err)
		}
		if err := probe.pingTCP(); err != nil {
			f.Errorf("after the last input, over TCP: %v", err)
		}
	})
	f.Add([]byte("OPTIONS sip:700@" + fuzzServerAddr + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + fuzzClientAddr + ";branch=z9hG4bK-seed;rport\r\n" +
		"From: <sip:alice@" + fuzzClientAddr + ">;tag=seed\r\nTo: <sip:700@" + fuzzServerAddr + ">\r\n" +
		"Call-ID: seed@" + fuzzClientAddr + "\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"))

	var n int
	f.Fuzz(func(t *testing.T, data []byte) {
		msg := bytes.ReplaceAll(data, []byte(fuzzServerAddr), []byte(srv.Addr().String()))
		msg = bytes.ReplaceAll(msg, []byte(fuzzClientAddr), []byte(peer.addr()))
		peer.send(msg)
		if err := sendTCP(srv, msg); err != nil {
			t.Fatalf("TCP: %v", err)
		}
		if err := probe.pingUDP(); err != nil {
			t.Fatalf("the server stopped answering: %v", err)
		}
		if n++; n%64 == 0 {
			if err := probe.pingTCP(); err != nil {
				t.Fatalf("the server stopped answering over TCP: %v", err)
			}
		}
	})
}

// fuzzServer starts a park server as testServer does, with a small lot
// and fast recalls so that what the fuzzer parks comes back out: orbits in
// every numbering form plus another node's range, a 10 s pickup timeout
// and 1 s recalls. Cleanup shuts it down and checks that nothing was left.
func fuzzServer(f *testing.F) *sipadapter.Server {
	table, err := orbit.ParseTable("701-710,*7000-*7004,#1000-#1004,nodeB=801-899")
	if err != nil {
		f.Fatal(err)
	}
	music, err := media.Tone("fuzz music", 440, time.Second)
	if err != nil {
		f.Fatal(err)
	}
	cfg := sipadapter.Config{
		Listen:     "127.0.0.1:0",
		Orbits:     table,
		RTPPortMin: 15000, RTPPortMax: 15039, // no other test uses these
		Park: park.Config{
			PickupTimeout:  park.MinPickupTimeout,
			RecallRingTime: park.MinRecallRingTime,
			MusicOnHold:    music,
		},
	}
	if os.Getenv("CALLPARK_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := sipadapter.New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		// Calls the fuzz peer answered (recalls) would be drained until
		// their parties hang up, which the peer never does: 5 s, then BYE.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			f.Errorf("Shutdown: %v", err)
		}
		for what, n := range map[string]int{
			"parked calls":      srv.Lot().Len(),
			"SIP dialogs":       srv.OpenLegs(),
			"RTP ports":         srv.PortsInUse(),
			"BLF subscriptions": srv.Subscriptions(),
		} {
			if n != 0 {
				f.Errorf("%d %s left after Shutdown", n, what)
			}
		}
	})
	return srv
}

// fuzzPeer is the UDP socket the fuzzed datagrams leave from, answering
// what the server sends it as a plain phone would, so that what the
// fuzzer starts can end: an ACK to a 2xx of an INVITE (the call is then
// parked or bridged for real), 200 to a re-INVITE, 480 to a new INVITE (a
// recall: the attempt ends at once), 200 to any other request (BYE,
// NOTIFY, MESSAGE). RTP the server sends it is read and dropped too.
type fuzzPeer struct {
	conn   *net.UDPConn
	server *net.UDPAddr // set once the server listens
	done   chan struct{}
	acks   int
}

func newFuzzPeer(f *testing.F) *fuzzPeer {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	p := &fuzzPeer{conn: conn, done: make(chan struct{})}
	go p.serve()
	f.Cleanup(func() {
		conn.Close()
		<-p.done
	})
	return p
}

func (p *fuzzPeer) addr() string { return p.conn.LocalAddr().String() }

// send writes msg to the server as one datagram; one too big for UDP is
// not sent (it still goes over TCP).
func (p *fuzzPeer) send(msg []byte) {
	if len(msg) > 65507 {
		return
	}
	_, _ = p.conn.WriteToUDP(msg, p.server)
}

func (p *fuzzPeer) serve() {
	defer close(p.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return // closed
		}
		msg, err := sip.ParseMessage(bytes.Clone(buf[:n]))
		if err != nil {
			continue
		}
		var out string
		switch m := msg.(type) {
		case *sip.Response:
			if cseq := m.CSeq(); cseq != nil && cseq.MethodName == sip.INVITE && m.IsSuccess() {
				out = p.ack(m, from)
			}
		case *sip.Request:
			switch m.Method {
			case sip.ACK:
			case sip.INVITE:
				out = p.answerInvite(m)
			default:
				out = sip.NewResponseFromRequest(m, sip.StatusOK, "OK", nil).String()
			}
		}
		if out != "" {
			_, _ = p.conn.WriteToUDP([]byte(out), from)
		}
	}
}

// answerInvite answers a re-INVITE (the server making a retrieved call
// two-way) with 200 and an SDP answer, and a new INVITE (a recall) with 480,
// which ends that attempt at once.
func (p *fuzzPeer) answerInvite(req *sip.Request) string {
	if to := req.To(); to == nil || !to.Params.Has("tag") {
		return sip.NewResponseFromRequest(req, sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", nil).String()
	}
	host, port, _ := net.SplitHostPort(p.addr())
	res := sip.NewSDPResponseFromRequest(req, []byte("v=0\r\no=peer 1 1 IN IP4 "+host+"\r\ns=-\r\nc=IN IP4 "+host+
		"\r\nt=0 0\r\nm=audio "+port+" RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"))
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: host, Port: p.conn.LocalAddr().(*net.UDPAddr).Port}})
	return res.String()
}

// ack is the ACK of a 2xx to an INVITE (RFC 3261 §13.2.2.4), sent to the
// Contact of the 2xx, or where it came from when it names none.
func (p *fuzzPeer) ack(res *sip.Response, from *net.UDPAddr) string {
	fromH, to, callID, cseq := res.From(), res.To(), res.CallID(), res.CSeq()
	if fromH == nil || to == nil || callID == nil {
		return ""
	}
	target := "sip:" + from.String()
	if c := res.Contact(); c != nil {
		target = c.Address.String()
	}
	p.acks++
	return fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ack-%d;rport\r\nMax-Forwards: 70\r\n%s\r\n%s\r\n%s\r\nCSeq: %d ACK\r\nContent-Length: 0\r\n\r\n",
		target, p.addr(), p.acks, fromH, to, callID, cseq.SeqNo)
}

// sendTCP writes msg to the server as the whole of a TCP connection, then
// resets it, as a phone that crashes would: the server reads what came
// before the reset, and no socket waits in TIME_WAIT, which a
// connection an input would otherwise leave for a minute.
func sendTCP(srv *sipadapter.Server, msg []byte) error {
	conn, err := dialTCP(srv)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, _ = conn.Write(msg) // the server may reset a connection it cannot read
	return nil
}

// dialTCP connects to the server; closing the connection resets it.
func dialTCP(srv *sipadapter.Server) (*net.TCPConn, error) {
	conn, err := net.DialTimeout("tcp", srv.Addr().String(), 10*time.Second)
	if err != nil {
		return nil, err
	}
	tcp := conn.(*net.TCPConn)
	_ = tcp.SetLinger(0)
	return tcp, nil
}

// fuzzProbe checks that the server still answers: an OPTIONS from a socket
// of its own must get its 200.
type fuzzProbe struct {
	srv  *sipadapter.Server // set once it listens
	conn *net.UDPConn
	n    int // OPTIONS sent, for their Call-IDs
}

func newFuzzProbe(f *testing.F) *fuzzProbe {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { conn.Close() })
	return &fuzzProbe{conn: conn}
}

// options is an OPTIONS from local with a Call-ID of its own.
func (p *fuzzProbe) options(transport, local string) (msg, callID string) {
	p.n++
	callID = fmt.Sprintf("probe-%d@%s", p.n, local)
	return fmt.Sprintf("OPTIONS sip:700@%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/%[4]s %[2]s;branch=z9hG4bK-%[3]s;rport\r\n"+
		"From: <sip:probe@%[2]s>;tag=probe\r\nTo: <sip:700@%[1]s>\r\n"+
		"Call-ID: %[3]s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		p.srv.Addr(), local, callID, transport), callID
}

// pingUDP sends an OPTIONS, again every 250 ms, until its 200 comes (10 s
// at most: the machine may be busy, but never that busy).
func (p *fuzzProbe) pingUDP() error {
	msg, callID := p.options("UDP", p.conn.LocalAddr().String())
	dst := net.UDPAddrFromAddrPort(p.srv.Addr())
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 65535)
	for time.Now().Before(deadline) {
		if _, err := p.conn.WriteToUDP([]byte(msg), dst); err != nil {
			return err
		}
		_ = p.conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		for {
			n, _, err := p.conn.ReadFromUDP(buf)
			if err != nil {
				break // resend
			}
			if answered(buf[:n], callID) {
				return nil
			}
		}
	}
	return errors.New("OPTIONS unanswered for 10 s")
}

// pingTCP sends an OPTIONS on a connection of its own and reads its 200.
func (p *fuzzProbe) pingTCP() error {
	conn, err := dialTCP(p.srv)
	if err != nil {
		return err
	}
	defer conn.Close()
	msg, callID := p.options("TCP", conn.LocalAddr().String())
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := textproto.NewReader(bufio.NewReader(conn))
	for {
		status, err := r.ReadLine()
		if err != nil {
			return fmt.Errorf("no answer to OPTIONS: %w", err)
		}
		head, err := r.ReadMIMEHeader()
		if err != nil {
			return fmt.Errorf("no answer to OPTIONS: %w", err)
		}
		if head.Get("Call-ID") == callID && strings.HasPrefix(status, "SIP/2.0 200 ") {
			return nil
		}
	}
}

// answered reports whether datagram is the 200 to the OPTIONS callID.
func answered(datagram []byte, callID string) bool {
	msg, err := sip.ParseMessage(datagram)
	if err != nil {
		return false
	}
	res, ok := msg.(*sip.Response)
	return ok && res.StatusCode == sip.StatusOK && res.CallID() != nil && res.CallID().Value() == callID
}
