package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

// operatorURL waits for the operator's view of p and returns its URL.
func operatorURL(t *testing.T, p *parkServerProcess) string {
	t.Helper()
	line := p.WaitLine(`msg="operator's view"`, 10*time.Second)
	m := regexp.MustCompile(`url=(\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	return m[1]
}

// api makes a request of the operator's view and returns the status and
// the body.
func api(t *testing.T, method, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

// metricValue finds "name value" in a scrape.
func metricValue(t *testing.T, scrape, series string) string {
	t.Helper()
	for _, line := range strings.Split(scrape, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	t.Fatalf("no %s in the scrape", series)
	return ""
}

// The built server with -http and a token: the API lists a call parked
// over SIP, hangs it up (the party gets BYE), and /metrics counts both.
func TestOperatorViewOverHTTP(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600))
	srv := startParkServer(t, "-http", "127.0.0.1:0", "-http-token-file", tokenFile)
	base := operatorURL(t, srv)
	ctx := clusterCtx(t)

	status, body := api(t, "GET", base+"api/calls", "")
	require.Equal(t, http.StatusUnauthorized, status, body)
	status, _ = api(t, "GET", base+"api/calls", "wrong")
	require.Equal(t, http.StatusUnauthorized, status)

	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, parkURI(srv), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	status, body = api(t, "GET", base+"api/calls", "t0ken")
	require.Equal(t, http.StatusOK, status, body)
	var calls struct {
		Calls []struct{ Orbit, Party, State string }
	}
	require.NoError(t, json.Unmarshal([]byte(body), &calls))
	require.Len(t, calls.Calls, 1)
	require.Equal(t, parked.Orbit(), calls.Calls[0].Orbit)
	require.Contains(t, calls.Calls[0].Party, "alice")
	require.Equal(t, "parked", calls.Calls[0].State)

	_, scrape := api(t, "GET", base+"metrics", "t0ken")
	require.Equal(t, "1", metricValue(t, scrape, "callpark_parks_total"))
	require.Equal(t, "1", metricValue(t, scrape, "callpark_calls_parked"))
	require.Contains(t, scrape, "go_goroutines", "the runtime's metrics too")
	require.Contains(t, scrape, "process_cpu_seconds_total")

	status, body = api(t, "DELETE", base+"api/calls/"+parked.Orbit(), "t0ken")
	require.Equal(t, http.StatusNoContent, status, body)
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote(), "the operator's hang-up is a BYE to the party")
	case <-ctx.Done():
		t.Fatal("the parked call did not end")
	}
	srv.WaitLine("msg=dropped", 5*time.Second, "orbit="+parked.Orbit())
	_, scrape = api(t, "GET", base+"metrics", "t0ken")
	require.Equal(t, "1", metricValue(t, scrape, `callpark_calls_ended_total{outcome="dropped"}`))
	require.Equal(t, "0", metricValue(t, scrape, "callpark_calls_parked"))
}

// In a cluster, the API of any node lists the whole lot and hangs up a
// call another node holds by passing the request on to it.
func TestOperatorViewAcrossTheCluster(t *testing.T) {
	_, nodes := startCluster(t, 2, "-http", "127.0.0.1:0")
	a, b := operatorURL(t, nodes[0]), operatorURL(t, nodes[1])
	ctx := clusterCtx(t)
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, parkURI(nodes[0]), parktest.CallOptions{Mute: true})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		_, body := api(t, "GET", b+"api/calls/"+parked.Orbit(), "")
		return strings.Contains(body, `"node":"n1"`)
	}, 5*time.Second, 20*time.Millisecond, "node n2 lists n1's call")
	_, body := api(t, "GET", a+"api/calls/"+parked.Orbit(), "")
	require.Contains(t, body, `"node":"n1"`, "n1 names itself")

	status, body := api(t, "DELETE", b+"api/calls/"+parked.Orbit(), "")
	require.Equal(t, http.StatusNoContent, status, body)
	select {
	case <-parked.Done():
		require.True(t, parked.EndedByRemote())
	case <-ctx.Done():
		t.Fatal("the parked call did not end")
	}
	nodes[0].WaitLine("msg=dropped", 5*time.Second, "orbit="+parked.Orbit())
}
