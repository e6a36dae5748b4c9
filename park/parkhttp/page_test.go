package parkhttp_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/browser"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/park/parkhttp"
)

// The live page in a real browser (headless Chromium) against the real
// handler, over a lot of fake legs: no SIP. Chromium runs on the real
// clock, outside any synctest bubble, so every wait below polls the page
// for a condition with a generous deadline; the one tight bound is the
// issue's: a park shows within a second.

// pageLotHandler is a lot over ranges whose recalls ring for ten minutes, with
// parkhttp's handler over it; both end with the test.
func pageLotHandler(t *testing.T, opts parkhttp.Options, ranges ...string) (*park.Lot, *parkhttp.Handler) {
	t.Helper()
	var rs []orbit.Range
	for _, s := range ranges {
		r, err := orbit.ParseRange(s)
		require.NoError(t, err)
		rs = append(rs, r)
	}
	alloc, err := orbit.NewMemoryAllocator(rs, orbit.MemoryOptions{})
	require.NoError(t, err)
	lot, err := park.NewLot(park.Config{
		PickupTimeout:  10 * time.Minute,
		RecallRingTime: 10 * time.Minute,
		Orbits:         alloc,
		Dialer:         ringer,
	})
	require.NoError(t, err)
	h := parkhttp.NewHandler(lot, opts)
	t.Cleanup(func() {
		// The browser has gone (cleanups run last first); the streams end
		// with the handler, the calls with the lot.
		require.NoError(t, h.Close())
		// Drop what is still parked rather than ring parkers for minutes.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := lot.Shutdown(ctx); err != nil {
			require.ErrorIs(t, err, context.Canceled)
		}
	})
	return lot, h
}

// servePage serves h on loopback for the test and returns the page's URL.
func servePage(t *testing.T, h http.Handler) string {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// pageLot is pageLotHandler served.
func pageLot(t *testing.T, opts parkhttp.Options, ranges ...string) (*park.Lot, string) {
	t.Helper()
	lot, h := pageLotHandler(t, opts, ranges...)
	return lot, servePage(t, h)
}

func parkAt(t *testing.T, lot *park.Lot, o, party, parker string) (*park.Call, *leg) {
	t.Helper()
	leg := &leg{}
	c, err := lot.Park(context.Background(), park.ParkRequest{Leg: leg, Orbit: orbit.Orbit(o), Party: party, Parker: parker})
	require.NoError(t, err)
	return c, leg
}

// cell is the CSS selector of an orbit's cell in a state.
func cell(o, state string) string {
	return fmt.Sprintf(`[data-orbit=%q][data-state=%q]`, o, state)
}

// js quotes s as a JavaScript string literal.
func js(s string) string { return fmt.Sprintf("%q", s) }

func waitCell(t *testing.T, tab *browser.Tab, timeout time.Duration, o, state string) {
	t.Helper()
	tab.WaitTrue(t, timeout, "orbit "+o+" "+state, `document.querySelector(`+js(cell(o, state))+`) !== null`)
}

func cellText(t *testing.T, tab *browser.Tab, o string) string {
	t.Helper()
	return browser.Eval[string](t, tab, `document.querySelector(`+js(fmt.Sprintf("[data-orbit=%q]", o))+`).textContent`)
}

// waitLog waits for an event log line holding every part.
func waitLog(t *testing.T, tab *browser.Tab, parts ...string) {
	t.Helper()
	cond := `[...document.querySelectorAll("#log li")].some(li => [` + strings.Join(quoteAll(parts), ",") + `].every(p => li.textContent.includes(p)))`
	tab.WaitTrue(t, 5*time.Second, fmt.Sprintf("a log line with %q", parts), cond)
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = js(s)
	}
	return out
}

func openPage(t *testing.T, v browser.Viewport, url string) *browser.Tab {
	t.Helper()
	tab := browser.Start(t, v)
	tab.Do(t, 20*time.Second, chromedp.Navigate(url))
	tab.WaitTrue(t, 10*time.Second, "the event stream", `document.getElementById("status").textContent === "live"`)
	return tab
}

