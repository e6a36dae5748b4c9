package sipadapter_test

import (
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// svwarFound reads the extensions svwar lists in its result table
// ("| 700 | weird |"), with what it made of each.
var svwarRow = regexp.MustCompile(`(?m)^\|\s*(\S+)\s*\|\s*(\S+)\s*\|$`)

func svwarFound(out string) map[string]string {
	found := map[string]string{}
	for _, m := range svwarRow.FindAllStringSubmatch(out, -1) {
		if m[1] != "Extension" {
			found[m[1]] = m[2]
		}
	}
	return found
}

// condense drops svwar's table and its line per extension found (summary
// says the same in one line) from a scanner's output, for the log.
func condense(out string) string {
	var keep []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "+--") || strings.HasPrefix(line, "+==") ||
			strings.Contains(line, "probably exists but the response is unexpected") {
			continue
		}
		if m := svwarRow.FindStringSubmatch(line); m != nil {
			if _, err := strconv.Atoi(m[1]); err == nil {
				continue // an extension row
			}
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

// summary is the found extensions as ranges of the same verdict, for the
// log: "700-799 weird".
func summary(found map[string]string) string {
	var nums []int
	for ext := range found {
		if n, err := strconv.Atoi(ext); err == nil {
			nums = append(nums, n)
		}
	}
	if len(nums) == 0 {
		return "nothing"
	}
	slices.Sort(nums)
	var parts []string
	for i := 0; i < len(nums); {
		j := i
		for j+1 < len(nums) && nums[j+1] == nums[j]+1 && found[strconv.Itoa(nums[j+1])] == found[strconv.Itoa(nums[i])] {
			j++
		}
		r := strconv.Itoa(nums[i])
		if j > i {
			r += "-" + strconv.Itoa(nums[j])
		}
		parts = append(parts, r+" "+found[strconv.Itoa(nums[i])])
		i = j + 1
	}
	return strings.Join(parts, ", ")
}

// SIP scanners find nothing that stops or leaks the server (issue 6): svmap
// (OPTIONS and INVITE) and svwar (extension enumeration over 690-810, which
// covers the park extension 700, the orbits 701-799 and users that are
// neither, by OPTIONS, REGISTER and INVITE) run against a live server with
// a call parked. Afterwards the server still answers OPTIONS 200 over UDP
// and TCP, the parked call still has its orbit and its music, and at
// Shutdown testServer finds no parked call, dialog, RTP port or
// subscription left behind.
//
// svwar's INVITE carries no SDP, so it parks nothing: the park extension
// and every orbit answer it 488 (no offer), which svwar lists as "weird",
// and a user that is neither gets 404, counted as a failed retrieve from
// 127.0.0.1; past Limits.FailedRetrieves (20) such users get 403, which
// svwar lists as "reqauth". The test's own phone, on the same address,
// therefore retrieves nothing after the scan.
func TestSIPScanners(t *testing.T) {
	svmap := interop.RequireTool(t, "svmap", "sipvicious")
	svwar := interop.RequireTool(t, "svwar", "sipvicious")
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 60*time.Second)
	port := strconv.Itoa(int(srv.Addr().Port()))
	host := srv.Addr().Addr().String()

	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{})
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, 5))

	scan := func(tool string, args ...string) string {
		t.Helper()
		// -b binds the scanner to loopback; its local port starts at
		// 5060 and moves up while taken.
		args = append([]string{"-b", "127.0.0.1", "-p", port}, append(args, host)...)
		runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		start := time.Now()
		out, err := exec.CommandContext(runCtx, tool, args...).CombinedOutput()
		require.NoError(t, err, "%s %s:\n%s", tool, strings.Join(args, " "), out)
		t.Logf("%s %s (%.1f s):\n%s", tool, strings.Join(args, " "), time.Since(start).Seconds(), condense(string(out)))
		return string(out)
	}

	// svmap finds the server by OPTIONS, and by INVITE.
	out := scan(svmap)
	require.Contains(t, out, host+":"+port, "svmap found the server")
	out = scan(svmap, "-m", "INVITE")
	require.Contains(t, out, host+":"+port)

	found := map[string]map[string]string{}
	for _, method := range []string{"OPTIONS", "REGISTER", "INVITE"} {
		found[method] = svwarFound(scan(svwar, "-e", "690-810", "-m", method))
		t.Logf("svwar -m %s found: %s", method, summary(found[method]))
	}
	// OPTIONS is answered 200 for any user, so it tells svwar nothing;
	// REGISTER is refused 405, and svwar gives up at once; INVITE tells
	// the park extension and the orbits (488 for a missing offer) from
	// the rest (404), until the 404s reach Limits.FailedRetrieves: from
	// then on the users that are neither get 403 (svwar: "reqauth").
	require.Empty(t, found["OPTIONS"])
	require.Empty(t, found["REGISTER"])
	require.Contains(t, found["INVITE"], "700", "the INVITE scan reached the server")
	for ext, what := range found["INVITE"] {
		n, err := strconv.Atoi(ext)
		require.NoError(t, err)
		if n < 700 || n > 799 {
			require.Equal(t, "reqauth", what, "svwar found %s, neither the park extension nor an orbit, and not refused 403", ext)
		}
	}

	// The server still answers, on both transports.
	for _, transport := range []string{"udp", "tcp"} {
		phone := parktest.NewPhone(t, parktest.PhoneOptions{User: "after-" + transport, Transport: transport})
		res, err := phone.Options(ctx, srv.ParkURI())
		require.NoError(t, err, transport)
		require.Equal(t, 200, res.StatusCode, transport)
	}
	// The parked call was not disturbed: same orbit, music still playing.
	_, ok := srv.Lot().Lookup(orbit.Orbit(parked.Orbit()))
	require.True(t, ok, "the call is still parked in %s", parked.Orbit())
	require.Equal(t, 1, srv.Lot().Len(), "the scan parked nothing")
	n := parked.Received()
	require.NoError(t, parked.WaitReceived(ctx, n+10), "the parked call still hears music")
	require.NoError(t, parked.Hangup(ctx))
	waitUntil(t, 5*time.Second, "the scan's dialogs are gone", func() bool { return srv.OpenLegs() == 0 && srv.PortsInUse() == 0 })
}
