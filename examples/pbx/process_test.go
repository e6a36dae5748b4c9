package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/proctest"
	"github.com/callpark/callpark/internal/redistest"
	"github.com/callpark/callpark/parktest"
)

// Two built PBX programs on one redis-server, as an admin runs them with
// -redis: a phone registered at the first parks, a phone registered at the
// second retrieves; each PBX challenges its own phones, and the second
// forwards the retrieve to the first, which takes it as admitted.
func TestTwoPBXProcessesShareTheLot(t *testing.T) {
	redisSrv := redistest.Start(t)
	bin := proctest.Build(t, ".")
	start := func(i int) *proctest.Process {
		p := proctest.Start(t, bin, "-listen", "127.0.0.1:0", "-users", "testdata/users.txt",
			"-rtp-ports", fmt.Sprintf("%d-%d", 18000+i*400, 18399+i*400),
			"-redis", redisSrv.URL(), "-node", fmt.Sprintf("pbx%d", i+1), "-lease", "2s", "-drain", "2s")
		line := p.WaitLine(`msg="pbx listening"`, 10*time.Second)
		p.Addr = regexp.MustCompile(`addr=(\S+)`).FindStringSubmatch(line)[1]
		return p
	}
	a, b := start(0), start(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	register := func(user, password string, at *proctest.Process) *parktest.Phone {
		ph := parktest.NewPhone(t, parktest.PhoneOptions{User: user, Password: password})
		_, err := ph.Register(ctx, "sip:"+at.Addr, time.Hour)
		require.NoError(t, err)
		return ph
	}
	alice := register("101", "battery:staple", a)
	bob := register("100", "correct-horse", b)

	parked, err := alice.Call(ctx, "sip:700@"+a.Addr, parktest.CallOptions{})
	require.NoError(t, err)
	o := parked.Orbit()
	require.NotEmpty(t, o)
	var talk *parktest.Call
	require.Eventually(t, func() bool {
		talk, err = bob.Call(ctx, "sip:"+o+"@"+b.Addr, parktest.CallOptions{})
		return err == nil
	}, 5*time.Second, 100*time.Millisecond, "bob retrieves at the other PBX: %v", err)
	require.Contains(t, talk.Header("Contact"), a.Addr, "the dialog is with the PBX holding the call")
	require.NoError(t, talk.WaitReceived(ctx, talk.Received()+25))
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+25))
	require.NoError(t, talk.Hangup(ctx))
	<-parked.Done()
}
