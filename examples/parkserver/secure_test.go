package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/parktest"
)

// Issue 17, point 3: the cluster's store secured. Redis over TLS
// (rediss://) with an ACL user whose password stays off the command line,
// handoffs sealed with the cluster key, and SRTP calls taken over
// encrypted.

// writeFile writes text to a file of its own in t's temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

// secureRedis starts a TLS-only redis-server with ACL user callpark, and
// returns it with the flags a node needs to reach it.
func secureRedis(t *testing.T, opts redistest.Options) (*redistest.Server, []string) {
	t.Helper()
	if opts.TLS == nil {
		opts.TLS = tlstest.NewCA(t, "redis CA")
	}
	opts.User, opts.UserPassword = "callpark", "s3cret-p4ss"
	srv := redistest.StartWith(t, opts)
	url := strings.Replace(srv.URL(), ":s3cret-p4ss@", "@", 1) // the password from its file
	require.NotContains(t, url, "s3cret")
	return srv, []string{"-redis", url, "-redis-ca", srv.CAFile(),
		"-redis-password-file", writeFile(t, "redis.pass", "s3cret-p4ss\n")}
}

// Two nodes over rediss:// with an ACL user and a cluster key: an SRTP
// call parked on one is sealed in Redis; SIGKILL of its node, and the
// other takes it over with an SRTP re-INVITE under a fresh key, the music
// heard encrypted and authenticated; the call is then retrieved there.
func TestClusterOverTLSTakesAnSRTPCallOver(t *testing.T) {
	redisSrv, flags := secureRedis(t, redistest.Options{})
	key := writeFile(t, "cluster.key", strings.Repeat("5a", 32)+"\n")
	flags = append(flags, "-cluster-key", key, "-policy", "lowest")
	nodes := []*parkServerProcess{startSecureNode(t, 0, flags), startSecureNode(t, 1, flags)}
	for _, n := range nodes {
		line := n.WaitLine(`msg="joined the cluster"`, time.Second)
		require.Contains(t, line, "rediss://callpark@127.0.0.1")
		require.Contains(t, line, "sealed=true")
		for _, l := range n.Lines() {
			require.NotContains(t, l, "s3cret", "no password in the log")
		}
	}
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	parked, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{SRTP: media.SuiteAESCM128SHA1_80, KeepWire: true})
	require.NoError(t, err)
	o := parked.Orbit()
	id := parkIDOf(t, nodes[0], o)
	require.NoError(t, parked.WaitReceived(ctx, 10))
	before := parked.Negotiated().SRTP
	require.NotNil(t, before)

	// What Redis holds of the call: its handoff sealed.
	var rec struct{ Handoff []byte }
	require.Eventually(t, func() bool {
		raw, err := redisSrv.Client().HGet(ctx, "{callpark:callpark}:calls", o).Result()
		return err == nil && json.Unmarshal([]byte(raw), &rec) == nil && len(rec.Handoff) > 0
	}, 5*time.Second, 10*time.Millisecond)
	require.NotContains(t, string(rec.Handoff), "call_id", "sealed")
	require.NotContains(t, string(rec.Handoff), alice.Addr().String())

	first := parked.RemoteSDP().Addr
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	<-nodes[0].Exited
	waitTakenOver(ctx, t, parked, first)
	require.Equal(t, "RTP/SAVP", parked.RemoteSDP().Proto)
	after := parked.Negotiated().SRTP
	require.NotNil(t, after, "still SRTP")
	require.NotEqual(t, before.Remote, after.Remote, "a fresh key from the new node")
	bad, wire := parked.RTPStats().Unauthenticated, len(parked.Wire())
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25))
	require.Equal(t, bad, parked.RTPStats().Unauthenticated, "the new node's music authenticates")
	for _, p := range parked.Wire()[wire:] {
		require.Len(t, p, 12+160+10, "SRTP on the wire")
	}
	holderOf(t, nodes[1:], id)

	talk, err := bob.Call(ctx, orbitURI(nodes[1], o), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, talk.WaitReceived(ctx, 25))
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25), "audio both ways")
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
	requireEndedOnce(t, nodes, "retrieved", id)
}

func startSecureNode(t *testing.T, i int, flags []string) *parkServerProcess {
	t.Helper()
	ports := fmt.Sprintf("%d-%d", 15000+i*500, 15499+i*500)
	args := append([]string{"-listen", "127.0.0.1:0", "-rtp-ports", ports,
		"-node", fmt.Sprintf("n%d", i+1), "-lease", clusterLease.String(), "-drain", "2s"}, flags...)
	p := runParkServer(t, args...)
	p.WaitLine(`msg="joined the cluster"`, 5*time.Second)
	return p
}

