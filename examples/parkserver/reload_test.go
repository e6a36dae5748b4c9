package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
}

func TestConfigFileUnderTheFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "park.conf")
	writeConfig(t, path, "# the lot\norbits = 801-849\ntimeout 20s\nattempts=2\nfallback sip:op@127.0.0.1\n")
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run([]string{"-config", path, "-timeout", "30s", "-check"}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "orbits      801-849 (49 orbits)")
	require.Contains(t, out.String(), "timeout     30s", "the command line wins")
	require.Contains(t, out.String(), "attempts    2")
	require.Contains(t, out.String(), "fallback    sip:op@127.0.0.1")

	for text, want := range map[string]string{
		"timeout 20s\nwhatever 1\n":   "park.conf:2: no setting \"whatever\"",
		"attempts 20\n":               "-attempts 20: must be between 1 and 10",
		"timeout soon\n":              "park.conf:1: timeout",
		"timeout 20s\ntimeout 30s\n":  "park.conf:2: timeout is set again (first on line 1)",
		"config other.conf\n":         "park.conf:1: config is for the command line only",
		"orbits 701-799,750-760\n":    "-orbits",
		"listen 127.0.0.1:5060:99\n":  "-listen",
		"# nothing\n\nmoh /nowhere\n": "-moh",
	} {
		writeConfig(t, path, text)
		out.Reset()
		errOut.Reset()
		require.Equal(t, 2, run([]string{"-config", path, "-check"}, &out, &errOut), text)
		require.Contains(t, errOut.String(), want, text)
		require.Equal(t, 1, bytes.Count(errOut.Bytes(), []byte("\n")), "one line: %s", errOut.String())
	}
	errOut.Reset()
	require.Equal(t, 2, run([]string{"-config", filepath.Join(dir, "missing.conf")}, &out, &errOut))
	require.Contains(t, errOut.String(), "no such file")
}

// The acceptance test of the reload: 50 calls parked and 10 BLF watchers,
// the file changed (orbits, timeout, fallback) and re-read by SIGHUP, then a
// broken file refused by POST /api/reload. No call ends, no watcher is
// dropped; new parks follow the new file; a call in the removed range is
// still retrieved, and its watcher sees it go.
func TestReloadUnder50ParkedCallsAnd10Watchers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "park.conf")
	writeConfig(t, path, "orbits 701-799\ntimeout 60s\n")
	srv := startParkServer(t, "-config", path, "-http", "127.0.0.1:0")
	base := operatorURL(t, srv)
	ctx := clusterCtx(t)

	watcher := parktest.NewPhone(t, parktest.PhoneOptions{User: "watcher"})
	var watches []*parktest.Subscription
	for i := range 10 {
		sub, err := watcher.Subscribe(ctx, orbitURI(srv, fmt.Sprint(701+i)), "dialog", time.Hour)
		require.NoError(t, err)
		watches = append(watches, sub)
	}
	caller := parktest.NewPhone(t, parktest.PhoneOptions{User: "caller"})
	var parked []*parktest.Call
	for range 50 {
		c, err := caller.Call(ctx, parkURI(srv), parktest.CallOptions{Mute: true})
		require.NoError(t, err)
		parked = append(parked, c)
	}

	// Orbits 701-749 leave the ranges, 801-899 join; a shorter timeout;
	// a fallback.
	writeConfig(t, path, "orbits 750-799,801-899\ntimeout 20s\nfallback sip:op@127.0.0.1:9\ndrain 5s\n")
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGHUP))
	line := srv.WaitLine(`msg="configuration reloaded"`, 5*time.Second)
	require.Contains(t, line, "changed=\"[fallback orbits timeout]\"")
	require.Contains(t, line, "restart_needed=[drain]")

	var cfg map[string]any
	_, body := api(t, "GET", base+"api/config", "")
	require.NoError(t, json.Unmarshal([]byte(body), &cfg))
	require.Equal(t, []any{"750-799", "801-899"}, cfg["orbits"])
	require.EqualValues(t, 20, cfg["pickup_timeout_seconds"])
	require.Equal(t, "sip:op@127.0.0.1:9", cfg["fallback"])

	// A broken file: refused, in the response and in one log line; the
	// running configuration stays.
	writeConfig(t, path, "orbits 750-799,801-899\ntimeout 2s\n")
	res, err := http.Post(base+"api/reload", "", nil)
	require.NoError(t, err)
	var refusal struct{ Error, Code string }
	require.NoError(t, json.NewDecoder(res.Body).Decode(&refusal))
	res.Body.Close()
	require.Equal(t, http.StatusUnprocessableEntity, res.StatusCode)
	require.Equal(t, "invalid_config", refusal.Code)
	require.Contains(t, refusal.Error, "-timeout 2s: must be between 10s and 10m0s")
	srv.WaitLine(`msg="reload refused; the running configuration stays"`, 5*time.Second, "-timeout 2s")
	_, body = api(t, "GET", base+"api/config", "")
	require.Contains(t, body, `"pickup_timeout_seconds":20`)

	// Nothing was lost.
	_, body = api(t, "GET", base+"api/calls", "")
	var calls struct{ Calls []struct{ Orbit string } }
	require.NoError(t, json.Unmarshal([]byte(body), &calls))
	require.Len(t, calls.Calls, 50, "every parked call is still parked")
	for _, c := range parked {
		select {
		case <-c.Done():
			t.Fatalf("the call in %s ended", c.Orbit())
		default:
		}
	}
	for i, w := range watches {
		select {
		case <-w.Done():
			t.Fatalf("the watch of %d ended", 701+i)
		default:
		}
	}

	next, err := caller.Call(ctx, parkURI(srv), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Equal(t, "801", next.Orbit(), "701-749 are gone, 750-799 full: the new range")
	retriever := parktest.NewPhone(t, parktest.PhoneOptions{User: "retriever"})
	talk, err := retriever.Call(ctx, orbitURI(srv, "701"), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "a call in a removed range is retrieved")
	srv.WaitLine("msg=retrieved", 5*time.Second, "orbit=701") // bridged: a BYE before then would end both at once
	require.NoError(t, talk.Hangup(ctx))
	// The watcher of 701 heard the park, and now hears the call leave.
	var last parktest.Notify
	require.Eventually(t, func() bool {
		for {
			select {
			case last = <-watches[0].Notifies():
			default:
				info, err := parktest.ParseDialogInfo(last.Body)
				return err == nil && len(info.Dialogs) == 1 && info.Dialogs[0].State == "terminated"
			}
		}
	}, 5*time.Second, 20*time.Millisecond)
	_, err = retriever.Call(ctx, orbitURI(srv, "702"), parktest.CallOptions{Mute: true})
	require.NoError(t, err, "702's call too")
}
