package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/proctest"
	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/parktest"
)

// Two built PBX programs on one redis-server, as an admin runs them with
// -redis: a phone registered at the first parks, a phone registered at the
// second retrieves; each PBX challenges its own phones, and the second
// forwards the retrieve to the first, which takes it as admitted.
func TestTwoPBXProcessesShareTheLot(t *testing.T) {
	redisSrv := redistest.Start(t)
	bin := proctest.Build(t, ".")
	start := func(i int) *proctest.Process {
		p := proctest.Start(t, bin, "-listen", "127.0.0.1:0", "-users", "testdata/users.txt",
			"-rtp-ports", fmt.Sprintf("%d-%d", 18000+i*400, 18399+i*400),
			"-redis", redisSrv.URL(), "-node", fmt.Sprintf("pbx%d", i+1), "-lease", "2s", "-drain", "2s")
		line := p.WaitLine(`msg="pbx listening"`, 10*time.Second)
		p.Addr = regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
		return p
	}
	a, b := start(0), start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	register := func(user, password string, at *proctest.Process) *parktest.Phone {
		ph := parktest.NewPhone(t, parktest.PhoneOptions{User: user, Password: password})
		_, err := ph.Register(ctx, "sip:"+at.Addr, time.Hour)
		require.NoError(t, err)
		return ph
	}
	alice := register("101", "battery:staple", a)
	bob := register("100", "correct-horse", b)

	parked, err := alice.Call(ctx, "sip:700@"+a.Addr, parktest.CallOptions{})
	require.NoError(t, err)
	o := parked.Orbit()
	require.NotEmpty(t, o)
	var talk *parktest.Call
	require.Eventually(t, func() bool {
		talk, err = bob.Call(ctx, "sip:"+o+"@"+b.Addr, parktest.CallOptions{})
		return err == nil
	}, 5*time.Second, 100*time.Millisecond, "bob retrieves at the other PBX: %v", err)
	require.Contains(t, talk.Header("Contact"), a.Addr, "the dialog is with the PBX holding the call")
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25))
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
}

// The built PBX with -config: SIGHUP re-reads the file under a parked
// call, which stays; a new park gets the new range and timeout, and a new
// range holding an extension is refused.
func TestPBXReloadsItsConfigFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pbx.conf")
	require.NoError(t, os.WriteFile(path, []byte("orbits 701-709\n"), 0o600))
	p := proctest.Start(t, proctest.Build(t, "."), "-listen", "127.0.0.1:0", "-rtp-ports", "18800-18999", "-config", path)
	line := p.WaitLine(`msg="pbx listening"`, 10*time.Second)
	p.Addr = regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "101"})
	_, err := alice.Register(ctx, "sip:"+p.Addr, time.Hour)
	require.NoError(t, err)
	first, err := alice.Call(ctx, "sip:700@"+p.Addr, parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "701", first.Orbit())

	require.NoError(t, os.WriteFile(path, []byte("orbits 150-159\n"), 0o600))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGHUP))
	p.WaitLine(`msg="reload refused; the running configuration stays"`, 5*time.Second, "holds the extension 150")

	require.NoError(t, os.WriteFile(path, []byte("orbits 801-809\ntimeout 15s\n"), 0o600))
	require.NoError(t, p.Cmd.Process.Signal(syscall.SIGHUP))
	p.WaitLine(`msg="configuration reloaded"`, 5*time.Second, `changed="[orbits timeout]"`)
	second, err := alice.Call(ctx, "sip:700@"+p.Addr, parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "801", second.Orbit())
	select {
	case <-first.Done():
		t.Fatal("the call parked before the reload ended")
	default:
	}
	require.NoError(t, first.Hangup(ctx))
	require.NoError(t, second.Hangup(ctx))
}

// The built PBX with -tls-listen: a phone registered over TLS is called
// over TLS by a phone on UDP, then parks that call by dialling the park
// extension, and the UDP phone retrieves it.
func TestPBXOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "callpark test CA")
	certFile, keyFile := tlstest.WriteFiles(t, dir, ca.Issue(t, tlstest.Leaf{}))
	p := proctest.Start(t, proctest.Build(t, "."), "-listen", "127.0.0.1:0", "-rtp-ports", "18600-18799",
		"-tls-listen", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile, "-tls-client-ca", ca.WriteCA(t, dir))
	line := p.WaitLine(`msg="pbx listening"`, 10*time.Second)
	p.Addr = regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
	tlsAddr := regexp.MustCompile(`tls=(\S+)`).FindStringSubmatch(line)[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	secure := parktest.NewPhone(t, parktest.PhoneOptions{User: "101", Transport: "tls",
		TLS: &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, tlstest.Leaf{})}, RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}})
	_, err := secure.Register(ctx, "sip:"+tlsAddr+";transport=tls", time.Hour)
	require.NoError(t, err)
	plain := parktest.NewPhone(t, parktest.PhoneOptions{User: "102"})
	_, err = plain.Register(ctx, "sip:"+p.Addr, time.Hour)
	require.NoError(t, err)

	parked, err := secure.Call(ctx, "sip:700@"+tlsAddr+";transport=tls", parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 10), "music over a TLS-signalled call")
	talk, err := plain.Call(ctx, "sip:"+parked.Orbit()+"@"+p.Addr, parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
	require.NoError(t, talk.Hangup(ctx))
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote(), "the BYE reached the TLS phone")
	case <-ctx.Done():
		t.Fatal("the parked call did not end")
	}

	ring := make(chan *parktest.Call, 1)
	go func() {
		select {
		case c := <-secure.Incoming():
			ring <- c
		case <-ctx.Done():
		}
	}()
	call, err := plain.Call(ctx, "sip:101@"+p.Addr, parktest.CallOptions{Mute: true})
	require.NoError(t, err, "a call to the TLS phone's extension reaches it over TLS")
	select {
	case c := <-ring:
		require.Contains(t, c.Header("Via"), "TLS")
	case <-ctx.Done():
		t.Fatal("the TLS phone never rang")
	}
	require.NoError(t, call.Hangup(ctx))
}
