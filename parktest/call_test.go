package parktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// rtpPackets is how many packets each direction must carry: half a second
// of 20 ms audio, enough to tell a stream from a stray packet.
const rtpPackets = 25

func TestCallAnsweredRTPBothWays(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			out, in := connect(t, ctx, alice, bob, CallOptions{
				Headers: []sip.Header{sip.NewHeader("X-Test", "hello")},
			})
			require.True(t, out.Outgoing())
			require.False(t, in.Outgoing())
			require.Equal(t, out.CallID(), in.CallID())
			require.Equal(t, "hello", in.Header("x-test"), "the INVITE's headers show on the incoming call")
			require.Contains(t, in.Header("From"), alice.URI())
			require.Contains(t, out.Header("Contact"), bob.URI(), "the 200 OK's headers show on the outgoing call")

			require.NoError(t, out.WaitReceived(ctx, rtpPackets), "alice hears bob")
			require.NoError(t, in.WaitReceived(ctx, rtpPackets), "bob hears alice")
			require.Equal(t, media.PCMU, out.Negotiated().Codec)
			require.Equal(t, media.SendRecv, out.Negotiated().Direction)
			require.Equal(t, in.LocalRTP(), out.Negotiated().Remote, "alice sends to bob's RTP port")
			require.Equal(t, out.LocalRTP(), in.RemoteSDP().Addr)
			require.Zero(t, out.RTPStats().UnknownPayloadType)
			require.Equal(t, 1, bob.Inbox().Invites())
		})
	}
}

func TestCallCodecs(t *testing.T) {
	tests := []struct {
		name                  string
		offered, calleeAccept []media.Codec
		want                  media.Codec
		wantStatus            int
	}{
		{name: "callee prefers nothing, offer order wins", offered: []media.Codec{media.PCMA, media.PCMU}, want: media.PCMA},
		{name: "callee takes PCMA only", offered: []media.Codec{media.PCMU, media.PCMA}, calleeAccept: []media.Codec{media.PCMA}, want: media.PCMA},
		{name: "no common codec is 488", offered: []media.Codec{media.PCMA}, calleeAccept: []media.Codec{media.PCMU}, wantStatus: 488},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			alice := NewPhone(t, PhoneOptions{User: "alice"})
			bob := NewPhone(t, PhoneOptions{User: "bob", Codecs: tt.calleeAccept})
			out, err := alice.Call(ctx, bob.URI(), CallOptions{Codecs: tt.offered})
			if tt.wantStatus != 0 {
				var se *StatusError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tt.wantStatus, se.Code)
				return
			}
			require.NoError(t, err)
			in := <-bob.Incoming()
			require.Equal(t, tt.want, out.Negotiated().Codec)
			require.Equal(t, tt.want, in.Negotiated().Codec)
			require.NoError(t, out.WaitReceived(ctx, rtpPackets))
			require.NoError(t, in.WaitReceived(ctx, rtpPackets))
		})
	}
}

// TestAnswerHeaders: bob plays a park server, answering with the orbit.
func TestAnswerHeaders(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Headers: []sip.Header{sip.NewHeader("X-Park-Orbit", "*7012")}}))
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	require.Equal(t, "*7012", out.Orbit())

	require.NoError(t, bob.SetAnswer(AnswerPolicy{Mode: Reject, Headers: []sip.Header{sip.NewHeader("Reason", `SIP;cause=486;text="Lot full"`)}}))
	_, err := alice.Call(ctx, bob.URI(), CallOptions{})
	var se *StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 486, se.Code)
	require.Contains(t, se.Response.GetHeader("Reason").Value(), "Lot full")
}

func TestCallLateOffer(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			out, in := connect(t, ctx, alice, bob, CallOptions{LateOffer: true})
			require.Empty(t, in.Header("Content-Type"), "the INVITE carried no SDP")
			require.NotNil(t, in.RemoteSDP(), "bob got alice's answer in the ACK")
			require.NoError(t, out.WaitReceived(ctx, rtpPackets))
			require.NoError(t, in.WaitReceived(ctx, rtpPackets))
		})
	}
}

