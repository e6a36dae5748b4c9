// Package softphone drives real softphones from the examples' tests:
// baresip over its ctrl_tcp socket and linphone-cli through linphonecsh, set
// up as ../shared/interop/SOFTPHONES.md says (a sine as the microphone, a
// null speaker, auto-answer, everything on 127.0.0.1). parkserver's tests
// point them straight at the park server; pbx's register them with the PBX.
//
// A test that needs a phone the machine lacks is skipped with the Debian
// package to install, unless CALLPARK_INTEROP=1 (set by .ci/run), where a
// missing peer fails the test (interop.RequireTool).
package softphone

import (
	"testing"
	"time"
)

// WaitFor polls cond until it holds or the timeout passes; real phones give
// no event for "enough packets arrived".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	WaitForOrSay(t, timeout, what, cond, nil)
}

// WaitForOrSay is WaitFor whose failure adds what say returns then (what
// the phone has done so far, say): a report may keep only the first lines
// of a long test output, where the failure is.
func WaitForOrSay(t testing.TB, timeout time.Duration, what string, cond func() bool, say func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			if say != nil {
				t.Fatalf("timed out waiting until %s: %s", what, say())
			}
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
