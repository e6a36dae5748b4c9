package parktest

import (
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

func TestReferScriptedReplies(t *testing.T) {
	tests := []struct {
		name         string
		reply        ReferReply
		wantAccepted int
		wantNotifies []string
		wantFinal    int
		wantOrbit    string
		wantStatus   int // non-zero: Refer returns a *StatusError with it
	}{
		{
			name: "re-park: 100 then 200 with the orbit",
			reply: ReferReply{Notify: []string{
				"SIP/2.0 100 Trying\r\n",
				"SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n",
			}},
			wantAccepted: 202,
			wantNotifies: []string{"SIP/2.0 100 Trying\r\n", "SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n"},
			wantFinal:    200, wantOrbit: "701",
		},
		{
			name:         "lot full: final 486",
			reply:        ReferReply{Notify: []string{"SIP/2.0 486 Busy Here\r\n"}},
			wantAccepted: 202,
			wantNotifies: []string{"SIP/2.0 486 Busy Here\r\n"},
			wantFinal:    486,
		},
		{
			name:         "default: one final 200",
			reply:        ReferReply{},
			wantAccepted: 202,
			wantNotifies: []string{"SIP/2.0 200 OK\r\n"},
			wantFinal:    200,
		},
		{
			name:         "rejected REFER",
			reply:        ReferReply{Status: 603},
			wantAccepted: 603,
			wantStatus:   603,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			var (
				mu      sync.Mutex
				referTo string
			)
			alice := NewPhone(t, PhoneOptions{User: "alice"})
			bob := NewPhone(t, PhoneOptions{User: "bob", OnRefer: func(c *Call, to string) ReferReply {
				mu.Lock()
				referTo = to
				mu.Unlock()
				return tt.reply
			}})
			out, _ := connect(t, ctx, alice, bob, CallOptions{})
			res, err := out.Refer(ctx, "sip:700@127.0.0.1:5060", sip.NewHeader("Referred-By", "<"+alice.URI()+">"))
			require.NotNil(t, res)
			require.Equal(t, tt.wantAccepted, res.Accepted)
			mu.Lock()
			require.Equal(t, "sip:700@127.0.0.1:5060", referTo)
			mu.Unlock()
			if tt.wantStatus != 0 {
				var se *StatusError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tt.wantStatus, se.Code)
				require.Equal(t, sip.REFER, se.Method)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantNotifies, res.Notifies)
			require.Equal(t, tt.wantFinal, res.FinalStatus)
			require.Equal(t, tt.wantOrbit, res.Orbit)
		})
	}
}

func TestReferBadFinalSipfrag(t *testing.T) {
	ctx := testContext(t)
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	bob := NewPhone(t, PhoneOptions{User: "bob",
		OnRefer: func(*Call, string) ReferReply { return ReferReply{Notify: []string{"garbage"}} }})
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	res, err := out.Refer(ctx, bob.URI())
	require.ErrorIs(t, err, ErrBadSipfrag)
	require.Equal(t, []string{"garbage"}, res.Notifies)
}

func TestReferBadTarget(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	_, err := out.Refer(ctx, "tel:700")
	require.ErrorIs(t, err, ErrBadTarget)
}

// TestReferFollowedBlindTransfer: alice transfers bob to carol; bob, a phone
// following REFERs, calls carol on his own and reports the outcome.
func TestReferFollowedBlindTransfer(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			ctx := testContext(t)
			alice, bob := phonePair(t, tr)
			carol := NewPhone(t, PhoneOptions{User: "carol", Transport: tr})
			out, _ := connect(t, ctx, alice, bob, CallOptions{})

			res, err := out.Refer(ctx, carol.URI())
			require.NoError(t, err)
			require.Equal(t, 202, res.Accepted)
			require.Equal(t, []string{"SIP/2.0 100 Trying\r\n", "SIP/2.0 200 OK\r\n"}, res.Notifies)
			require.Equal(t, 200, res.FinalStatus)

			transferred := <-bob.Transfers()
			atCarol := <-carol.Incoming()
			require.Equal(t, transferred.CallID(), atCarol.CallID())
			require.Contains(t, atCarol.Header("Referred-By"), alice.URI(), "bob copies who referred him")
			require.NoError(t, transferred.WaitReceived(ctx, rtpPackets))
			require.NoError(t, atCarol.WaitReceived(ctx, rtpPackets))
			require.NoError(t, out.Hangup(ctx), "the referrer leaves; bob's new call stays")
			select {
			case <-transferred.Done():
				require.FailNow(t, "the transferred call ended")
			default:
			}
		})
	}
}

func TestReferFollowedTransferRejected(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	carol := NewPhone(t, PhoneOptions{User: "carol"})
	require.NoError(t, carol.SetAnswer(AnswerPolicy{Mode: Reject, Code: 486}))
	out, _ := connect(t, ctx, alice, bob, CallOptions{})
	res, err := out.Refer(ctx, carol.URI())
	require.NoError(t, err)
	require.Equal(t, 486, res.FinalStatus)
	require.Equal(t, "SIP/2.0 486 Busy Here\r\n", res.Notifies[len(res.Notifies)-1])
}

// TestReferWithReplaces is the park key of SIP-CONTRACT flow 5b, between
// phones: alice has a consult call with carol and refers bob to carol with
// Replaces naming it; bob's INVITE to carol carries that Replaces.
func TestReferWithReplaces(t *testing.T) {
	ctx := testContext(t)
	alice, bob := phonePair(t, "udp")
	carol := NewPhone(t, PhoneOptions{User: "carol"})
	consult, atCarol := connect(t, ctx, alice, carol, CallOptions{})
	out, _ := connect(t, ctx, alice, bob, CallOptions{})

	referTo := consult.ReplacingURI(carol.URI())
	require.True(t, strings.HasPrefix(referTo, carol.URI()+"?Replaces="))
	res, err := out.Refer(ctx, referTo)
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)

	replacing := <-carol.Incoming()
	replaces := replacing.Header("Replaces")
	callID, params, _ := strings.Cut(replaces, ";")
	require.Equal(t, atCarol.CallID(), callID)
	require.Contains(t, params, "to-tag="+atCarol.dlg.localTag, "to-tag is carol's own tag")
	require.Contains(t, params, "from-tag="+consult.dlg.localTag)
	transferred := <-bob.Transfers()
	require.Equal(t, replacing.CallID(), transferred.CallID())
}
