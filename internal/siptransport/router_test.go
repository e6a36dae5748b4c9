package siptransport

import (
	"context"
	"net/netip"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// Once closed, the router refuses requests with an error callers can test,
// rather than letting sipgo bind a socket that would outlive the user agent.
func TestSourceRouterClosedRefuses(t *testing.T) {
	ua, err := sipgo.NewUA()
	require.NoError(t, err)
	t.Cleanup(func() { ua.Close() })
	client, err := sipgo.NewClient(ua)
	require.NoError(t, err)
	r := Route(client, ua, netip.MustParseAddrPort("127.0.0.1:5060"))
	r.Close()
	for _, method := range []sip.RequestMethod{sip.OPTIONS, sip.ACK} {
		req := sip.NewRequest(method, sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 9})
		if method == sip.ACK {
			err = client.WriteRequest(req)
		} else {
			_, err = client.Do(context.Background(), req)
		}
		require.ErrorIs(t, err, ErrSenderClosed, "%s after Close", method)
	}
}
