package parktest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

func TestStartPhoneRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name      string
		opts      PhoneOptions
		wantField string
	}{
		{name: "no user", opts: PhoneOptions{}, wantField: "PhoneOptions.User"},
		{name: "user with a space", opts: PhoneOptions{User: "al ice"}, wantField: `PhoneOptions.User "al ice"`},
		{name: "user with an @", opts: PhoneOptions{User: "a@b"}, wantField: `PhoneOptions.User "a@b"`},
		{name: "unknown transport", opts: PhoneOptions{User: "a", Transport: "sctp"}, wantField: `PhoneOptions.Transport "sctp"`},
		{name: "codec other than G.711", opts: PhoneOptions{User: "a", Codecs: []media.Codec{18}}, wantField: "PhoneOptions.Codecs"},
		{name: "negative re-INVITE delay", opts: PhoneOptions{User: "a", ReInviteAnswerDelay: -time.Second}, wantField: "PhoneOptions.ReInviteAnswerDelay -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := StartPhone(tt.opts)
			require.Nil(t, p)
			require.ErrorIs(t, err, ErrInvalidOptions)
			require.ErrorContains(t, err, tt.wantField)
		})
	}
}

func TestPhoneURIAndAddr(t *testing.T) {
	tests := []struct {
		transport, wantSuffix string
	}{
		{transport: "", wantSuffix: ""},
		{transport: "UDP", wantSuffix: ""},
		{transport: "tcp", wantSuffix: ";transport=tcp"},
	}
	for _, tt := range tests {
		t.Run("transport "+tt.transport, func(t *testing.T) {
			p := NewPhone(t, PhoneOptions{User: "alice", Transport: tt.transport})
			require.True(t, p.Addr().Addr().IsLoopback())
			require.NotZero(t, p.Addr().Port())
			require.Equal(t, fmt.Sprintf("sip:alice@127.0.0.1:%d%s", p.Addr().Port(), tt.wantSuffix), p.URI())
		})
	}
}

func TestSetAnswerRejectsBadPolicy(t *testing.T) {
	p := NewPhone(t, PhoneOptions{User: "alice"})
	tests := []struct {
		name      string
		policy    AnswerPolicy
		wantField string
	}{
		{name: "code below 300", policy: AnswerPolicy{Mode: Reject, Code: 200}, wantField: "AnswerPolicy.Code 200"},
		{name: "code above 699", policy: AnswerPolicy{Mode: Reject, Code: 700}, wantField: "AnswerPolicy.Code 700"},
		{name: "negative delay", policy: AnswerPolicy{Delay: -time.Second}, wantField: "AnswerPolicy.Delay"},
		{name: "unknown mode", policy: AnswerPolicy{Mode: 7}, wantField: "AnswerPolicy.Mode AnswerMode(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.SetAnswer(tt.policy)
			require.ErrorIs(t, err, ErrInvalidOptions)
			require.ErrorContains(t, err, tt.wantField)
		})
	}
	require.Equal(t, AutoAnswer, p.answer.Mode, "a rejected policy leaves the old one")
}

func TestAnswerModeString(t *testing.T) {
	for mode, want := range map[AnswerMode]string{AutoAnswer: "AutoAnswer", Reject: "Reject", NoAnswer: "NoAnswer", 9: "AnswerMode(9)"} {
		require.Equal(t, want, mode.String())
	}
}

func TestMessageReceived(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			server, parker := phonePair(t, tr)
			u, _, err := parseTarget(parker.URI())
			require.NoError(t, err)
			req := sip.NewRequest(sip.MESSAGE, u)
			req.AppendHeader(sip.NewHeader("Content-Type", "text/plain"))
			req.SetBody([]byte("Parked at 701"))
			res, err := server.Send(ctx, req)
			require.NoError(t, err)
			require.Equal(t, 200, res.StatusCode)
			msgs, err := parker.Inbox().WaitMessages(ctx, 1)
			require.NoError(t, err)
			require.Equal(t, []Message{{From: server.URI(), ContentType: "text/plain", Body: "Parked at 701"}}, msgs)
		})
	}
}

func TestOptions(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	res, err := alice.Options(ctx, bob.URI())
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)
	allow := res.GetHeader("Allow").Value()
	for _, m := range []string{"INVITE", "REFER", "SUBSCRIBE", "NOTIFY", "MESSAGE"} {
		require.Contains(t, allow, m)
	}
	_, err = alice.Options(ctx, "mailto:bob@example.com")
	require.ErrorIs(t, err, ErrBadTarget)
}

