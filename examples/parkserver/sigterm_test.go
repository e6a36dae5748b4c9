package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/callpark/callpark/parktest"
)

// TestSIGTERMWith100ParkedCalls is flow 11 under load, on the built
// program: 100 calls are parked, each with a known fate at shutdown (its
// parker answers the recall, lets it ring, refuses it, or there is no
// parker), then the process gets SIGTERM. New parks get 503 meanwhile;
// every call is recalled once or dropped, each call ends exactly once in
// the log. The answered recalls are connected calls: the process drains,
// waiting for them, and exits 0 as soon as their parties have hung up.
func TestSIGTERMWith100ParkedCalls(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*connectionPool).startIdleCheck"))

	const ring = 2 * time.Second
	// Ports below Linux's ephemeral range (32768-60999), where the phones'
	// sockets land; 200 orbits for 100 calls.
	srv := startParkServer(t, "-rtp-ports", "14000-14999", "-orbits", "1000-1199", "-recall-ring", ring.String())

	// Phones are closed before goleak looks, which t.Cleanup would do too
	// late; each phone's Close ends its own goroutines.
	var phones []*parktest.Phone
	defer func() {
		for _, p := range phones {
			_ = p.Close()
		}
	}()
	phone := func(opts parktest.PhoneOptions) *parktest.Phone {
		p, err := parktest.StartPhone(opts)
		require.NoError(t, err)
		phones = append(phones, p)
		return p
	}

	// The parkers, by what they do with a recall.
	type fate int
	const (
		answers  fate = iota // recalled: bridged, then BYE at exit
		rings                // CANCEL after the ring, then dropped
		refuses              // 486, then dropped
		noParker             // dropped at once
	)
	parkers := map[fate][]*parktest.Phone{}
	for i := range 4 {
		parkers[answers] = append(parkers[answers], phone(parktest.PhoneOptions{User: fmt.Sprintf("answers%d", i)}))
	}
	for i := range 3 {
		p := phone(parktest.PhoneOptions{User: fmt.Sprintf("rings%d", i)})
		require.NoError(t, p.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
		parkers[rings] = append(parkers[rings], p)
	}
	for i := range 2 {
		p := phone(parktest.PhoneOptions{User: fmt.Sprintf("refuses%d", i)})
		require.NoError(t, p.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 486}))
		parkers[refuses] = append(parkers[refuses], p)
	}
	// Calls i%10 = 0-3 go to a parker that answers, 4-6 to one that lets
	// it ring, 7-8 to one that refuses, 9 have no parker: 40, 30, 20, 10.
	fateOf := func(i int) (fate, *parktest.Phone) {
		switch k := i % 10; {
		case k < 4:
			return answers, parkers[answers][k]
		case k < 7:
			return rings, parkers[rings][k-4]
		case k < 9:
			return refuses, parkers[refuses][k-7]
		}
		return noParker, nil
	}

	// Ten phones park ten calls each; two of them over TCP.
	var callers []*parktest.Phone
	for i := range 10 {
		transport := "udp"
		if i < 2 {
			transport = "tcp"
		}
		callers = append(callers, phone(parktest.PhoneOptions{User: fmt.Sprintf("caller%d", i), Transport: transport}))
	}
	const calls = 100
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	parked := make([]*parktest.Call, calls)
	errs := make([]error, calls)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range calls {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			var opts parktest.CallOptions
			opts.Mute = true
			if _, p := fateOf(i); p != nil {
				opts.Headers = []sip.Header{sip.NewHeader("Referred-By", "<"+p.URI()+">")}
			}
			parked[i], errs[i] = callers[i%len(callers)].Call(ctx, "sip:700@"+srv.Addr, opts)
		})
	}
	wg.Wait()
	orbitFate := map[string]fate{}
	for i, err := range errs {
		require.NoError(t, err, "call %d", i)
		o := parked[i].Orbit()
		require.NotEmpty(t, o)
		_, dup := orbitFate[o]
		require.False(t, dup, "orbit %s given twice", o)
		f, _ := fateOf(i)
		orbitFate[o] = f
	}

	// The park ID of each orbit, from the server's "parked" lines.
	parkedLine := regexp.MustCompile(`msg=parked orbit=(\S+) park_id=(\S+)`)
	idFate := map[string]fate{}
	waitUntilLogged(t, srv, 10*time.Second, func(lines []string) bool {
		for _, l := range lines {
			if m := parkedLine.FindStringSubmatch(l); m != nil {
				if f, ok := orbitFate[m[1]]; ok {
					idFate[m[2]] = f
				}
			}
		}
		return len(idFate) == calls
	})

	signalled := time.Now()
	require.NoError(t, srv.Cmd.Process.Signal(syscall.SIGTERM))
	srv.WaitLine(`msg="shutting down: recalling every parked call"`, 5*time.Second, "parked=100")

	// While the recalls ring, a new park is turned away.
	late := phone(parktest.PhoneOptions{User: "late"})
	_, err := late.Call(ctx, "sip:700@"+srv.Addr, parktest.CallOptions{Mute: true})
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se, "a park during the shutdown")
	require.Equal(t, 503, se.Code)

	// The answered recalls are calls the server now relays: it waits for
	// them, while every other call has ended.
	var answered []*parktest.Call
	for _, p := range parkers[answers] {
		for range 10 {
			select {
			case c := <-p.Incoming():
				answered = append(answered, c)
			case <-time.After(10*time.Second + ring):
				t.Fatal("a parker that answers has fewer than 10 answered recalls")
			}
		}
	}
	waitUntilLogged(t, srv, 10*time.Second+ring, func(lines []string) bool {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, "outcome=dropped") {
				n++
			}
		}
		return n == 60
	})
	select {
	case <-srv.Exited:
		t.Fatalf("parkserver exited with 40 calls still connected: %v", srv.Err)
	case <-time.After(time.Second):
	}
	for _, c := range answered {
		select {
		case <-c.Done():
			t.Fatal("an answered recall ended before its party hung up")
		default:
		}
	}
	hungUp := time.Now()
	for _, c := range answered {
		require.NoError(t, c.Hangup(ctx))
	}
	select {
	case <-srv.Exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("parkserver still running %v after the last call hung up", time.Since(hungUp))
	}
	t.Logf("exited %v after SIGTERM, %v after the last hang-up", time.Since(signalled).Round(time.Millisecond), time.Since(hungUp).Round(time.Millisecond))
	require.NoError(t, srv.Err, "every call ended before the drain time: exit status 0")
	require.Less(t, time.Since(hungUp), 5*time.Second, "the process exits once nothing is parked, ringing or connected")

	// Each parked phone got its BYE: a dropped call's, or, for a recalled
	// one, its parker's hang-up passed on.
	byeCtx, cancelBye := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelBye()
	for i, c := range parked {
		select {
		case <-c.Done():
			require.True(t, c.EndedByRemote(), "call %d ended by the server's BYE", i)
		case <-byeCtx.Done():
			t.Fatalf("parked call %d (orbit %s) never got a BYE", i, c.Orbit())
		}
	}
	for _, p := range parkers[answers] {
		require.Equal(t, 10, p.Inbox().Invites(), "one recall per call, at once")
	}
	for _, p := range parkers[rings] {
		require.Equal(t, 10, p.Inbox().Invites())
		require.Equal(t, 10, p.Inbox().Cancels(), "each ringing recall is cancelled after the ring")
	}
	for _, p := range parkers[refuses] {
		require.Equal(t, 10, p.Inbox().Invites(), "one recall each, refused, and no second one while shutting down")
	}

	// The single-outcome rule, from the log: every park ID ends once, as
	// its fate says.
	want := map[fate]string{answers: "recalled", rings: "dropped", refuses: "dropped", noParker: "dropped"}
	ending := regexp.MustCompile(`park_id=(\S+).*outcome=(\S+)`)
	got := map[string][]string{}
	for _, l := range srv.Lines() {
		if strings.Contains(l, `msg="hung up while parked"`) || strings.Contains(l, "msg=retrieved") {
			t.Errorf("no call was to be abandoned or retrieved: %s", l)
		}
		if m := ending.FindStringSubmatch(l); m != nil {
			got[m[1]] = append(got[m[1]], m[2])
		}
	}
	counts := map[string]int{}
	for id, f := range idFate {
		require.Len(t, got[id], 1, "park ID %s ends exactly once", id)
		require.Equal(t, want[f], got[id][0], "park ID %s", id)
		counts[got[id][0]]++
	}
	require.Len(t, got, calls, "no ending for a call that was never parked")
	require.Equal(t, map[string]int{"recalled": 40, "dropped": 60}, counts)
}

// waitUntilLogged waits until cond holds for the server's log so far.
func waitUntilLogged(t *testing.T, p *parkServerProcess, timeout time.Duration, cond func(lines []string) bool) {
	t.Helper()
	p.WaitLogged(timeout, "what was awaited", cond)
}
