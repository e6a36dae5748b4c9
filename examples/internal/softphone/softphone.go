// Package softphone drives real softphones from the examples' tests:
// baresip over its ctrl_tcp socket and linphone-cli through linphonecsh, set
// up as ../shared/interop/SOFTPHONES.md says (a sine as the microphone, a
// null speaker, auto-answer, everything on 127.0.0.1). parkserver's tests
// point them straight at the park server; pbx's register them with the PBX.
//
// A test that needs a phone the machine lacks is skipped with the Debian
// package to install, unless CALLPARK_INTEROP=1 (set by .ci/run), where a
// missing peer fails the test.
package softphone

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireTool returns the path of a peer's binary, or skips the test (fails
// it under CALLPARK_INTEROP=1) naming the Debian package that provides it.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found: install the Debian package %s to run this interop test", name, debianPackage)
	if os.Getenv("CALLPARK_INTEROP") == "1" {
		t.Fatal(msg + " (CALLPARK_INTEROP=1 makes a missing peer a failure)")
	}
	t.Skip(msg)
	return ""
}

// WaitFor polls cond until it holds or the timeout passes; real phones give
// no event for "enough packets arrived".
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
