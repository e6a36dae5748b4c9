// Package interop is how callpark's tests find the outside programs they
// run for real (SIPp, baresip, linphone, SIPVicious, redis-server,
// Kamailio, Chromium): a test whose program is missing is skipped with the
// Debian package to install, unless CALLPARK_INTEROP=1 (set by .ci/run,
// which installs them), where a missing program fails the test.
package interop

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// Required reports whether CALLPARK_INTEROP=1 makes a missing program a
// failure.
func Required() bool { return os.Getenv("CALLPARK_INTEROP") == "1" }

// RequireTool returns the path of the program name, or skips the test
// (fails it under CALLPARK_INTEROP=1) naming the Debian package that
// provides it.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found: install the Debian package %s to run this test", name, debianPackage)
	if Required() {
		t.Fatal(msg + " (CALLPARK_INTEROP=1 makes a missing program a failure)")
	}
	t.Skip(msg)
	return ""
}
