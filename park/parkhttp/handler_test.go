package parkhttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/parkhttp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// leg is a parked party that only counts its hang-ups.
type leg struct {
	mu      sync.Mutex
	hangups int
}

func (l *leg) Hold(context.Context, park.Music) error { return nil }
func (l *leg) Hangup(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hangups++
	return nil
}
func (l *leg) hungUp() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hangups
}

// ringer is a parker who never answers: a recall rings until the lot
// gives up or the call is taken.
var ringer = park.DialerFunc(func(ctx context.Context, _ park.DialRequest) (park.Answered, error) {
	<-ctx.Done()
	return nil, ctx.Err()
})

func newLot(t *testing.T, ranges string, cluster park.Cluster) *park.Lot {
	t.Helper()
	table, err := orbit.ParseTable(ranges)
	require.NoError(t, err)
	alloc, err := orbit.NewMemoryAllocatorFromTable(table, "", orbit.MemoryOptions{})
	require.NoError(t, err)
	lot, err := park.NewLot(park.Config{Orbits: alloc, Dialer: ringer, Cluster: cluster, FallbackURI: "sip:op@example.com"})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = lot.Shutdown(ctx)
	})
	return lot
}

func parkIn(t *testing.T, lot *park.Lot, o orbit.Orbit, party string) (*park.Call, *leg) {
	t.Helper()
	l := &leg{}
	c, err := lot.Park(t.Context(), park.ParkRequest{Leg: l, Orbit: o, Party: party, Parker: "sip:bob@example.com"})
	require.NoError(t, err)
	return c, l
}

// serve runs a handler for lot on a loopback test server.
func serve(t *testing.T, lot *park.Lot, opts parkhttp.Options) (*parkhttp.Handler, *httptest.Server) {
	t.Helper()
	h := parkhttp.NewHandler(lot, opts)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return h, srv
}

// call makes a request and returns the status and the body read as JSON
// (nil for an empty body).
func call(t *testing.T, method, url string, header ...string) (int, map[string]any, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	if len(body) == 0 {
		return res.StatusCode, nil, res.Header
	}
	var out map[string]any
	require.NoError(t, json.Unmarshal(body, &out), "body: %s", body)
	return res.StatusCode, out, res.Header
}

func TestCallsAndConfig(t *testing.T) {
	lot := newLot(t, "701-709", nil)
	_, srv := serve(t, lot, parkhttp.Options{Node: "park-a", Settings: func() map[string]any {
		return map[string]any{"park_extension": "700"}
	}})
	c, _ := parkIn(t, lot, "703", "sip:alice@example.com")

	status, body, header := call(t, "GET", srv.URL+"/api/calls")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "application/json", header.Get("Content-Type"))
	require.Equal(t, "park-a", body["node"])
	calls := body["calls"].([]any)
	require.Len(t, calls, 1)
	got := calls[0].(map[string]any)
	require.Equal(t, "703", got["orbit"])
	require.Equal(t, c.ID(), got["park_id"])
	require.Equal(t, "sip:alice@example.com", got["party"])
	require.Equal(t, "sip:bob@example.com", got["parker"])
	require.Equal(t, "park-a", got["node"])
	require.Equal(t, "parked", got["state"])
	since, err := time.Parse(time.RFC3339Nano, got["since"].(string))
	require.NoError(t, err)
	recallAt, err := time.Parse(time.RFC3339Nano, got["recall_at"].(string))
	require.NoError(t, err)
	require.Equal(t, park.DefaultPickupTimeout, recallAt.Sub(since).Round(time.Second))

	status, body, _ = call(t, "GET", srv.URL+"/api/calls/703")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, c.ID(), body["park_id"])

	status, body, _ = call(t, "GET", srv.URL+"/api/config")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []any{"701-709"}, body["orbits"])
	require.EqualValues(t, 90, body["pickup_timeout_seconds"])
	require.EqualValues(t, 1, body["max_pickup_attempts"])
	require.Equal(t, "sip:op@example.com", body["fallback"])
	require.Equal(t, "700", body["park_extension"], "the host's settings are merged in")
	require.NotEmpty(t, body["music"])
}

