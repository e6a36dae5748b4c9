package media

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func sessionOffer(t *testing.T, dir Direction) *RemoteMedia {
	t.Helper()
	o, err := NewOffer(LocalMedia{Addr: netip.MustParseAddrPort("127.0.0.1:4000"), Username: "phone", SessionID: 9, SessionVersion: 9}, dir)
	require.NoError(t, err)
	offer, err := ParseOffer(o.SDP())
	require.NoError(t, err)
	return offer
}

func originLine(t *testing.T, body []byte) string {
	t.Helper()
	for _, line := range strings.Split(string(body), "\r\n") {
		if strings.HasPrefix(line, "o=") {
			return line
		}
	}
	t.Fatalf("no o= line in %q", body)
	return ""
}

func TestSessionRaisesTheVersionOnlyWhenTheAnswerChanges(t *testing.T) {
	s := NewSession(LocalMedia{Addr: netip.MustParseAddrPort("127.0.0.1:5000"), SessionID: 100})
	first, n, err := s.Answer(sessionOffer(t, SendRecv), SendRecv)
	require.NoError(t, err)
	require.Equal(t, "o=callpark 100 100 IN IP4 127.0.0.1", originLine(t, first), "the version starts at the id")
	require.Equal(t, SendRecv, n.Direction)

	again, _, err := s.Answer(sessionOffer(t, SendRecv), SendRecv)
	require.NoError(t, err)
	require.Equal(t, first, again, "a refresh that changes nothing keeps the version")

	hold, n, err := s.Answer(sessionOffer(t, SendOnly), SendRecv)
	require.NoError(t, err)
	require.Equal(t, "o=callpark 100 101 IN IP4 127.0.0.1", originLine(t, hold))
	require.Equal(t, RecvOnly, n.Direction)
	require.True(t, n.RemoteHold)
	require.Equal(t, hold, s.Last())

	o, err := s.Offer(SendRecv, PCMA)
	require.NoError(t, err)
	require.Equal(t, "o=callpark 100 102 IN IP4 127.0.0.1", originLine(t, o.SDP()), "an offer after an answer is a new version")
	require.Equal(t, o.SDP(), s.Last())

	_, _, err = s.Answer(&RemoteMedia{}, SendRecv)
	require.Error(t, err)
	require.Equal(t, o.SDP(), s.Last(), "a failed answer changes nothing")
}

func TestSessionFirstOfferKeepsItsVersion(t *testing.T) {
	s := NewSession(LocalMedia{Addr: netip.MustParseAddrPort("127.0.0.1:5000")})
	o, err := s.Offer(SendRecv)
	require.NoError(t, err)
	fields := strings.Fields(originLine(t, o.SDP()))
	require.Equal(t, fields[1], fields[2], "id from the clock, version = id")
	require.NotEqual(t, "0", fields[1])
}

// Another node continues a leg from its Origin: same id, the next version,
// its own address.
func TestSessionOriginContinuesElsewhere(t *testing.T) {
	s := NewSession(LocalMedia{Addr: netip.MustParseAddrPort("127.0.0.1:5000"), SessionID: 100})
	_, _, err := s.Answer(sessionOffer(t, SendRecv), SendRecv)
	require.NoError(t, err)
	_, _, err = s.Answer(sessionOffer(t, SendOnly), SendRecv)
	require.NoError(t, err)
	id, version := s.Origin()
	require.Equal(t, uint64(100), id)
	require.Equal(t, uint64(101), version)

	next := NewSession(LocalMedia{Addr: netip.MustParseAddrPort("127.0.0.2:6000"), SessionID: id, SessionVersion: version + 1})
	o, err := next.Offer(SendOnly)
	require.NoError(t, err)
	require.Equal(t, "o=callpark 100 102 IN IP4 127.0.0.2", originLine(t, o.SDP()))
}
