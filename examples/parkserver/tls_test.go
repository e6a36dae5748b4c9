package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/parktest"
)

// The built server with -tls-listen and mutual TLS: a phone with a
// certificate from the CA parks over TLS, one from another CA is refused;
// SIGHUP puts a new certificate in place for new connections while the
// call parked before goes on, and is retrieved over TLS.
func TestTLSWithClientCAAndCertificateReload(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "callpark test CA")
	first := ca.Issue(t, tlstest.Leaf{})
	certFile, keyFile := tlstest.WriteFiles(t, dir, first)
	srv := startParkServer(t, "-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile,
		"-tls-client-ca", ca.WriteCA(t, dir), "-http", "127.0.0.1:0")
	line := srv.WaitLine(`msg="park server listening"`, 5*time.Second)
	m := regexp.MustCompile(`tls=(\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	tlsAddr := m[1]
	ctx := clusterCtx(t)
	phone := func(user string, cert tls.Certificate) *parktest.Phone {
		return parktest.NewPhone(t, parktest.PhoneOptions{User: user, Transport: "tls",
			TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}})
	}
	serverCert := func() []byte {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{})}})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Raw
	}

	alice := phone("alice", ca.Issue(t, tlstest.Leaf{}))
	parked, err := alice.Call(ctx, "sip:700@"+tlsAddr+";transport=tls", parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	srv.WaitLine("msg=parked", 5*time.Second, "orbit="+parked.Orbit())

	// The operator's view is served over HTTPS with the same certificate,
	// asking no client certificate.
	view := operatorURL(t, srv)
	require.True(t, strings.HasPrefix(view, "https://"), view)
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	res, err := https.Get(view + "api/calls/" + parked.Orbit())
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	https.CloseIdleConnections()
	mallory := phone("mallory", tlstest.NewCA(t, "another CA").Issue(t, tlstest.Leaf{}))
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = mallory.Call(short, "sip:700@"+tlsAddr+";transport=tls", parktest.CallOptions{Mute: true})
	require.Error(t, err, "mutual TLS: another CA's certificate is refused")

	require.Equal(t, first.Certificate[0], serverCert())
	second := ca.Issue(t, tlstest.Leaf{})
	tlstest.WriteFiles(t, dir, second)
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGHUP))
	srv.WaitLine(`msg="configuration reloaded"`, 5*time.Second, "changed=[tls-cert]")
	require.Equal(t, second.Certificate[0], serverCert(), "new connections get the new certificate")

	// A broken pair: refused, the running one stays.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600))
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGHUP))
	srv.WaitLine(`msg="reload refused; the running configuration stays"`, 5*time.Second, "-tls-key")
	require.Equal(t, second.Certificate[0], serverCert())

	bob := phone("bob", ca.Issue(t, tlstest.Leaf{}))
	talk, err := bob.Call(ctx, "sip:"+parked.Orbit()+"@"+tlsAddr+";transport=tls", parktest.CallOptions{Mute: true})
	require.NoError(t, err, "the call parked before the reload is still there")
	require.NoError(t, talk.Hangup(ctx))
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote())
	case <-ctx.Done():
		t.Fatal("the parked call did not end")
	}
}