func TestErrors(t *testing.T) {
	lot := newLot(t, "701-709,*7100-*7109", nil)
	_, srv := serve(t, lot, parkhttp.Options{})
	parkIn(t, lot, "*7101", "sip:alice@example.com")
	for _, tc := range []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/api/calls/702", 404, "not_parked"},
		{"GET", "/api/calls/800", 404, "unknown_orbit"},
		{"GET", "/api/calls/abc", 400, "bad_orbit"},
		{"GET", "/api/calls/%2A12", 400, "bad_orbit"},
		{"DELETE", "/api/calls/702", 404, "not_parked"},
		{"DELETE", "/api/calls/0701", 400, "bad_orbit"},
		{"POST", "/api/calls/800/recall", 404, "unknown_orbit"},
		{"POST", "/api/calls/%2A7101/recall?park_id=nope", 409, "stale"},
		{"DELETE", "/api/calls/%2A7101?park_id=nope", 409, "stale"},
		{"DELETE", "/api/calls/%2A7101?park_id=%zz", 400, "bad_request"},
		{"PUT", "/api/calls", 405, "method_not_allowed"},
		{"GET", "/api/calls/701/recall", 405, "method_not_allowed"},
		{"POST", "/api/config", 405, "method_not_allowed"},
		{"GET", "/api/nothing", 404, "not_found"},
		{"POST", "/api/reload", 404, "not_found"},
	} {
		status, body, header := call(t, tc.method, srv.URL+tc.path)
		require.Equal(t, tc.status, status, "%s %s: %v", tc.method, tc.path, body)
		require.Equal(t, tc.code, body["code"], "%s %s", tc.method, tc.path)
		require.NotEmpty(t, body["error"])
		if status == 405 {
			require.NotEmpty(t, header.Get("Allow"))
		}
	}
	_, ok := lot.Lookup("*7101")
	require.True(t, ok, "no refused request touched the call")
}

func TestRecallAndHangUp(t *testing.T) {
	lot := newLot(t, "701-709", nil)
	_, srv := serve(t, lot, parkhttp.Options{})
	c, _ := parkIn(t, lot, "701", "sip:alice@example.com")
	d, dleg := parkIn(t, lot, "702", "sip:carol@example.com")

	status, body, _ := call(t, "POST", srv.URL+"/api/calls/701/recall?park_id="+c.ID())
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, "recalling", body["state"])
	require.Equal(t, park.Recalling, c.Info().State)
	status, _, _ = call(t, "POST", srv.URL+"/api/calls/701/recall")
	require.Equal(t, http.StatusAccepted, status, "already ringing: left ringing")

	status, body, _ = call(t, "DELETE", srv.URL+"/api/calls/702?park_id="+d.ID())
	require.Equal(t, http.StatusNoContent, status)
	require.Nil(t, body)
	require.Equal(t, park.Dropped, d.Outcome())
	require.Equal(t, 1, dleg.hungUp())
	status, body, _ = call(t, "DELETE", srv.URL+"/api/calls/702")
	require.Equal(t, http.StatusNotFound, status)
	require.Equal(t, "not_parked", body["code"])

	status, _, _ = call(t, "DELETE", srv.URL+"/api/calls/701")
	require.Equal(t, http.StatusNoContent, status, "a ringing call can be hung up too")
	require.Equal(t, park.Dropped, c.Outcome())
}

