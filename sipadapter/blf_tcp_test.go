package sipadapter_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// udpAndTCPOnOnePort binds a UDP socket and a TCP listener on the same
// loopback port, as a phone listening on both transports does.
func udpAndTCPOnOnePort(t *testing.T) (*net.UDPConn, *net.TCPListener) {
	t.Helper()
	for range 20 {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp.LocalAddr().(*net.UDPAddr).Port})
		if err == nil {
			t.Cleanup(func() { udp.Close(); tcp.Close() })
			return udp, tcp
		}
		udp.Close()
	}
	t.Fatal("no port free on both UDP and TCP")
	return nil, nil
}

// readSIPMessage reads one message off a stream: its start line, headers
// and Content-Length body.
func readSIPMessage(r *bufio.Reader) (start string, h textproto.MIMEHeader, body []byte, err error) {
	tp := textproto.NewReader(r)
	if start, err = tp.ReadLine(); err != nil {
		return "", nil, nil, err
	}
	if h, err = tp.ReadMIMEHeader(); err != nil {
		return "", nil, nil, err
	}
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return start, h, body, err
}

// A whole-lot watcher's NOTIFY passes 1,300 bytes with a handful of calls
// parked; sipgo will not send that over UDP (RFC 3261 §18.1.1), so the BLF
// sends it over TCP to the watcher's port, where phones listen too.
func TestBLFLargeNotifyGoesOverTCP(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	var calls []*parktest.Call
	for range 6 {
		c, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		calls = append(calls, c)
	}

	udp, tcp := udpAndTCPOnOnePort(t)
	local := udp.LocalAddr().String()
	dst, err := net.ResolveUDPAddr("udp4", srv.Addr().String())
	require.NoError(t, err)
	var toTag string // the server's tag, for the in-dialog unsubscribe
	subscribe := func(cseq, expires int) {
		msg := fmt.Sprintf("SUBSCRIBE sip:700@%[1]s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK-blf-%[3]d\r\n"+
			"From: <sip:console@%[2]s>;tag=console\r\nTo: <sip:700@%[1]s>%[5]s\r\n"+
			"Call-ID: blf-large\r\nCSeq: %[3]d SUBSCRIBE\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:console@%[2]s>\r\nEvent: dialog\r\nAccept: application/dialog-info+xml\r\n"+
			"Expires: %[4]d\r\nContent-Length: 0\r\n\r\n", srv.Addr(), local, cseq, expires, map[bool]string{true: ";tag=" + toTag, false: ""}[cseq > 1])
		_, err := udp.WriteTo([]byte(msg), dst)
		require.NoError(t, err)
	}
	subscribe(1, 600)
	require.NoError(t, udp.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 4096)
	n, _, err := udp.ReadFrom(buf)
	require.NoError(t, err)
	start, h, _, err := readSIPMessage(bufio.NewReader(strings.NewReader(string(buf[:n]))))
	require.NoError(t, err)
	require.Equal(t, "SIP/2.0 200 OK", start)
	_, toTag, _ = strings.Cut(h.Get("To"), ";tag=")

	require.NoError(t, tcp.SetDeadline(time.Now().Add(10*time.Second)))
	conn, err := tcp.Accept()
	require.NoError(t, err, "the NOTIFY comes over TCP")
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	r := bufio.NewReader(conn)
	answer := func() (string, textproto.MIMEHeader, string) {
		t.Helper()
		start, h, body, err := readSIPMessage(r)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(start, "NOTIFY "), start)
		res := "SIP/2.0 200 OK\r\n"
		for _, name := range []string{"Via", "From", "To", "Call-Id", "Cseq"} {
			for _, v := range h.Values(name) {
				res += name + ": " + v + "\r\n"
			}
		}
		_, err = io.WriteString(conn, res+"Content-Length: 0\r\n\r\n")
		require.NoError(t, err)
		return start, h, string(body)
	}
	_, h, body := answer()
	require.Greater(t, len(body), 1300, "a NOTIFY UDP could not carry")
	require.Equal(t, 6, strings.Count(body, "<dialog "), "every parked call is in the state")
	require.Contains(t, h.Get("Subscription-State"), "active")

	subscribe(2, 0) // unsubscribe: the final NOTIFY is as large, over TCP too
	for {
		_, h, _ := answer()
		if strings.HasPrefix(h.Get("Subscription-State"), "terminated") {
			break
		}
	}
	waitUntil(t, 5*time.Second, "the subscription ends", func() bool { return srv.Subscriptions() == 0 })
	for _, c := range calls {
		require.NoError(t, c.Hangup(ctx))
	}
}
