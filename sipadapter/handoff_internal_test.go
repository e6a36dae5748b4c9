package sipadapter

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
)

// handoffServer is a server for these tests, its RTP ports from base.
func handoffServer(t *testing.T, base int) *Server {
	t.Helper()
	music, err := media.Tone("test music", 440, time.Second)
	require.NoError(t, err)
	srv, err := New(Config{Listen: "127.0.0.1:0", RTPPortMin: base, RTPPortMax: base + 99, Park: park.Config{MusicOnHold: music}})
	require.NoError(t, err)
	require.NoError(t, srv.Listen(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// onlyLeg returns the one leg srv holds.
func onlyLeg(t *testing.T, srv *Server) *callLeg {
	t.Helper()
	e := srv.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	require.Len(t, e.legs, 1)
	for _, l := range e.legs {
		return l
	}
	return nil
}

// A call parked on node A is continued by node B from A's handoff: the
// party accepts B's re-INVITE (same dialog, higher CSeq, same o= id and a
// higher version, B's address), hears B's music, and its BYE reaches B.
func TestAnotherNodeContinuesAParkedCall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := handoffServer(t, 13000)
	b := handoffServer(t, 13200)
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice", Transport: transport})
			parked, err := alice.Call(ctx, a.ParkURI(), parktest.CallOptions{})
			require.NoError(t, err)
			require.NoError(t, parked.WaitReceived(ctx, 5))

			old := onlyLeg(t, a)
			h, err := old.handoff()
			require.NoError(t, err)
			h, err = parseHandoff(h.marshal())
			require.NoError(t, err, "what a node writes, another reads")
			firstSDP := parked.RemoteSDP()
			old.ep.StopMusic() // node A is gone: nothing more from it

			l, err := b.engine.adopt(ctx, h, "")
			require.NoError(t, err, "the party accepts the takeover re-INVITE")
			require.NoError(t, l.Hold(ctx, park.BuiltinMusic()))
			sdp := parked.RemoteSDP()
			require.Equal(t, firstSDP.SessionID, sdp.SessionID, "same o= session id")
			require.Greater(t, sdp.SessionVersion, firstSDP.SessionVersion, "a higher version")
			require.Equal(t, l.Endpoint().LocalAddr(), sdp.Addr, "B's address and port")
			before := parked.Received()
			require.NoError(t, parked.WaitReceived(ctx, before+10), "music from node B")

			require.NoError(t, parked.Hangup(ctx), "the party's BYE goes to node B")
			require.Eventually(t, l.Closed, 5*time.Second, 10*time.Millisecond)
			old.Close() // node A forgets the call without a BYE
		})
	}
}

func goodHandoff() handoff {
	return handoff{
		CallID: "abc@host", Local: "<sip:700@10.0.0.1:5060>;tag=ours", Remote: `"Alice" <sip:alice@10.0.0.2>;tag=theirs`,
		Target: "sip:alice@10.0.0.2:5062;transport=tcp", Route: []string{"<sip:proxy.example;lr>"},
		CSeq: 7, Transport: "TCP", SDPID: 1, SDPVersion: 2, Codec: "PCMA",
	}
}

// A handoff is outside input: each unusable field is named.
func TestParseHandoffNamesTheBadField(t *testing.T) {
	h, err := parseHandoff(goodHandoff().marshal())
	require.NoError(t, err)
	require.Equal(t, goodHandoff(), h)
	for field, spoil := range map[string]func(*handoff){
		"call_id":   func(h *handoff) { h.CallID = "" },
		"local":     func(h *handoff) { h.Local = "<sip:700@10.0.0.1>" },
		"remote":    func(h *handoff) { h.Remote = "nonsense<" },
		"target":    func(h *handoff) { h.Target = "sip:a@b\r\nVia: x" },
		"route":     func(h *handoff) { h.Route = []string{"<sip:x>\r\nFrom: y"} },
		"transport": func(h *handoff) { h.Transport = "SCTP" },
		"cseq":      func(h *handoff) { h.CSeq = 1<<31 - 1 },
		"codec":     func(h *handoff) { h.Codec = "G729" },
	} {
		bad := goodHandoff()
		spoil(&bad)
		_, err := parseHandoff(bad.marshal())
		var he *HandoffError
		require.ErrorAs(t, err, &he, field)
		require.Equal(t, field, he.Field)
	}
	_, err = parseHandoff([]byte("{"))
	require.Error(t, err)
}

// Whatever a handoff holds, parsing it never panics, and one that parses
// builds a dialog.
func FuzzParseHandoff(f *testing.F) {
	f.Add(goodHandoff().marshal())
	f.Add([]byte(`{"call_id":"x","local":"<sip:a@b>;tag=1","remote":"<sip:c@d>;tag=2","target":"sip:c@d","transport":"UDP","codec":"PCMU"}`))
	srv, err := New(Config{Listen: "127.0.0.1:0", RTPPortMin: 13400, RTPPortMax: 13499})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Listen(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	e := srv.engine
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHandoff(b)
		if err != nil {
			return
		}
		if _, err := e.adoptDialog(h); err != nil {
			t.Fatalf("a handoff that parsed built no dialog: %v (%+v)", err, h)
		}
	})
}
