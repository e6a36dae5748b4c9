package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/internal/tlstest"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/orbit/redisorbit"
	"github.com/stretchr/testify/require"
)

func TestCheckPrintsTheEffectiveConfiguration(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-check"}, &out, &errOut), errOut.String())
	for _, line := range []string{
		"listen      127.0.0.1:5060 (udp, tcp)",
		"users       100-199 (open)",
		"park-ext    700",
		"orbits      701-799 (99 orbits)",
		"timeout     1m30s",
		"fallback    (none: disconnect after the last recall)",
	} {
		require.Contains(t, out.String(), line+"\n", "the defaults need no flag")
	}

	users := filepath.Join(t.TempDir(), "users.txt")
	require.NoError(t, os.WriteFile(users, []byte("101:a\n102:b\n"), 0o600))
	out.Reset()
	require.Equal(t, 0, run([]string{"-check", "-users", users, "-fallback", "150", "-listen", "127.0.0.1:5070"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "users       2 users from "+users+"\n")
	require.Contains(t, out.String(), "fallback    sip:150@127.0.0.1:5070\n", "an extension as fallback is one of this PBX")
}

func TestBadFlagsExit2WithOneLineNamingTheFlag(t *testing.T) {
	dir := t.TempDir()
	badUsers := filepath.Join(dir, "bad.txt")
	require.NoError(t, os.WriteFile(badUsers, []byte("101 no colon\n"), 0o600))
	clash := filepath.Join(dir, "clash.txt")
	require.NoError(t, os.WriteFile(clash, []byte("701:x\n"), 0o600))
	tests := []struct {
		args []string
		flag string
	}{
		{[]string{"-users", filepath.Join(dir, "missing.txt")}, "-users"},
		{[]string{"-users", badUsers}, "-users"},
		{[]string{"-users", clash}, "701"},
		{[]string{"-ring-timeout", "0s"}, "-ring-timeout"},
		{[]string{"-timeout", "5s"}, "-timeout"},
		{[]string{"-orbits", "150-160"}, "150-160"},
		{[]string{"-listen", "localhost"}, "-listen"},
		{[]string{"stray"}, "stray"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			require.Equal(t, 2, run(append(tt.args, "-check"), &out, &errOut))
			msg := errOut.String()
			require.Equal(t, 1, strings.Count(msg, "\n"), "one line: %q", msg)
			require.Contains(t, msg, tt.flag)
		})
	}
}

// The PBX takes the cluster flags as the park server does: -check reaches
// Redis and compares the cluster's orbit table with -orbits.
func TestCheckComparesTheClusterTable(t *testing.T) {
	srv := redistest.Start(t)
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-check", "-redis", srv.URL()}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "redis       "+srv.URL())
	require.Contains(t, out.String(), "not stored yet")

	r, err := orbit.ParseRange("801-899")
	require.NoError(t, err)
	a, err := redisorbit.New(context.Background(), redisorbit.Config{Client: srv.Client(), Node: "other", Ranges: []orbit.Range{r}})
	require.NoError(t, err)
	defer a.Close(context.Background())
	out.Reset()
	errOut.Reset()
	require.Equal(t, 2, run([]string{"-check", "-redis", srv.URL()}, &out, &errOut))
	require.Contains(t, errOut.String(), `"801-899"`)
	require.Contains(t, errOut.String(), `"701-799"`)
}

// The PBX takes the secured store's flags too: rediss:// with an ACL user,
// its password from a file, the Redis CA, and a cluster key; a wrong
// password is refused naming where to look.
func TestCheckReachesASecuredRedis(t *testing.T) {
	srv := redistest.StartWith(t, redistest.Options{TLS: tlstest.NewCA(t, "redis CA"), User: "pbx", UserPassword: "pbx-p4ss"})
	dir := t.TempDir()
	pass, key := filepath.Join(dir, "pass"), filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(pass, []byte("pbx-p4ss\n"), 0o600))
	require.NoError(t, os.WriteFile(key, []byte(strings.Repeat("ab", 32)), 0o600))
	url := strings.Replace(srv.URL(), ":pbx-p4ss@", "@", 1)
	args := []string{"-check", "-redis", url, "-redis-ca", srv.CAFile(), "-redis-password-file", pass, "-cluster-key", key}
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(args, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "cluster-key on (handoffs sealed with -cluster-key)")
	require.NotContains(t, out.String(), "pbx-p4ss")

	require.NoError(t, os.WriteFile(pass, []byte("wrong\n"), 0o600))
	out.Reset()
	errOut.Reset()
	require.Equal(t, 1, run(args, &out, &errOut))
	require.Contains(t, errOut.String(), "WRONGPASS")
	require.Contains(t, errOut.String(), "-redis-password-file")
}
