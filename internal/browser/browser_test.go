package browser_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/internal/browser"
)

// TestMain checks that a closed browser leaves no goroutine of chromedp
// behind: the packages whose tests use browser run goleak too.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPageRunsInBothViewports(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><meta name="viewport" content="width=device-width">`+
			`<title>t</title><p id="p">hello</p><script>document.getElementById("p").dataset.ran = "yes"</script>`)
	}))
	defer srv.Close()
	for _, v := range []browser.Viewport{browser.Desktop, browser.Phone} {
		tab := browser.Start(t, v)
		tab.Do(t, 20*time.Second, chromedp.Navigate(srv.URL))
		tab.WaitTrue(t, 5*time.Second, "the script ran", `document.getElementById("p").dataset.ran === "yes"`)
		width := browser.Eval[int](t, tab, `window.innerWidth`)
		if v == browser.Phone {
			require.Equal(t, 375, width)
		} else {
			require.Greater(t, width, 1000)
		}
	}
}

// TestScriptErrorsAreKept is the check Start's cleanup relies on: a page
// that throws is noticed.
func TestScriptErrorsAreKept(t *testing.T) {
	tab := browser.Start(t, browser.Desktop)
	tab.Do(t, 20*time.Second, chromedp.Navigate(`data:text/html,<script>setTimeout(() => { throw new Error("boom") }, 0); console.error("bad", 42)</script>`))
	require.Eventually(t, func() bool { return len(tab.Errors()) == 2 }, 5*time.Second, 20*time.Millisecond)
	errs := tab.Errors()
	require.Contains(t, errs[0]+errs[1], "boom")
	require.Contains(t, errs[0]+errs[1], "console.error: bad 42")
	tab.ClearErrors() // wanted here: Start's cleanup must not fail the test for them
}
