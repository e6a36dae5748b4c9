package siptransport

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/internal/tlstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// A stack answers over UDP and TCP on one port, and once closed leaves
// nothing running: no goroutine, no socket, no way to send.
func TestStackServesAndCloses(t *testing.T) {
	s, err := Listen(Options{Addr: loopback, UserAgent: "test"})
	require.NoError(t, err)
	require.NotZero(t, s.Addr.Port())
	s.Server.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})
	require.NoError(t, s.Serve())
	require.NoError(t, s.Serve(), "a second Serve does nothing")

	peer, err := Listen(Options{Addr: loopback, UserAgent: "peer"})
	require.NoError(t, err)
	require.NoError(t, peer.Serve())
	for _, transport := range []string{"udp", "tcp"} {
		u := sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(s.Addr.Port()), UriParams: sip.NewParams()}
		u.UriParams.Add("transport", transport)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		res, err := peer.Client.Do(ctx, sip.NewRequest(sip.OPTIONS, u))
		cancel()
		require.NoError(t, err, transport)
		require.Equal(t, 200, res.StatusCode, transport)
	}

	s.Close()
	s.Close() // harmless
	require.ErrorIs(t, s.Serve(), ErrClosed)
	_, err = s.Client.Do(context.Background(), sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(peer.Addr.Port())}))
	require.ErrorIs(t, err, ErrSenderClosed, "nothing is sent once closed")
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(s.Addr))
	require.NoError(t, err, "the port is free again")
	conn.Close()
	peer.Close()
}

// A stack closed before it served, or serving a host's user agent, closes
// alike; the host's user agent stays the host's to close.
func TestStackCloseWithoutServeAndWithHostUA(t *testing.T) {
	s, err := Listen(Options{Addr: loopback})
	require.NoError(t, err)
	s.Close()

	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	hosted, err := Listen(Options{Addr: loopback, UA: ua})
	require.NoError(t, err)
	require.NoError(t, hosted.Serve())
	hosted.Close()
	require.NoError(t, ua.Close())
}

func TestListenPairTakenPort(t *testing.T) {
	udp, tcp, err := ListenPair(loopback)
	require.NoError(t, err)
	defer udp.Close()
	defer tcp.Close()
	_, _, err = ListenPair(udp.LocalAddr().(*net.UDPAddr).AddrPort())
	require.Error(t, err, "a port in use is refused, naming it")
	require.Contains(t, err.Error(), udp.LocalAddr().String())
}

// A request over TLS names the TLS listener in its Via, not the UDP and TCP
// one: a peer that answers to the sent-by rather than over the connection
// (linphone) must reach a port that speaks TLS. Over UDP and TCP the Via
// names the shared port as before.
func TestTLSRequestsViaNamesTheTLSListener(t *testing.T) {
	ca := tlstest.NewCA(t, "callpark test CA")
	conf := &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{})}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	s, err := Listen(Options{Addr: loopback, UserAgent: "test", TLSAddr: loopback, TLS: conf})
	require.NoError(t, err)
	defer s.Close()
	require.NoError(t, s.Serve())
	require.NotEqual(t, s.Addr.Port(), s.TLSAddr.Port())

	peer, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	require.NoError(t, err)
	defer peer.Close()
	vias := make(chan string, 1)
	go func() {
		c, err := peer.Accept()
		if err != nil {
			vias <- err.Error()
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		var via string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(line, "Via: ") {
				via = strings.TrimSpace(line)
			}
			if line == "\r\n" {
				break
			}
		}
		vias <- via
	}()
	u := sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: peer.Addr().(*net.TCPAddr).Port, UriParams: sip.NewParams()}
	u.UriParams.Add("transport", "tls")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() { _, _ = s.Client.Do(ctx, sip.NewRequest(sip.OPTIONS, u)) }()
	select {
	case via := <-vias:
		require.Contains(t, via, fmt.Sprintf("SIP/2.0/TLS %s;", s.TLSAddr))
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the TLS peer")
	}
	cancel()
}