// dialogs answers the page's confirm() boxes: Click blocks while one is
// open, so the test clicks in a goroutine, sees the box here, and answers.
type dialogs struct {
	tab    *browser.Tab
	opened chan string
}

func watchDialogs(t *testing.T, tab *browser.Tab) *dialogs {
	d := &dialogs{tab: tab, opened: make(chan string, 1)}
	ctx, cancel := context.WithCancel(tab.Ctx)
	events := chromedp.Events(ctx, page.JavascriptDialogOpening)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev, err := range events {
			if err != nil {
				return
			}
			d.opened <- ev.Message
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

// clickConfirm clicks sel, expects a confirm() naming want, runs meanwhile
// (with the box open), then accepts or dismisses the box.
func (d *dialogs) clickConfirm(t *testing.T, sel, want string, accept bool, meanwhile func()) {
	t.Helper()
	clicked := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(d.tab.Ctx, 20*time.Second)
		defer cancel()
		clicked <- chromedp.Do(ctx, chromedp.Click(sel))
	}()
	select {
	case msg := <-d.opened:
		require.Contains(t, msg, want)
	case <-time.After(10 * time.Second):
		t.Fatalf("no confirm() after clicking %s", sel)
	}
	if meanwhile != nil {
		meanwhile()
	}
	ctx, cancel := context.WithTimeout(d.tab.Ctx, 10*time.Second)
	defer cancel()
	_, err := chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: accept})
	require.NoError(t, err)
	require.NoError(t, <-clicked)
}

func button(o, text string) string {
	return fmt.Sprintf(`[data-orbit=%q] button[aria-label^=%q]`, o, text)
}

// TestPageFollowsTheLot parks, recalls and retrieves calls through the
// lot itself and watches the page follow: grid, countdown, log.
func TestPageFollowsTheLot(t *testing.T) {
	lot, url := pageLot(t, parkhttp.Options{}, "701-712")
	tab := openPage(t, browser.Desktop, url)
	require.Equal(t, 12, browser.Eval[int](t, tab, `document.querySelectorAll("[data-orbit][data-state=free]").length`))

	parked := time.Now()
	_, leg := parkAt(t, lot, "701", "sip:alice@10.0.0.7", "sip:bob@10.0.0.8")
	waitCell(t, tab, time.Second, "701", "parked")
	t.Logf("the park showed after %v", time.Since(parked).Round(time.Millisecond))
	text := cellText(t, tab, "701")
	require.Contains(t, text, "sip:alice@10.0.0.7")
	require.Contains(t, text, "parked by sip:bob@10.0.0.8")
	require.Regexp(t, `recall in (10:00|9:5\d)`, text, "ten minutes' pickup timeout, counting down")

	left := browser.Eval[int](t, tab, `+document.querySelector('[data-orbit="701"] [data-left]').dataset.left`)
	require.InDelta(t, 600, left, 5)
	tab.WaitTrue(t, 5*time.Second, "the countdown to go down",
		fmt.Sprintf(`+document.querySelector('[data-orbit="701"] [data-left]').dataset.left < %d`, left))
	waitLog(t, tab, "701", "parked sip:alice@10.0.0.7 by sip:bob@10.0.0.8")
	require.Contains(t, browser.Eval[string](t, tab, `document.getElementById("summary").textContent`), "1 parked · 0 ringing · 11 free")

	require.NoError(t, lot.Recall("701"))
	waitCell(t, tab, 5*time.Second, "701", "recalling")
	require.Contains(t, cellText(t, tab, "701"), "ringing sip:bob@10.0.0.8")
	require.NotContains(t, cellText(t, tab, "701"), "recall in", "a ringing call has no countdown")
	waitLog(t, tab, "701", "recall ringing sip:bob@10.0.0.8 (attempt 1)")

	_, err := lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: "701"})
	require.NoError(t, err)
	waitCell(t, tab, 5*time.Second, "701", "free")
	waitLog(t, tab, "701", "retrieved")
	require.Zero(t, leg.hungUp(), "a retrieved call is the retriever's")
	first := browser.Eval[string](t, tab, `document.querySelector("#log li").textContent`)
	require.Contains(t, first, "retrieved", "newest first")

	// 240 more events: the log keeps the last 200.
	for i := range 120 {
		parkAt(t, lot, "709", fmt.Sprintf("sip:caller%d@10.0.0.7", i), "")
		_, err := lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: "709"})
		require.NoError(t, err)
	}
	tab.WaitTrue(t, 10*time.Second, "the last park in the log", `document.querySelector("#log li:nth-child(2)").textContent.includes("parked sip:caller119@")`)
	require.Equal(t, 200, browser.Eval[int](t, tab, `document.querySelectorAll("#log li").length`))
	waitCell(t, tab, time.Second, "709", "free")
}