func TestSendOutOfDialogOddRequests(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	target, _, err := parseTarget(bob.URI())
	require.NoError(t, err)
	withTags := func(method sip.RequestMethod) *sip.Request {
		req := sip.NewRequest(method, target)
		to := &sip.ToHeader{Address: target, Params: sip.NewParams()}
		to.Params.Add("tag", "no-such-dialog")
		req.AppendHeader(to)
		return req
	}
	tests := []struct {
		name string
		req  *sip.Request
		want int
	}{
		{name: "BYE for no dialog", req: withTags(sip.BYE), want: 481},
		{name: "re-INVITE for no dialog", req: withTags(sip.INVITE), want: 481},
		{name: "REFER for no dialog", req: withTags(sip.REFER), want: 481},
		{name: "NOTIFY for no subscription", req: withTags(sip.NOTIFY), want: 481},
		{name: "SUBSCRIBE refresh for no subscription", req: withTags(sip.SUBSCRIBE), want: 481},
		{name: "REFER outside a call", req: sip.NewRequest(sip.REFER, target), want: 403},
		{name: "unknown method", req: sip.NewRequest("PUBLISH", target), want: 405},
		{name: "SUBSCRIBE without Event", req: sip.NewRequest(sip.SUBSCRIBE, target), want: 489},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := alice.Send(ctx, tt.req)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.StatusCode)
		})
	}
	_, err = alice.Send(ctx, sip.NewRequest(sip.CANCEL, target))
	require.ErrorIs(t, err, ErrInvalidOptions)

	// A CANCEL for no INVITE, sent past Send's guard.
	cancel := alice.newUACDialog(target).newRequest(sip.CANCEL)
	res, err := alice.do(ctx, cancel)
	require.NoError(t, err)
	require.Equal(t, 481, res.StatusCode)
}

func TestInviteWithBadSDP(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	target, _, err := parseTarget(bob.URI())
	require.NoError(t, err)
	tests := []struct {
		name, sdp string
		want      int
	}{
		{name: "unparsable", sdp: "not sdp at all", want: 400},
		{name: "video only", sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=video 4000 RTP/AVP 96\r\n", want: 488},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := sip.NewRequest(sip.INVITE, target)
			req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(alice.Addr().Port())}})
			req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			req.SetBody([]byte(tt.sdp))
			res, err := alice.Send(ctx, req)
			require.NoError(t, err)
			require.Equal(t, tt.want, res.StatusCode)
		})
	}
}

func TestCloseHangsUpCalls(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			out, in := connect(t, ctx, alice, bob, CallOptions{})
			require.NoError(t, bob.Close())
			require.NoError(t, bob.Close(), "Close is idempotent")
			<-in.Done()
			select {
			case <-out.Done():
			case <-ctx.Done():
				require.FailNow(t, "Close sent no BYE")
			}
			require.True(t, out.EndedByRemote())

			_, err := bob.Call(ctx, alice.URI(), CallOptions{})
			require.ErrorIs(t, err, ErrPhoneClosed)
			_, err = bob.Options(ctx, alice.URI())
			require.ErrorIs(t, err, ErrPhoneClosed)
			require.ErrorIs(t, bob.Inbox().WaitInvites(ctx, 2), ErrPhoneClosed)
			require.NoError(t, in.Hangup(ctx), "ended calls need no BYE")
		})
	}
}

func TestCloseInterruptsWaits(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Mode: NoAnswer}))
	ringing := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, bob.URI(), CallOptions{})
		ringing <- err
	}()
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1))
	waiting := make(chan error, 1)
	go func() { waiting <- alice.Inbox().WaitCancels(ctx, 1) }()
	require.NoError(t, alice.Close())
	require.ErrorIs(t, <-ringing, ErrPhoneClosed)
	require.ErrorIs(t, <-waiting, ErrPhoneClosed)
}

func TestCloseAnswersRingingCall(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Mode: NoAnswer}))
	ringing := make(chan error, 1)
	go func() {
		_, err := alice.Call(ctx, bob.URI(), CallOptions{})
		ringing <- err
	}()
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1))
	require.NoError(t, bob.Close())
	var se *StatusError
	require.ErrorAs(t, <-ringing, &se)
	require.Equal(t, 480, se.Code, "a closing phone stops ringing with 480")
}

func TestCloseWithPeerGoneIsBounded(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	connect(t, ctx, alice, bob, CallOptions{})
	// Bob goes deaf: whatever reaches him is dropped unanswered.
	bob.draining.Store(true)
	start := time.Now()
	require.NoError(t, alice.Close())
	require.Less(t, time.Since(start), closeHangupBudget+time.Second, "Close waits at most its hang-up budget")
}

func TestContextsOfWaitsEnd(t *testing.T) {
	p := NewPhone(t, PhoneOptions{User: "alice"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, p.Inbox().WaitInvites(ctx, 1), context.Canceled)
	require.ErrorIs(t, p.Inbox().WaitCancels(ctx, 1), context.Canceled)
	_, err := p.Inbox().WaitMessages(ctx, 1)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, p.Inbox().WaitInvites(ctx, 0), "a condition already met needs no wait")
}

func TestLoggerReceivesRecords(t *testing.T) {
	buf := &lockedWriter{w: new(strings.Builder)}
	ctx := testContext(t)
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	bob := NewPhone(t, PhoneOptions{User: "bob", Logger: newTestLogger(buf),
		OnRefer: func(*Call, string) ReferReply { return ReferReply{Status: 99} }})
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	res, err := out.Refer(ctx, alice.URI())
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 500, res.Accepted, "a handler's bad status is answered 500")
	require.NoError(t, bob.Close())
	require.Contains(t, buf.String(), "ReferReply.Status out of range", "the phone's own records")
	require.Contains(t, buf.String(), "begin listening", "sipgo's records")
}