func TestHangupEitherSideEndsBoth(t *testing.T) {
	for _, tr := range transports {
		for _, callerHangsUp := range []bool{true, false} {
			name := tr + "/callee hangs up"
			if callerHangsUp {
				name = tr + "/caller hangs up"
			}
			t.Run(name, func(t *testing.T) {
				ctx := testContext(t)
				alice, bob := phonePair(t, tr)
				out, in := connect(t, ctx, alice, bob, CallOptions{})
				hanger, other := out, in
				if !callerHangsUp {
					hanger, other = in, out
				}
				require.NoError(t, hanger.Hangup(ctx))
				select {
				case <-other.Done():
				case <-ctx.Done():
					require.FailNow(t, "the other side never saw the BYE")
				}
				<-hanger.Done()
				require.False(t, hanger.EndedByRemote())
				require.True(t, other.EndedByRemote())
				require.NoError(t, hanger.Hangup(ctx), "hanging up an ended call does nothing")
				require.ErrorIs(t, other.Hold(ctx), ErrCallEnded)
				_, err := other.Refer(ctx, alice.URI())
				require.ErrorIs(t, err, ErrCallEnded)
				require.ErrorIs(t, other.WaitReceived(ctx, 1<<40), ErrCallEnded)
			})
		}
	}
}

func TestRejectSurfacesStatusError(t *testing.T) {
	tests := []struct {
		name   string
		policy AnswerPolicy
		want   int
	}{
		{name: "default code is 486", policy: AnswerPolicy{Mode: Reject}, want: 486},
		{name: "603 Decline", policy: AnswerPolicy{Mode: Reject, Code: 603}, want: 603},
		{name: "480 after ringing", policy: AnswerPolicy{Mode: Reject, Code: 480, Delay: 50 * time.Millisecond}, want: 480},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, "udp")
			require.NoError(t, bob.SetAnswer(tt.policy))
			call, err := alice.Call(ctx, bob.URI(), CallOptions{})
			require.Nil(t, call)
			var se *StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tt.want, se.Code)
			require.Equal(t, sip.INVITE, se.Method)
			require.Equal(t, tt.want, se.Response.StatusCode)
			require.Contains(t, err.Error(), bob.URI())
			require.Equal(t, 1, bob.Inbox().Invites())
			require.Zero(t, bob.Inbox().Cancels())
		})
	}
}

func TestCallerCancelsRingingCall(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			require.NoError(t, bob.SetAnswer(AnswerPolicy{Mode: NoAnswer}))
			callCtx, hangUp := context.WithCancel(ctx)
			result := make(chan error, 1)
			go func() {
				_, err := alice.Call(callCtx, bob.URI(), CallOptions{})
				result <- err
			}()
			require.NoError(t, bob.Inbox().WaitInvites(ctx, 1))
			hangUp()
			select {
			case err := <-result:
				require.ErrorIs(t, err, context.Canceled)
			case <-ctx.Done():
				require.FailNow(t, "Call did not return after its context ended")
			}
			require.NoError(t, bob.Inbox().WaitCancels(ctx, 1))
			require.Equal(t, 1, bob.Inbox().Cancels())
		})
	}
}

func TestCancelDuringAnswerDelay(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Delay: time.Hour}))
	callCtx, hangUp := context.WithCancel(ctx)
	result := make(chan error, 1)
	go func() {
		_, err := alice.Call(callCtx, bob.URI(), CallOptions{})
		result <- err
	}()
	require.NoError(t, bob.Inbox().WaitInvites(ctx, 1))
	hangUp()
	require.ErrorIs(t, <-result, context.Canceled)
	require.NoError(t, bob.Inbox().WaitCancels(ctx, 1))
	select {
	case c := <-bob.Incoming():
		require.Failf(t, "a cancelled call was answered", "call %s", c.CallID())
	default:
	}
}