// TestPageButtons recalls and hangs up calls from the page: the API does
// it, the lot's events bring the page up to date, and an error of the
// API is shown.
func TestPageButtons(t *testing.T) {
	lot, url := pageLot(t, parkhttp.Options{}, "701-712")
	_, carol := parkAt(t, lot, "703", "sip:carol@10.0.0.9", "sip:dave@10.0.0.10")
	tab := openPage(t, browser.Desktop, url)
	d := watchDialogs(t, tab)
	waitCell(t, tab, 5*time.Second, "703", "parked") // from the snapshot

	tab.Do(t, 10*time.Second, chromedp.Click(button("703", "Recall")))
	waitCell(t, tab, 5*time.Second, "703", "recalling")
	info, ok := lot.Lookup("703")
	require.True(t, ok)
	require.Equal(t, park.Recalling, info.State)
	waitLog(t, tab, "703", "recall ringing sip:dave@10.0.0.10 (attempt 1)")

	// Dismissed, the box sends nothing: the call is still there to hang
	// up, with its button, the second time.
	d.clickConfirm(t, button("703", "Hang up"), "703", false, nil)
	d.clickConfirm(t, button("703", "Hang up"), "sip:carol@10.0.0.9", true, func() {
		_, ok := lot.Lookup("703")
		require.True(t, ok, "hang-up dismissed: the call stays")
		require.Zero(t, carol.hungUp())
	})
	waitCell(t, tab, 5*time.Second, "703", "free")
	waitLog(t, tab, "703", "dropped")
	require.Equal(t, 1, carol.hungUp())

	// The box is open while someone else retrieves the call: the DELETE
	// names a park ID no longer there, and the page says so.
	c, _ := parkAt(t, lot, "705", "sip:erin@10.0.0.11", "")
	waitCell(t, tab, 5*time.Second, "705", "parked")
	require.Contains(t, cellText(t, tab, "705"), "parker unknown")
	d.clickConfirm(t, button("705", "Hang up"), "705", true, func() {
		_, err := lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: "705", ParkID: c.ID()})
		require.NoError(t, err)
	})
	tab.WaitTrue(t, 5*time.Second, "the API's error shown",
		`!document.getElementById("notice").hidden && document.getElementById("notice").textContent.startsWith("Hang up 705: ")`)
	t.Logf("notice: %s", browser.Eval[string](t, tab, `document.getElementById("notice").textContent`))
}

