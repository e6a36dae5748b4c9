package sipadapter_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// Issue 16, goal 4: the parked party hears its BYE within 2 s of the
// retriever's even when its answer to the bridge's re-INVITE (two-way audio
// back, RFC 3264 §8) is late, as under overload when a packet is lost and
// retransmitted. The BYE used to wait for that re-INVITE: 5 s here, the
// phone's delay. The phone answers the pending re-INVITE 487 once it has
// the BYE, and the server's transaction takes that answer (acknowledging
// it), over both transports.
func TestByeDoesNotWaitForALateReInviteAnswer(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{})
			ctx := ctxFor(t, 20*time.Second)
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: transport, ReInviteAnswerDelay: 5 * time.Second})
			carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol", Transport: transport})
			parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
			require.NoError(t, err)
			got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
			require.NoError(t, err)
			time.Sleep(200 * time.Millisecond) // the re-INVITE to alice is out, its answer pending

			hungUp := time.Now()
			require.NoError(t, got.Hangup(ctx))
			waitEnd(t, ctx, parked, "alice gets her BYE")
			require.True(t, parked.EndedByRemote())
			require.Less(t, time.Since(hungUp), 2*time.Second, "alice's BYE waited for the re-INVITE")
			// The re-INVITE's transaction ends with alice's 487: nothing is
			// left to Shutdown (testServer's cleanup checks the legs and ports).
			waitUntil(t, 5*time.Second, "the legs are freed", func() bool { return srv.OpenLegs() == 0 })
		})
	}
}

// On the wire, a BYE sent while our re-INVITE is pending leaves at once
// with the next CSeq, and the re-INVITE's transaction still ends properly
// whatever the party answers after it: a 487 is acknowledged in that
// transaction (same branch), a late 200 with an ACK of its own that carries
// the re-INVITE's CSeq, not the BYE's.
func TestByeOvertakesAPendingReInviteOnTheWire(t *testing.T) {
	for _, late := range []int{487, 200} {
		t.Run(fmt.Sprint(late), func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{})
			ctx := ctxFor(t, 20*time.Second)
			party, got := parkRawAndRetrieve(t, ctx, srv)
			reinvite, from := party.next(sip.INVITE)
			require.Equal(t, "application/sdp", reinvite.ContentType().Value())

			hungUp := time.Now()
			require.NoError(t, got.Hangup(ctx))
			bye, _ := party.next(sip.BYE) // skipping the re-INVITE's retransmissions
			require.Less(t, time.Since(hungUp), 2*time.Second, "the BYE waited for the re-INVITE")
			require.Equal(t, reinvite.CSeq().SeqNo+1, bye.CSeq().SeqNo, "the BYE comes after the re-INVITE, in CSeq order")
			party.reply(sip.NewResponseFromRequest(bye, 200, "OK", nil), from)

			answer := sip.NewResponseFromRequest(reinvite, late, "Late", nil)
			if late == 200 {
				answer = sip.NewResponseFromRequest(reinvite, 200, "OK", []byte(sdpOffer(4000, 2, "sendrecv")))
				answer.AppendHeader(sip.NewHeader("Contact", "<sip:raw@"+party.contact.LocalAddr().String()+">"))
				answer.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
			}
			party.reply(answer, from)
			ack, _ := party.next(sip.ACK)
			require.Equal(t, reinvite.CSeq().SeqNo, ack.CSeq().SeqNo, "the ACK carries the re-INVITE's CSeq")
			require.Equal(t, sip.ACK, ack.CSeq().MethodName)
			require.Equal(t, reinvite.CallID().Value(), ack.CallID().Value())
			branch := func(r *sip.Request) string { b, _ := r.Via().Params.Get("branch"); return b }
			if late == 200 {
				require.NotEqual(t, branch(reinvite), branch(ack), "a 2xx's ACK is a transaction of its own")
				toTag, _ := ack.To().Params.Get("tag")
				wantTag, _ := reinvite.To().Params.Get("tag")
				require.Equal(t, wantTag, toTag)
			} else {
				require.Equal(t, branch(reinvite), branch(ack), "a non-2xx is acknowledged in its transaction")
			}
			waitUntil(t, 5*time.Second, "the legs are freed", func() bool { return srv.OpenLegs() == 0 })
		})
	}
}

// next reads what the server sends to the party's Contact until a request
// of method, skipping retransmissions of the requests before it and our own
// 200 sent again; it returns the request and where it came from.
func (p *rawUDPParty) next(method sip.RequestMethod) (*sip.Request, netip.AddrPort) {
	p.t.Helper()
	for {
		msg, src := readDatagram(p.t, p.contact)
		if req, ok := msg.(*sip.Request); ok && req.Method == method {
			return req, src
		}
	}
}

// reply sends res to the server at to.
func (p *rawUDPParty) reply(res *sip.Response, to netip.AddrPort) {
	p.t.Helper()
	_, err := p.contact.WriteToUDP([]byte(res.String()), net.UDPAddrFromAddrPort(to))
	require.NoError(p.t, err)
}

// A party that never answers our BYE (gone, or a client that stopped
// listening) holds nobody: the drain of a Shutdown counts its leg as over
// once the BYE is out, and Shutdown returns within its bounds, not after
// the BYE's 32 s. It used to wait the 32 s, then report its drain time as
// run out (parkload's "the tool left calls connected").
func TestShutdownDoesNotWaitForAnUnansweredBye(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	ctx := ctxFor(t, 20*time.Second)
	party, got := parkRawAndRetrieve(t, ctx, srv)
	party.next(sip.INVITE) // the re-INVITE for two-way audio, never answered
	require.NoError(t, got.Hangup(ctx))
	party.next(sip.BYE) // never answered either

	drain, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	require.NoError(t, srv.Shutdown(drain), "nothing is connected: carol hung up, the party has its BYE")
	require.Less(t, time.Since(start), 8*time.Second, "Shutdown waited for the BYE's answer past its bounds")
	waitUntil(t, 5*time.Second, "the party's leg is freed", func() bool { return srv.OpenLegs() == 0 })
}

// parkRawAndRetrieve parks a raw UDP party at srv and has carol retrieve
// it; the server's re-INVITE for two-way audio is then on its way to the
// party, left for the caller to read.
func parkRawAndRetrieve(t *testing.T, ctx context.Context, srv *sipadapter.Server) (*rawUDPParty, *parktest.Call) {
	t.Helper()
	party := newRawUDPParty(t, srv.Addr(), false)
	res := party.invite(srv.ParkURI(), sdpOffer(4000, 1, "sendrecv"))
	require.Equal(t, 200, res.StatusCode)
	party.ack(res, "")
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(res.GetHeader("X-Park-Orbit").Value())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	return party, got
}