func TestHoldAndResume(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			out, in := connect(t, ctx, alice, bob, CallOptions{})
			require.NoError(t, out.WaitReceived(ctx, rtpPackets))

			require.NoError(t, out.Hold(ctx))
			require.Equal(t, media.RecvOnly, out.RemoteSDP().Direction, "bob answers a hold recvonly (RFC 3264)")
			require.Equal(t, media.SendOnly, out.Negotiated().Direction)
			require.Equal(t, media.SendOnly, in.RemoteSDP().Direction)
			require.Equal(t, media.RecvOnly, in.Negotiated().Direction, "bob may not send while held")
			require.True(t, in.Negotiated().RemoteHold)
			select {
			case <-out.Done():
				require.FailNow(t, "hold ended the call")
			default:
			}

			require.NoError(t, out.Resume(ctx))
			require.Equal(t, media.SendRecv, out.RemoteSDP().Direction)
			require.Equal(t, media.SendRecv, out.Negotiated().Direction)
			require.Equal(t, media.SendRecv, in.Negotiated().Direction)
			// Bob sends again: alice's count goes on growing.
			outWant, inWant := out.Received()+rtpPackets, in.Received()+rtpPackets
			require.NoError(t, out.WaitReceived(ctx, outWant))
			require.NoError(t, in.WaitReceived(ctx, inWant))
		})
	}
}

func TestHoldFromCallee(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	out, in := connect(t, ctx, alice, bob, CallOptions{})
	require.NoError(t, in.Hold(ctx), "the callee can send re-INVITEs too")
	require.Equal(t, media.RecvOnly, out.Negotiated().Direction)
	require.NoError(t, in.Resume(ctx))
	require.Equal(t, media.SendRecv, out.Negotiated().Direction)
	require.NoError(t, in.WaitReceived(ctx, in.Received()+rtpPackets))
}

func TestMuteAndAudioControl(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Mute: true}))
	out, in := connect(t, ctx, alice, bob, CallOptions{Mute: true})
	require.NoError(t, in.StartAudio())
	require.NoError(t, out.WaitReceived(ctx, rtpPackets), "bob's audio started on demand")
	require.Zero(t, out.RTPStats().Sent, "alice is muted")
	require.NoError(t, out.StartAudio())
	require.NoError(t, in.WaitReceived(ctx, rtpPackets))
	out.StopAudio()
	sent := out.RTPStats().Sent
	require.NoError(t, out.WaitReceived(ctx, out.Received()+5))
	require.Equal(t, sent, out.RTPStats().Sent, "no packet after StopAudio")
	require.NoError(t, out.Hangup(ctx))
	require.ErrorIs(t, out.StartAudio(), ErrCallEnded)
}

func TestWaitReceivedHonoursContext(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	require.NoError(t, bob.SetAnswer(AnswerPolicy{Mute: true}))
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	short, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, out.WaitReceived(short, 1), context.Canceled)
}

func TestCallBadTarget(t *testing.T) {
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	for _, target := range []string{"", "tel:+15551234", "sip:", "bob@example.com", "sip:700@127.0.0.1?Bad%20Name=1"} {
		t.Run(target, func(t *testing.T) {
			_, err := alice.Call(testContext(t), target, CallOptions{})
			require.ErrorIs(t, err, ErrBadTarget)
		})
	}
}

func TestCallOptionsRejectBadCodec(t *testing.T) {
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	_, err := alice.Call(testContext(t), "sip:bob@127.0.0.1:1", CallOptions{Codecs: []media.Codec{9}})
	require.ErrorIs(t, err, ErrInvalidOptions)
	require.ErrorContains(t, err, "CallOptions.Codecs")
}