func TestAccess(t *testing.T) {
	lot := newLot(t, "701-709", nil)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "callpark_up 1\n") })

	open := parkhttp.NewHandler(lot, parkhttp.Options{Metrics: metrics})
	defer open.Close()
	for _, path := range []string{"/api/calls", "/", "/metrics"} {
		rec := httptest.NewRecorder()
		open.ServeHTTP(rec, httptest.NewRequest("GET", path, nil)) // from 192.0.2.1
		require.Equal(t, http.StatusForbidden, rec.Code, path)
		require.Contains(t, rec.Body.String(), `"code":"forbidden"`)
		req := httptest.NewRequest("GET", path, nil)
		req.RemoteAddr = "[::1]:4000"
		rec = httptest.NewRecorder()
		open.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code, path)
	}

	_, srv := serve(t, lot, parkhttp.Options{Token: "s3cret", Metrics: metrics})
	status, body, header := call(t, "GET", srv.URL+"/api/calls")
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, "unauthorized", body["code"])
	require.Contains(t, header.Get("WWW-Authenticate"), "Bearer")
	status, _, _ = call(t, "GET", srv.URL+"/api/calls", "Authorization", "Bearer wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = call(t, "GET", srv.URL+"/api/calls", "Authorization", "Basic czNjcmV0")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = call(t, "GET", srv.URL+"/api/calls?access_token=wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = call(t, "GET", srv.URL+"/api/calls", "Authorization", "Bearer s3cret")
	require.Equal(t, http.StatusOK, status)
	status, _, _ = call(t, "GET", srv.URL+"/api/calls?access_token=s3cret")
	require.Equal(t, http.StatusOK, status)

	res, err := http.Get(srv.URL + "/metrics?access_token=s3cret")
	require.NoError(t, err)
	text, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, "callpark_up 1\n", string(text))
	res, err = http.Get(srv.URL + "/?access_token=s3cret")
	require.NoError(t, err)
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Contains(t, string(page), "<!doctype html>")
	res, err = http.Get(srv.URL + "/")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "the page too needs the token")
	res, err = http.Get(srv.URL + "/ui/app.js")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "its script does not: it holds nothing of the lot's")
}

func TestReload(t *testing.T) {
	lot := newLot(t, "701-709", nil)
	fail := true
	_, srv := serve(t, lot, parkhttp.Options{Reload: func(context.Context) (any, error) {
		if fail {
			return nil, errors.New("config.json: -timeout 5s: must be between 10s and 10m0s")
		}
		return map[string]any{"changed": []string{"timeout"}}, nil
	}})
	status, body, _ := call(t, "POST", srv.URL+"/api/reload")
	require.Equal(t, http.StatusUnprocessableEntity, status)
	require.Equal(t, "invalid_config", body["code"])
	require.Contains(t, body["error"], "-timeout 5s")
	fail = false
	status, body, _ = call(t, "POST", srv.URL+"/api/reload")
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []any{"timeout"}, body["changed"])
	status, _, _ = call(t, "GET", srv.URL+"/api/reload")
	require.Equal(t, http.StatusMethodNotAllowed, status)
}

// stream reads a server-sent event stream.
type stream struct {
	res *http.Response
	sc  *bufio.Scanner
}

func openStream(t *testing.T, url, lastID string) *stream {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", url, nil)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	s := &stream{res: res, sc: bufio.NewScanner(res.Body)}
	t.Cleanup(func() { res.Body.Close() })
	return s
}

// next returns the next event's ID and JSON.
func (s *stream) next(t *testing.T) (string, map[string]any) {
	t.Helper()
	var id string
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			var ev map[string]any
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev))
			return id, ev
		}
	}
	t.Fatalf("stream ended: %v", s.sc.Err())
	return "", nil
}

func TestEventStream(t *testing.T) {
	lot := newLot(t, "701-709", nil)
	_, srv := serve(t, lot, parkhttp.Options{Node: "park-a"})
	first, _ := parkIn(t, lot, "701", "sip:alice@example.com")

	s := openStream(t, srv.URL+"/api/events", "")
	snapID, snap := s.next(t)
	require.Equal(t, "snapshot", snap["kind"])
	require.Len(t, snap["calls"], 1, "the call parked before the stream")
	require.NotEmpty(t, snap["now"])

	second, _ := parkIn(t, lot, "702", "sip:carol@example.com")
	id, ev := s.next(t)
	require.Equal(t, "parked", ev["kind"])
	call := ev["call"].(map[string]any)
	require.Equal(t, "702", call["orbit"])
	require.Equal(t, second.ID(), call["park_id"])
	require.Equal(t, "park-a", call["node"])
	require.NotEqual(t, snapID, id)

	require.NoError(t, lot.Recall("701"))
	ringingID, ev := s.next(t)
	require.Equal(t, "ringing", ev["kind"])
	require.Equal(t, "recall", ev["purpose"])
	require.Equal(t, "sip:bob@example.com", ev["target"])
	require.EqualValues(t, 1, ev["attempt"])
	require.Equal(t, "recalling", ev["call"].(map[string]any)["state"])

	// Cut off after the parked event: reconnecting with its ID gives what
	// was missed, in order.
	s.res.Body.Close()
	require.NoError(t, lot.Drop("702"))
	first.Abandon()
	s = openStream(t, srv.URL+"/api/events", id)
	_, ev = s.next(t)
	require.Equal(t, "ringing", ev["kind"], "caught up from the parked event's ID")
	_, ev = s.next(t)
	require.Equal(t, "ended", ev["kind"])
	require.Equal(t, "dropped", ev["outcome"])
	_, ev = s.next(t)
	require.Equal(t, "ended", ev["kind"])
	require.Equal(t, "abandoned", ev["outcome"])
	require.Equal(t, "701", ev["call"].(map[string]any)["orbit"])
	s.res.Body.Close()

	// An ID from another run, or none: a snapshot.
	for _, last := range []string{"0badcafe-3", "garbage", ringingID + "999"} {
		s = openStream(t, srv.URL+"/api/events", last)
		_, ev = s.next(t)
		require.Equal(t, "snapshot", ev["kind"], last)
		require.Empty(t, ev["calls"])
		s.res.Body.Close()
	}
}

