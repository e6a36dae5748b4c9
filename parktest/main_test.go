package parktest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// phone a test starts must be gone once its Cleanup has run.
//
// It also quiets sipgo's package-level logger, which no option of a phone
// reaches and which warns "TCP ref went negative" whenever a TCP phone
// closes: hundreds of lines of noise in a test run. Library code leaves that
// global alone; a test binary may choose.
func TestMain(m *testing.M) {
	sip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	goleak.VerifyTestMain(m)
}

// transports are the two a phone speaks; most network tests run on both.
var transports = []string{"udp", "tcp"}

// testTimeout bounds every network wait of a test: generous for a loaded
// CI machine, and no test waits for it unless it fails.
const testTimeout = 10 * time.Second

// testContext returns a context that ends with the test or after
// testTimeout. It also checks, once the test's later cleanups (its phones'
// Close) have run, that the test left no goroutine behind: call it before
// starting phones, so that a leak is blamed on the test that made it.
func testContext(t *testing.T) context.Context {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// phonePair starts a caller and a callee on transport.
func phonePair(t *testing.T, transport string) (alice, bob *Phone) {
	t.Helper()
	alice = NewPhone(t, PhoneOptions{User: "alice", Transport: transport})
	bob = NewPhone(t, PhoneOptions{User: "bob", Transport: transport})
	return alice, bob
}

// connect has alice call bob, who answers by his policy, and returns both
// ends of the call.
func connect(t *testing.T, ctx context.Context, alice, bob *Phone, opts CallOptions) (out, in *Call) {
	t.Helper()
	out, err := alice.Call(ctx, bob.URI(), opts)
	require.NoError(t, err)
	select {
	case in = <-bob.Incoming():
	case <-ctx.Done():
		require.FailNow(t, "bob never got the call", ctx.Err())
	}
	return out, in
}

// sipHeader is sip.NewHeader, short for tables.
func sipHeader(name, value string) sip.Header { return sip.NewHeader(name, value) }

// newTestLogger logs every level as text into w, safe for concurrent use.
func newTestLogger(w io.Writer) *slog.Logger {
	lw, ok := w.(*lockedWriter)
	if !ok {
		lw = &lockedWriter{w: w}
	}
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// String reads what was written, under the writers' lock: a test reads its
// log while sipgo's goroutines may still write to it.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.w)
}
