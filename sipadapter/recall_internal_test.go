package sipadapter

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// Which recall targets are the server itself: its IP and port, or no port
// while it listens on SIP's default 5060 (linphone's sip:lp@127.0.0.1).
func TestIsOwnAddress(t *testing.T) {
	uri := func(s string) sip.Uri {
		var u sip.Uri
		require.NoError(t, sip.ParseUri(s, &u))
		return u
	}
	on5060 := &Engine{addr: netip.MustParseAddrPort("127.0.0.1:5060")}
	elsewhere := &Engine{addr: netip.MustParseAddrPort("127.0.0.1:5070")}
	for _, tc := range []struct {
		e    *Engine
		t    Target
		self bool
	}{
		{on5060, Target{URI: uri("sip:lp@127.0.0.1")}, true},
		{on5060, Target{URI: uri("sip:lp@127.0.0.1:5060")}, true},
		{on5060, Target{URI: uri("sip:lp@127.0.0.1:5062")}, false},
		{on5060, Target{URI: uri("sip:lp@127.0.0.2")}, false},
		{on5060, Target{URI: uri("sip:lp@pbx.example.com")}, false},
		{elsewhere, Target{URI: uri("sip:lp@127.0.0.1")}, false},
		{elsewhere, Target{URI: uri("sip:lp@127.0.0.1:5070")}, true},
		// Through a proxy, what counts is where the request goes.
		{on5060, Target{URI: uri("sip:lp@127.0.0.1"), route: &sip.Uri{Host: "10.0.0.5", Port: 5060}}, false},
		{elsewhere, Target{URI: uri("sip:lp@example.com"), route: &sip.Uri{Host: "127.0.0.1", Port: 5070}}, true},
		// Sent straight to a device: what counts is the device.
		{on5060, Target{URI: uri("sip:lp@127.0.0.1"), dest: &sip.Uri{Host: "127.0.0.1", Port: 35081}}, false},
	} {
		require.Equal(t, tc.self, tc.e.isOwnAddress(tc.t), "%s via %v, server %s", tc.t.URI.String(), tc.t.route, tc.e.addr)
	}
}
