package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/callpark/callpark/examples/internal/proctest"
	"github.com/callpark/callpark/internal/interop"
	"github.com/stretchr/testify/require"
)

// parkServerProcess is the built parkserver, running, with its log lines
// collected so a test can wait for one.
type parkServerProcess = proctest.Process

// startParkServer runs the built parkserver on a free loopback port.
func startParkServer(t *testing.T, args ...string) *parkServerProcess {
	t.Helper()
	return runParkServer(t, append([]string{"-listen", "127.0.0.1:0", "-rtp-ports", "17000-17999"}, args...)...)
}

// runParkServer runs the built parkserver with exactly args and waits until
// it listens.
func runParkServer(t *testing.T, args ...string) *parkServerProcess {
	t.Helper()
	p := proctest.Start(t, proctest.Build(t, "."), args...)
	line := p.WaitLine(`msg="park server listening"`, 10*time.Second)
	m := regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)
	require.NotNil(t, m, line)
	p.Addr = m[1]
	return p
}

// sipp runs one SIPp scenario from testdata/sipp to completion and returns
// what it logged with <log>.
type sippRun struct {
	done chan struct{}
	err  error
	out  []byte
	log  string
}

func startSIPp(t *testing.T, server, scenario, service string, extra ...string) *sippRun {
	t.Helper()
	return startSIPpAt(t, server, scenario, service, proctest.FreeUDPPort(t), extra...)
}

// startSIPpAt runs a scenario with SIPp's SIP port fixed (a UAS that the
// server must reach), one call unless extra says -m.
func startSIPpAt(t *testing.T, server, scenario, service string, port int, extra ...string) *sippRun {
	t.Helper()
	bin := interop.RequireTool(t, "sipp", "sip-tester")
	dir := t.TempDir()
	logFile := filepath.Join(dir, "log")
	args := []string{server,
		"-sf", filepath.Join("testdata", "sipp", scenario),
		"-s", service,
		"-i", "127.0.0.1", "-p", fmt.Sprint(port), "-mp", fmt.Sprint(proctest.FreeUDPPort(t)),
		"-nostdin", "-timeout", "40s", "-timeout_error",
		"-trace_err", "-error_file", filepath.Join(dir, "errors"),
		"-trace_logs", "-log_file", logFile,
	}
	if !slices.Contains(extra, "-m") {
		args = append(args, "-m", "1")
	}
	r := &sippRun{done: make(chan struct{})}
	cmd := exec.Command(bin, append(args, extra...)...)
	cmd.Dir = "."
	go func() {
		defer close(r.done)
		r.out, r.err = cmd.CombinedOutput()
		logged, _ := os.ReadFile(logFile)
		errs, _ := os.ReadFile(filepath.Join(dir, "errors"))
		r.log = string(logged)
		if r.err != nil {
			r.out = append(r.out, errs...)
		}
	}()
	return r
}

func (r *sippRun) wait(t *testing.T, name string) string {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("SIPp %s did not finish", name)
	}
	require.NoError(t, r.err, "SIPp %s failed:\n%s", name, r.out)
	return r.log
}

// TestSIPpParkRetrieveRepark drives the built parkserver with SIPp: A parks
// (orbit 701), B retrieves 701 and re-parks A by REFER to the park extension
// (orbit 702, by the lru policy), C retrieves 702 and hangs up, and A gets
// that BYE. Each step is checked on the wire by the scenarios and in the
// server's log.
func TestSIPpParkRetrieveRepark(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)

	a := startSIPp(t, srv.Addr, "park.xml", "700")
	srv.WaitLine("msg=parked", 15*time.Second, "orbit=701")

	b := startSIPp(t, srv.Addr, "repark.xml", "701", "-key", "parkext", "700")
	srv.WaitLine("msg=re-parked", 15*time.Second, "orbit=702")
	require.Contains(t, b.wait(t, "repark"), "reparked-at 702")

	c := startSIPp(t, srv.Addr, "retrieve.xml", "702")
	c.wait(t, "retrieve")
	require.Contains(t, a.wait(t, "park"), "parked-at 701")
	srv.WaitLine("msg=retrieved", 5*time.Second, "orbit=702")
}

// TestSIPpEmptyOrbitAndUnknownUser checks the refusals a scanner or a
// mistyped number gets: 404 for an empty orbit and for a user that is
// neither the park extension nor an orbit.
func TestSIPpEmptyOrbitAndUnknownUser(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	for _, user := range []string{"755", "600"} {
		r := startSIPp(t, srv.Addr, "notfound.xml", user)
		r.wait(t, "refused "+user)
	}
}

// TestSIPpShutdownDropsParkedCall parks a call with nowhere to recall it
// (baresip-style: no Referred-By, no fallback) and stops the server: the
// parked caller gets a BYE and the process exits.
func TestSIPpShutdownDropsParkedCall(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t)
	a := startSIPp(t, srv.Addr, "park.xml", "700")
	srv.WaitLine("msg=parked", 15*time.Second)
	require.NoError(t, srv.Cmd.Process.Signal(os.Interrupt))
	srv.WaitLine("outcome=dropped", 15*time.Second)
	a.wait(t, "park")
	select {
	case <-srv.Exited:
		require.NoError(t, srv.Err, "a clean shutdown exits 0")
	case <-time.After(15 * time.Second):
		t.Fatal("parkserver did not exit after SIGINT")
	}
}

// TestSIPpRecallToParker is flow 5 with real peers and the Referred-By path
// (linphone's way): the parked INVITE names the parker, who gets "Parked at
// 701", then the recall after the pickup timeout, answers it, and is
// bridged to the parked caller until that one hangs up.
func TestSIPpRecallToParker(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	if testing.Short() {
		t.Skip("waits out Lync Server 2013's 10 s minimum pickup timeout")
	}
	srv := startParkServer(t, "-timeout", "10s", "-recall-ring", "5s")
	parkerPort := proctest.FreeUDPPort(t)
	parkerURI := fmt.Sprintf("sip:parker@127.0.0.1:%d", parkerPort)
	parker := startSIPpAt(t, srv.Addr, "parker.xml", "parker", parkerPort, "-m", "2")
	parked := startSIPp(t, srv.Addr, "park-referred.xml", "700", "-key", "parker", parkerURI)
	srv.WaitLine("msg=parked", 15*time.Second, "parker="+parkerURI)
	srv.WaitLine("msg=recall", 20*time.Second, "target="+parkerURI, "attempt=1")
	srv.WaitLine("outcome=recalled", 20*time.Second)
	parked.wait(t, "parked caller")
	log := parker.wait(t, "parker")
	require.Contains(t, log, "notice Parked at 701")
	require.Contains(t, log, "recalled")
}

// TestSIPpLateOffer parks by delayed offer with -late-offer: SIPp's INVITE
// has no SDP, the 200 carries the server's sendonly offer and the orbit,
// SIPp's ACK answers; a retrieve then reaches the call, and its hang-up is
// passed on to the parked SIPp.
func TestSIPpLateOffer(t *testing.T) {
	interop.RequireTool(t, "sipp", "sip-tester")
	srv := startParkServer(t, "-late-offer")
	a := startSIPp(t, srv.Addr, "park-late.xml", "700")
	srv.WaitLine("msg=parked", 15*time.Second, "orbit=701")
	c := startSIPp(t, srv.Addr, "retrieve.xml", "701")
	c.wait(t, "retrieve")
	require.Contains(t, a.wait(t, "park by delayed offer"), "parked-at 701 offered m=audio")
	srv.WaitLine("msg=retrieved", 5*time.Second, "orbit=701")
}