// TestPageBigLotAndPrefixedOrbits has 1,100 orbits, so the page shows only
// the occupied ones and a free count per range; orbits with * and # go
// through the API's paths intact.
func TestPageBigLotAndPrefixedOrbits(t *testing.T) {
	lot, url := pageLot(t, parkhttp.Options{}, "*7000-*7099", "#1000-#1999")
	parkAt(t, lot, "*7005", "sip:frank@10.0.0.12", "sip:gina@10.0.0.13")
	tab := openPage(t, browser.Desktop, url)
	waitCell(t, tab, 5*time.Second, "*7005", "parked")
	parkAt(t, lot, "#1500", "sip:hal@10.0.0.14", "sip:ivy@10.0.0.15")
	waitCell(t, tab, time.Second, "#1500", "parked")
	require.Equal(t, 2, browser.Eval[int](t, tab, `document.querySelectorAll("[data-orbit]").length`), "occupied orbits only")
	freeCounts := `[...document.querySelectorAll(".free-count")].map(e => e.textContent).join(",")`
	require.Equal(t, "99 free,999 free,", browser.Eval[string](t, tab, freeCounts))

	tab.Do(t, 10*time.Second, chromedp.Click(button("*7005", "Recall")))
	waitCell(t, tab, 5*time.Second, "*7005", "recalling")

	d := watchDialogs(t, tab)
	d.clickConfirm(t, button("#1500", "Hang up"), "#1500", true, nil)
	tab.WaitTrue(t, 5*time.Second, "#1500 gone", `document.querySelector('[data-orbit="#1500"]') === null`)
	waitLog(t, tab, "#1500", "dropped")
	require.Equal(t, "99 free,1000 free,", browser.Eval[string](t, tab, freeCounts))
	_, ok := lot.Lookup("*7005")
	require.True(t, ok)
}

// TestPageOnAPhone: at 375 px nothing sticks out sideways, and a parked
// call's buttons are on screen and big enough for a finger.
func TestPageOnAPhone(t *testing.T) {
	lot, url := pageLot(t, parkhttp.Options{}, "701-799")
	parkAt(t, lot, "701", "\"A very long display name, as SIP allows\" <sip:someone.with.a.long.name@pbx.example.com>", "sip:bob@10.0.0.8")
	tab := openPage(t, browser.Phone, url)
	waitCell(t, tab, 5*time.Second, "701", "parked")
	require.Equal(t, 375, browser.Eval[int](t, tab, `window.innerWidth`))
	require.LessOrEqual(t, browser.Eval[int](t, tab, `document.documentElement.scrollWidth`), 375, "no sideways scrolling")
	box := browser.Eval[map[string]float64](t, tab, `(() => { const r = document.querySelector('[data-orbit="701"] button').getBoundingClientRect(); return {right: r.right, height: r.height}; })()`)
	require.LessOrEqual(t, box["right"], 375.0)
	require.GreaterOrEqual(t, box["height"], 32.0)
}

// breaker stands between the page and the handler: it cuts the event
// streams, refuses new ones as a network that is down does, and can put
// another handler behind the same address, as a restarted server.
type breaker struct {
	mu      sync.Mutex
	h       http.Handler
	down    bool
	streams map[*http.Request]context.CancelFunc
	lastIDs []string // the Last-Event-ID of each stream asked for
}

func (b *breaker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	h := b.h
	if r.URL.Path != "/api/events" {
		b.mu.Unlock()
		h.ServeHTTP(w, r)
		return
	}
	if b.down {
		b.mu.Unlock()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			if tcp, ok := conn.(*net.TCPConn); ok {
				_ = tcp.SetLinger(0) // a reset, as from a host gone
			}
			conn.Close()
		}
		return
	}
	b.lastIDs = append(b.lastIDs, r.Header.Get("Last-Event-ID"))
	ctx, cancel := context.WithCancel(r.Context())
	b.streams[r] = cancel
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.streams, r)
		b.mu.Unlock()
		cancel()
	}()
	h.ServeHTTP(w, r.WithContext(ctx))
}

// cut ends the streams; with down, new ones are refused until up; with
// next, the handler behind changes.
func (b *breaker) cut(down bool, next http.Handler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
	if next != nil {
		b.h = next
	}
	for _, cancel := range b.streams {
		cancel()
	}
}

func (b *breaker) up() {
	b.mu.Lock()
	b.down = false
	b.mu.Unlock()
}

func (b *breaker) lastID(i int) (string, int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i >= len(b.lastIDs) {
		return "", len(b.lastIDs)
	}
	return b.lastIDs[i], len(b.lastIDs)
}

