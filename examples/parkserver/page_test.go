package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/browser"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/parktest"
)

// TestPageFollowsSIPCalls is issue 15's acceptance test with real parts:
// the built parkserver serves its live page (-http), headless Chromium
// shows it, and SIPp parks and retrieves calls over SIP. A park shows on
// the page within a second of the server's log line, a retrieve frees the
// orbit, the countdown runs, and a call nobody takes rings back its parker
// (a parktest phone that rings four seconds before answering) as the page
// shows, beside two other parked calls. A screenshot of that moment goes
// to the test's temporary directory, and to $CALLPARK_SCREENSHOT when set
// (docs/operator-page.png is one).
func TestPageFollowsSIPCalls(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	browser.Find(t)
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	srv := startParkServer(t, "-http", "127.0.0.1:0", "-timeout", "10s", "-recall-ring", "5s")
	url := operatorURL(t, srv)

	tab := browser.Start(t, browser.Desktop)
	tab.Do(t, 20*time.Second, chromedp.Navigate(url))
	tab.WaitTrue(t, 10*time.Second, "the page live", `document.getElementById("status").textContent === "live"`)
	require.Equal(t, 99, browser.Eval[int](t, tab, `document.querySelectorAll("[data-orbit][data-state=free]").length`), "701-799")

	// Park, shown within a second of the server's log line; retrieve.
	a := startSIPp(t, srv.Addr, "park.xml", "700")
	srv.WaitLine("msg=parked", 15*time.Second, "orbit=701")
	logged := time.Now()
	waitOrbit(t, tab, time.Second, "701", "parked")
	t.Logf("orbit 701 parked on the page %v after the server logged it", time.Since(logged).Round(time.Millisecond))
	require.Contains(t, orbitText(t, tab, "701"), "sip:parked@127.0.0.1")
	c := startSIPp(t, srv.Addr, "retrieve.xml", "701")
	c.wait(t, "retrieve")
	a.wait(t, "park")
	waitOrbit(t, tab, 5*time.Second, "701", "free")
	waitLogLine(t, tab, "701", "retrieved")

	// Bob parks a call and answers its recall after four seconds of
	// ringing. Halfway through its pickup timeout two more calls park
	// beside it, with nobody to recall: they are dropped when their time
	// is up.
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	require.NoError(t, bob.SetAnswer(parktest.AnswerPolicy{Delay: 4 * time.Second, Mute: true}))
	b := startSIPp(t, srv.Addr, "park-referred.xml", "700", "-key", "parker", bob.URI())
	recalled := parkedOrbit(t, srv, 2)
	waitOrbit(t, tab, time.Second, recalled, "parked")
	require.Contains(t, orbitText(t, tab, recalled), "parked by "+bob.URI())
	tab.WaitTrue(t, 15*time.Second, "the countdown at 5 s", fmt.Sprintf(
		`+document.querySelector('[data-orbit=%q] [data-left]').dataset.left <= 5`, recalled))

	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	carolCall, err := carol.Call(clusterCtx(t), parkURI(srv), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	besideCarol := parkedOrbit(t, srv, 3)
	waitOrbit(t, tab, time.Second, besideCarol, "parked")
	require.Contains(t, orbitText(t, tab, besideCarol), carol.URI())
	d := startSIPp(t, srv.Addr, "park.xml", "700")
	besideSIPp := parkedOrbit(t, srv, 4)
	waitOrbit(t, tab, time.Second, besideSIPp, "parked")

	srv.WaitLine("msg=recall", 20*time.Second, "target="+bob.URI(), "attempt=1")
	waitOrbit(t, tab, 2*time.Second, recalled, "recalling")
	require.Contains(t, orbitText(t, tab, recalled), "ringing "+bob.URI())
	waitLogLine(t, tab, recalled, "recall ringing "+bob.URI()+" (attempt 1)")
	require.Contains(t, browser.Eval[string](t, tab, `document.getElementById("summary").textContent`), "2 parked · 1 ringing · 96 free")
	screenshot(t, tab)

	select {
	case call := <-bob.Incoming():
		<-call.Done() // the parked caller hangs up a second after the bridge
	case <-time.After(15 * time.Second):
		t.Fatal("bob never got the recall")
	}
	srv.WaitLine("outcome=recalled", 10*time.Second, "orbit="+recalled)
	waitOrbit(t, tab, 5*time.Second, recalled, "free")
	waitLogLine(t, tab, recalled, "recalled")
	b.wait(t, "parked by bob")

	for _, o := range []string{besideCarol, besideSIPp} {
		waitLogLine(t, tab, o, "dropped")
		waitOrbit(t, tab, 5*time.Second, o, "free")
	}
	<-carolCall.Done()
	d.wait(t, "parked beside")
}

func parkedOrbit(t *testing.T, srv *parkServerProcess, n int) string {
	t.Helper()
	var parked []string
	srv.WaitLogged(15*time.Second, fmt.Sprintf("park number %d", n), func(lines []string) bool {
		parked = parked[:0]
		for _, l := range lines {
			if strings.Contains(l, "msg=parked ") {
				parked = append(parked, l)
			}
		}
		return len(parked) >= n
	})
	m := regexp.MustCompile(`orbit=(\S+)`).FindStringSubmatch(parked[n-1])
	require.NotNil(t, m, parked[n-1])
	return m[1]
}

func waitOrbit(t *testing.T, tab *browser.Tab, timeout time.Duration, orbit, state string) {
	t.Helper()
	sel := fmt.Sprintf(`[data-orbit=%q][data-state=%q]`, orbit, state)
	tab.WaitTrue(t, timeout, "orbit "+orbit+" "+state, fmt.Sprintf(`document.querySelector(%q) !== null`, sel))
}

func orbitText(t *testing.T, tab *browser.Tab, orbit string) string {
	t.Helper()
	return browser.Eval[string](t, tab, fmt.Sprintf(`document.querySelector(%q).textContent`, fmt.Sprintf("[data-orbit=%q]", orbit)))
}

// waitLogLine waits for a line of the page's event log about orbit that
// says what.
func waitLogLine(t *testing.T, tab *browser.Tab, orbit, what string) {
	t.Helper()
	tab.WaitTrue(t, 15*time.Second, fmt.Sprintf("a log line %q about %s", what, orbit), fmt.Sprintf(
		`[...document.querySelectorAll("#log li")].some(li => li.querySelector(".orbit").textContent === %q && li.querySelector(".what").textContent.includes(%q))`,
		orbit, what))
}

// screenshot saves the page as a PNG in the test's directory, and at
// $CALLPARK_SCREENSHOT when set.
func screenshot(t *testing.T, tab *browser.Tab) {
	t.Helper()
	png, err := chromedp.Run(tab.Ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	paths := []string{filepath.Join(t.TempDir(), "operator-page.png")}
	if p := os.Getenv("CALLPARK_SCREENSHOT"); p != "" {
		paths = append(paths, p)
	}
	for _, p := range paths {
		require.NoError(t, os.WriteFile(p, png, 0o644))
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
}
