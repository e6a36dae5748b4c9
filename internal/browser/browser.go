// Package browser runs headless Chromium for callpark's tests of the live
// page (chromedp over the DevTools pipe): a test gets a tab, drives it, and
// the browser is gone when the test ends. A machine without Chromium skips
// those tests naming the Debian package to install (chromium), or fails
// them under CALLPARK_INTEROP=1, as internal/interop does for every other
// outside program.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/callpark/callpark/internal/interop"
)

// Viewport is the screen a tab gets.
type Viewport int

const (
	// Desktop is a 1200x900 window.
	Desktop Viewport = iota
	// Phone is a 375x740 portrait phone screen (the width of an iPhone
	// SE..13 mini), with mobile emulation so the page's viewport meta
	// applies, at a device scale of 2.
	Phone
)

// names are the programs tried, in order: Debian's package, Ubuntu's older
// one, Google's.
var names = []string{"chromium", "chromium-browser", "google-chrome"}

// Find returns the path of a Chromium on PATH, or skips the test naming the
// Debian package chromium (fails it under CALLPARK_INTEROP=1).
func Find(t testing.TB) string {
	t.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return interop.RequireTool(t, names[0], "chromium")
}

// Tab is one tab of a headless Chromium started for a test.
type Tab struct {
	// Ctx runs chromedp actions in the tab (chromedp.Do, chromedp.Run).
	// It ends when the test does; derive timeouts from it per action.
	Ctx context.Context

	mu     sync.Mutex
	errors []string // uncaught exceptions and console errors of the page
}

// Start starts headless Chromium with one tab of the given viewport. When
// the test ends the browser is closed and its process waited for, so no
// goroutine of chromedp outlives the test (goleak stays clean), and the
// test fails if the page threw an uncaught exception or logged a console
// error meanwhile: a broken script must not pass for a slow one.
func Start(t testing.TB, v Viewport) *Tab {
	t.Helper()
	path := Find(t)
	width, height := 1200, 900
	if v == Phone {
		width, height = 375, 740
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", "new"),
		chromedp.WindowSize(width, height),
		// Nothing of the user's: no profile sync, no GPU, no crash reports.
		chromedp.Flag("disable-gpu", true),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox on (CI, containers).
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	tab := &Tab{Ctx: ctx}
	t.Cleanup(func() {
		// A graceful close first, then the allocator's cancel, which kills
		// what is left and waits for the process and its goroutines.
		closeCtx, cancelClose := context.WithTimeout(ctx, 10*time.Second)
		_ = chromedp.Cancel(closeCtx)
		cancelClose()
		cancel()
		cancelAlloc()
		if errs := tab.Errors(); len(errs) > 0 {
			t.Errorf("the page's script failed:\n%s", strings.Join(errs, "\n"))
		}
	})
	// The first action starts the browser: not under a timeout, which
	// would stop the whole browser when it runs out (chromedp.Run).
	if err := chromedp.Listen(ctx, tab.record); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	if v == Phone {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(int64(width), int64(height),
			chromedp.EmulateScale(2), chromedp.EmulatePortrait, chromedp.EmulateMobile, chromedp.EmulateTouch)); err != nil {
			t.Fatalf("emulating a phone: %v", err)
		}
	}
	return tab
}

// record keeps the page's uncaught exceptions and console errors (chromedp
// enables the Runtime domain that reports them). It runs on chromedp's
// reading goroutine: it only appends.
func (tab *Tab) record(ev any) {
	var msg string
	switch ev := ev.(type) {
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg = "exception: " + d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		msg += fmt.Sprintf(" (%s:%d:%d)", d.URL, d.LineNumber+1, d.ColumnNumber+1)
	case *runtime.EventConsoleAPICalled:
		if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeAssert {
			return
		}
		var parts []string
		for _, a := range ev.Args {
			if a.Description != "" {
				parts = append(parts, a.Description)
			} else {
				parts = append(parts, strings.Trim(string(a.Value), `"`))
			}
		}
		msg = "console." + string(ev.Type) + ": " + strings.Join(parts, " ")
	default:
		return
	}
	tab.mu.Lock()
	tab.errors = append(tab.errors, msg)
	tab.mu.Unlock()
}

// Errors returns the uncaught exceptions and console errors of the page so
// far.
func (tab *Tab) Errors() []string {
	tab.mu.Lock()
	defer tab.mu.Unlock()
	return append([]string(nil), tab.errors...)
}

// ClearErrors forgets the errors so far, for a test that provoked them.
func (tab *Tab) ClearErrors() {
	tab.mu.Lock()
	tab.errors = nil
	tab.mu.Unlock()
}

// Do runs actions in the tab, failing the test if one fails or if they
// take more than timeout together.
func (tab *Tab) Do(t testing.TB, timeout time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// WaitTrue waits until the JavaScript expression is true in the page,
// polling it, and fails the test with what after timeout.
func (tab *Tab) WaitTrue(t testing.TB, timeout time.Duration, what, expression string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, timeout)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expression,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("browser: waiting %v for %s (%s): %v", timeout, what, expression, err)
	}
}

// Eval returns the value of a JavaScript expression in the page, failing
// the test if it throws.
func Eval[T any](t testing.TB, tab *Tab, expression string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab.Ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression))
	if err != nil {
		t.Fatalf("browser: evaluating %s: %v", expression, err)
	}
	return v
}
