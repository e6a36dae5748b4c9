package park

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
)

// AllowFrom returns a Config.AuthorizeRetrieve that lets a retrieve go ahead
// only when its Source lies in one of prefixes: the usual policy of a park
// server that only the PBX and the office's phones should reach. A request
// whose Source is unknown (zero) is refused. IPv4-mapped IPv6 sources are
// compared as IPv4. With no prefix nobody may retrieve.
func AllowFrom(prefixes ...netip.Prefix) func(context.Context, RetrieveRequest) error {
	allowed := make([]netip.Prefix, len(prefixes))
	for i, p := range prefixes {
		allowed[i] = p.Masked()
	}
	return func(_ context.Context, req RetrieveRequest) error {
		addr := req.Source.Addr().Unmap()
		if !addr.IsValid() {
			return fmt.Errorf("%w: the retrieve's source address is unknown", ErrNotAuthorized)
		}
		for _, p := range allowed {
			if p.Contains(addr) {
				return nil
			}
		}
		return fmt.Errorf("%w: %s is not in %s", ErrNotAuthorized, addr, prefixList(allowed))
	}
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "the allowed sources (none)"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
