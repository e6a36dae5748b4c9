package sipadapter

import (
	"net/netip"

	"github.com/emiago/sipgo"

	"github.com/callpark/callpark/internal/siptransport"
)

// SourceRouter decides where each request of a sipgo client leaves from:
// over UDP from the host's listener, over TCP by a connection to the
// target. sipgo's own WithClientConnectionAddr gets both wrong (a MESSAGE or
// recall rode another phone's TCP connection; an in-dialog BYE left from a
// new socket that outlived the user agent). Close refuses every request
// from then on, with ErrSenderClosed.
type SourceRouter = siptransport.Router

// ErrSenderClosed is what a request gets once its SourceRouter is closed.
var ErrSenderClosed = siptransport.ErrSenderClosed

// RouteSources installs a SourceRouter on client, whose user agent is ua,
// for a host listening on udp over UDP (and TCP on the same port). A host
// that gives its own client to an Engine installs one first; the Server
// does so itself. A host that also serves TLS (EngineConfig.TLSAddr) calls
// its SetTLSAddr, so that requests over TLS name the TLS port in their Via.
func RouteSources(client *sipgo.Client, ua *sipgo.UserAgent, udp netip.AddrPort) *SourceRouter {
	return siptransport.Route(client, ua, udp)
}