// peerCluster is node a's view of node b: b's lot holds the calls, and a
// knows them as another node's.
type peerCluster struct{ b *park.Lot }

func (p peerCluster) Observe(park.Event) {}
func (p peerCluster) Follow(o park.Observer) func() {
	return p.b.Observe(park.ObserverFunc(func(e park.Event) {
		e.Call.Node = "b"
		o.Observe(e)
	}))
}
func (p peerCluster) Calls() []park.CallInfo {
	calls := p.b.Calls()
	for i := range calls {
		calls[i].Node = "b"
	}
	return calls
}
func (p peerCluster) Lookup(o orbit.Orbit) (park.CallInfo, bool) {
	c, ok := p.b.Lookup(o)
	c.Node = "b"
	return c, ok
}
func (p peerCluster) Locate(context.Context, orbit.Orbit) (string, string, error) {
	return "b", "", nil
}
func (p peerCluster) TakeOver(func(context.Context, park.CallInfo) error) func() { return func() {} }
func (p peerCluster) HandOver(context.Context, []park.CallInfo) (map[string]string, error) {
	return nil, nil
}

func TestPassedOnToTheNodeHoldingTheCall(t *testing.T) {
	b := newLot(t, "701-709", nil)
	a := newLot(t, "701-709", peerCluster{b})
	_, bsrv := serve(t, b, parkhttp.Options{Node: "b", Token: "t"})
	peerErr := error(nil)
	_, asrv := serve(t, a, parkhttp.Options{Node: "a", Token: "t", Peer: func(_ context.Context, node string) (string, error) {
		require.Equal(t, "b", node)
		return bsrv.URL, peerErr
	}})
	c, bleg := parkIn(t, b, "705", "sip:alice@example.com")
	auth := []string{"Authorization", "Bearer t"}

	status, body, _ := call(t, "GET", asrv.URL+"/api/calls", auth...)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "b", body["calls"].([]any)[0].(map[string]any)["node"], "node a lists node b's call")

	status, body, _ = call(t, "POST", asrv.URL+"/api/calls/705/recall", auth...)
	require.Equal(t, http.StatusAccepted, status, "%v", body)
	require.Equal(t, park.Recalling, c.Info().State, "node b recalled it")

	status, body, _ = call(t, "DELETE", asrv.URL+"/api/calls/705?park_id=other", auth...)
	require.Equal(t, http.StatusConflict, status, "%v", body)

	peerErr = errors.New("no API address advertised")
	status, body, _ = call(t, "DELETE", asrv.URL+"/api/calls/705", auth...)
	require.Equal(t, http.StatusBadGateway, status)
	require.Equal(t, "node_unreachable", body["code"])
	require.Contains(t, body["error"], "no API address advertised")

	peerErr = nil
	status, _, _ = call(t, "DELETE", asrv.URL+"/api/calls/705?park_id="+c.ID(), auth...)
	require.Equal(t, http.StatusNoContent, status)
	require.Equal(t, park.Dropped, c.Outcome())
	require.Equal(t, 1, bleg.hungUp())
}