// TestPageReconnects: the stream breaks and the page says so; back, it
// catches up on what it missed (Last-Event-ID); behind a restarted server
// with other ranges, it starts afresh from a snapshot and the new grid.
func TestPageReconnects(t *testing.T) {
	lot, h := pageLotHandler(t, parkhttp.Options{}, "701-712")
	b := &breaker{h: h, streams: map[*http.Request]context.CancelFunc{}}
	tab := openPage(t, browser.Desktop, servePage(t, b))
	parkAt(t, lot, "701", "sip:alice@10.0.0.7", "sip:bob@10.0.0.8")
	waitCell(t, tab, time.Second, "701", "parked")

	b.cut(true, nil)
	tab.WaitTrue(t, 10*time.Second, "the page to say it lost the stream", `document.getElementById("status").textContent === "reconnecting"`)
	parkAt(t, lot, "702", "sip:carol@10.0.0.9", "sip:dave@10.0.0.10")
	_, err := lot.Retrieve(context.Background(), park.RetrieveRequest{Orbit: "701"})
	require.NoError(t, err)
	b.up()
	tab.WaitTrue(t, 10*time.Second, "live again", `document.getElementById("status").textContent === "live"`)
	waitCell(t, tab, 5*time.Second, "702", "parked")
	waitCell(t, tab, 5*time.Second, "701", "free")
	waitLog(t, tab, "701", "retrieved")
	_, n := b.lastID(0)
	last, _ := b.lastID(n - 1)
	require.NotEmpty(t, last, "EventSource resumes after the last event it had")
	require.Equal(t, 0, browser.Eval[int](t, tab,
		`[...document.querySelectorAll("#log li")].filter(li => li.dataset.kind === "snapshot").length - 1`),
		"caught up from the history, no second snapshot")

	// Restarted: another lot, other ranges, one call of its own.
	lot2, h2 := pageLotHandler(t, parkhttp.Options{}, "801-806")
	parkAt(t, lot2, "803", "sip:erin@10.0.0.11", "sip:frank@10.0.0.12")
	b.cut(false, h2)
	waitCell(t, tab, 10*time.Second, "803", "parked")
	tab.WaitTrue(t, 5*time.Second, "the old grid gone", `document.querySelector('[data-orbit="702"]') === null`)
	require.Equal(t, 6, browser.Eval[int](t, tab, `document.querySelectorAll("[data-orbit]").length`))
	require.Equal(t, "801-806", browser.Eval[string](t, tab, `document.querySelector("[data-range]").dataset.range`))
}

// TestPageWithToken opens the page as /?access_token=... on a handler
// that requires the token: the page sends it on its API requests (as
// Authorization: Bearer) and its event stream (as access_token, since an
// EventSource sets no header). Its script and style sheet, which a
// <script src> or <link href> cannot ask with the token, are served
// without.
func TestPageWithToken(t *testing.T) {
	const token = "s3cret"
	lot, h := pageLotHandler(t, parkhttp.Options{Token: token}, "701-712")
	var mu sync.Mutex
	carried := map[string]string{} // "METHOD path" -> how the token came
	rec := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		how := "none"
		switch {
		case r.Header.Get("Authorization") == "Bearer "+token:
			how = "header"
		case r.URL.Query().Get("access_token") == token:
			how = "query"
		}
		mu.Lock()
		carried[r.Method+" "+r.URL.Path] = how
		mu.Unlock()
		h.ServeHTTP(w, r)
	})
	parkAt(t, lot, "702", "sip:alice@10.0.0.7", "sip:bob@10.0.0.8")
	tab := openPage(t, browser.Desktop, servePage(t, rec)+"?access_token="+token)
	waitCell(t, tab, 5*time.Second, "702", "parked")
	tab.Do(t, 10*time.Second, chromedp.Click(button("702", "Recall")))
	waitCell(t, tab, 5*time.Second, "702", "recalling")

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, "query", carried["GET /"])
	require.Equal(t, "none", carried["GET /ui/app.js"])
	require.Equal(t, "header", carried["GET /api/config"])
	require.Equal(t, "query", carried["GET /api/events"])
	require.Equal(t, "header", carried["POST /api/calls/702/recall"])
}