// A node that cannot reach the secured Redis does not start, and says
// which flag to look at (exit 1); flags that cannot work stop it at once
// (exit 2). No password is ever printed.
func TestSecureRedisRefusals(t *testing.T) {
	_, flags := secureRedis(t, redistest.Options{})
	tlsURL := flags[1]
	withPassword := strings.Replace(tlsURL, "callpark@", "callpark:bad-p4ss@", 1)
	otherCA := tlstest.NewCA(t, "another CA").WriteCA(t, t.TempDir())
	plainURL := strings.Replace(tlsURL, "rediss://", "redis://", 1)
	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"the right password (-check)", append([]string{"-check"}, flags...), 0, nil},
		{"a wrong password", []string{"-redis", tlsURL, "-redis-ca", flags[3], "-redis-password-file", writeFile(t, "p", "wrong\n")},
			1, []string{"WRONGPASS", "check the user and password"}},
		{"a wrong password in the URL", []string{"-redis", withPassword, "-redis-ca", flags[3]},
			1, []string{"WRONGPASS", "callpark:xxxxx@"}},
		{"a password in two places", []string{"-redis", withPassword, "-redis-ca", flags[3], "-redis-password-file", flags[5]},
			2, []string{"-redis-password-file", "one place"}},
		{"a server certificate from another CA", []string{"-redis", tlsURL, "-redis-ca", otherCA, "-redis-password-file", flags[5]},
			1, []string{"x509", "-redis-ca"}},
		{"TLS to a Redis speaking TLS, as plain", []string{"-redis", plainURL, "-redis-password-file", flags[5]},
			1, []string{"-redis redis://callpark@", "rediss://"}},
		{"-redis-ca with redis://", []string{"-redis", plainURL, "-redis-ca", flags[3]}, 2, []string{"-redis-ca", "use rediss://"}},
		{"-redis-cert without -redis-key", []string{"-redis", tlsURL, "-redis-cert", flags[3]}, 2, []string{"-redis-cert, -redis-key: give both"}},
		{"an empty password file", []string{"-redis", tlsURL, "-redis-password-file", writeFile(t, "p", "\n")}, 2, []string{"-redis-password-file", "empty"}},
		{"a short cluster key", append([]string{"-cluster-key", writeFile(t, "k", "abcd\n")}, flags...), 2, []string{"-cluster-key", "64 hex digits"}},
		{"a missing cluster key", append([]string{"-cluster-key", "/nonexistent/cluster.key"}, flags...), 2, []string{"-cluster-key", "no such file"}},
		{"-cluster-key without -redis", []string{"-cluster-key", writeFile(t, "k", strings.Repeat("ab", 32))}, 2, []string{"-cluster-key: set -redis too"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			args := append([]string{"-listen", "127.0.0.1:0", "-rtp-ports", "16000-16099", "-node", "x"}, tt.args...)
			start := time.Now()
			code := run(args, &out, &errOut)
			t.Logf("exit %d after %v: %s", code, time.Since(start).Round(time.Millisecond), strings.TrimSpace(errOut.String()))
			require.Equal(t, tt.code, code, errOut.String())
			for _, w := range tt.want {
				require.Contains(t, errOut.String(), w)
			}
			require.NotContains(t, errOut.String()+out.String(), "s3cret")
			require.NotContains(t, errOut.String()+out.String(), "bad-p4ss")
			if tt.code == 0 {
				require.Contains(t, out.String(), "redis-tls   on (the server's certificate checked against -redis-ca)")
			}
		})
	}
}

// A Redis that wants client certificates (tls-auth-clients yes) takes a
// node with -redis-cert and -redis-key, and refuses one without.
func TestRedisMutualTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "redis CA")
	redisSrv, flags := secureRedis(t, redistest.Options{TLS: ca, ClientCerts: true})
	var out, errOut strings.Builder
	args := append([]string{"-listen", "127.0.0.1:0", "-node", "x"}, flags...)
	require.Equal(t, 1, run(args, &out, &errOut), "no client certificate")
	require.Contains(t, errOut.String(), "-redis")
	t.Log(strings.TrimSpace(errOut.String()))

	certFile, keyFile := tlstest.WriteFiles(t, t.TempDir(), redisSrv.ClientCert())
	out.Reset()
	errOut.Reset()
	args = append(args, "-check", "-redis-cert", certFile, "-redis-key", keyFile)
	require.Equal(t, 0, run(args, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "a client certificate")
}

// A node with another cluster key cannot read the handoff of a call whose
// node died: it logs an error naming -cluster-key, and the call ends lost,
// once, its orbit free again (CLUSTER.md 12), rather than in silence.
func TestClusterKeyMismatchLosesTheCallOnce(t *testing.T) {
	_, flags := secureRedis(t, redistest.Options{})
	flags = append(flags, "-policy", "lowest")
	keyA := writeFile(t, "a.key", strings.Repeat("5a", 32))
	keyB := writeFile(t, "b.key", strings.Repeat("a5", 32))
	nodes := []*parkServerProcess{
		startSecureNode(t, 0, append(flags, "-cluster-key", keyA)),
		startSecureNode(t, 1, append(flags, "-cluster-key", keyB)),
	}
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{SRTP: media.SuiteAESCM128SHA1_80, Mute: true})
	require.NoError(t, err)
	o := parked.Orbit()
	id := parkIDOf(t, nodes[0], o)
	time.Sleep(recordsWritten)
	require.NoError(t, nodes[0].Cmd.Process.Signal(syscall.SIGKILL))
	<-nodes[0].Exited

	line := nodes[1].WaitLine("cannot be read here", clusterLease+5*time.Second)
	require.Contains(t, line, "level=ERROR")
	require.Contains(t, line, "-cluster-key")
	require.Contains(t, line, "park_id="+id)
	requireEndedOnce(t, nodes, "lost", id)
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	again, err := bob.Call(ctx, parkURI(nodes[1]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, o, again.Orbit(), "the orbit is free again")
	require.NoError(t, again.Hangup(ctx))
}