func TestCallUnreachableTimesOutByContext(t *testing.T) {
	// Nothing listens on the closed phone's port: the INVITE gets no answer
	// and the context decides.
	ctx, cancel := context.WithTimeout(testContext(t), 300*time.Millisecond)
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	gone, err := StartPhone(PhoneOptions{User: "gone"})
	require.NoError(t, err)
	require.NoError(t, gone.Close())
	defer cancel()
	_, err = alice.Call(ctx, gone.URI(), CallOptions{})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestCallSendRawInDialog(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	tests := []struct {
		name string
		req  func() *sip.Request
		want int
	}{
		{name: "REFER without Refer-To is 400", req: func() *sip.Request { return sip.NewRequest(sip.REFER, sip.Uri{}) }, want: 400},
		{name: "INFO is not allowed", req: func() *sip.Request { return sip.NewRequest(sip.INFO, sip.Uri{}) }, want: 405},
		{name: "NOTIFY for no REFER is 481", req: func() *sip.Request {
			r := sip.NewRequest(sip.NOTIFY, sip.Uri{})
			r.AppendHeader(sip.NewHeader("Event", "refer"))
			return r
		}, want: 481},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := out.Send(ctx, tt.req())
			require.NoError(t, err)
			require.Equal(t, tt.want, res.StatusCode)
		})
	}
	_, err := out.Send(ctx, sip.NewRequest(sip.ACK, sip.Uri{}))
	require.ErrorIs(t, err, ErrInvalidOptions)
	select {
	case <-out.Done():
		require.FailNow(t, "odd requests ended the call")
	default:
	}
}

func TestIncomingQueueFullStillAnswers(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	// Fill bob's queue without reading it; the next call is still set up.
	for range queueLen {
		bob.incoming <- nil
	}
	out, err := alice.Call(ctx, bob.URI(), CallOptions{})
	require.NoError(t, err)
	require.NoError(t, out.WaitReceived(ctx, rtpPackets))
	for range queueLen {
		<-bob.incoming
	}
}

func TestStatusErrorMessageNamesRequest(t *testing.T) {
	res := sip.NewResponse(486, "Busy Here")
	err := statusError(sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "701", Host: "10.0.0.1"}), res)
	require.Equal(t, "parktest: INVITE sip:701@10.0.0.1 answered 486 Busy Here", err.Error())
	var target *StatusError
	require.True(t, errors.As(error(err), &target))
}

// A caller may ACK and hang up at once (a PBX recalling a call while it shuts
// down), and the callee handles the two concurrently, so the BYE can be seen
// first. The BYE carries the 200's To tag, proof the call was answered: the
// callee still delivers the call, ended by the peer, rather than losing it.
// Here the caller never ACKs at all, the extreme of that race.
func TestByeBeforeAckStillDeliversTheCall(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	target, _, err := parseTarget(bob.URI())
	require.NoError(t, err)
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	t.Cleanup(func() { sink.Close() })
	port := sink.LocalAddr().(*net.UDPAddr).Port

	invite := sip.NewRequest(sip.INVITE, target)
	invite.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(alice.Addr().Port())}})
	invite.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	invite.SetBody([]byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\n", port)))
	ok, err := alice.Send(ctx, invite)
	require.NoError(t, err)
	require.Equal(t, 200, ok.StatusCode)

	bye := sip.NewRequest(sip.BYE, target)
	bye.AppendHeader(sip.HeaderClone(invite.From()))
	bye.AppendHeader(sip.HeaderClone(ok.To()))
	bye.AppendHeader(sip.HeaderClone(invite.CallID()))
	bye.AppendHeader(&sip.CSeqHeader{SeqNo: invite.CSeq().SeqNo + 1, MethodName: sip.BYE})
	res, err := alice.Send(ctx, bye)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)

	select {
	case in := <-bob.Incoming():
		<-in.Done()
		require.True(t, in.EndedByRemote(), "the call ended with the caller's BYE")
	case <-ctx.Done():
		require.FailNow(t, "the answered call was lost because its BYE came before an ACK")
	}
	bob.mu.Lock()
	defer bob.mu.Unlock()
	require.Empty(t, bob.calls, "nothing left of the call")
}
