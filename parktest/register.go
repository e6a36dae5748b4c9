package parktest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// registration is the phone's REGISTER state towards one registrar: RFC 3261
// §10.2 wants every REGISTER a UA sends a registrar to share one Call-ID with
// a rising CSeq, which the registrar uses to refuse updates out of order.
type registration struct {
	callID string
	seq    uint32
}

// maxAuthRetries bounds how often one request is resent with credentials:
// once for the first challenge, once more if that answer came back stale.
const maxAuthRetries = 2

// Register binds the phone's contact at registrar (a sip: URI of the
// registrar, e.g. "sip:127.0.0.1:5060") for the phone's user with the given
// expiry, answering a digest challenge with PhoneOptions.Password. It returns
// the 200 OK; a non-2xx final is a *StatusError.
//
// The extension is PhoneOptions.User: To and From are sip:USER@ the
// registrar's host and port, the Contact is the phone's own URI, and the
// expiry is sent in an Expires header, rounded up to whole seconds. Zero
// unregisters: it removes the phone's own contact and leaves the extension's
// other phones registered. A 401 or 407 is answered with
// PhoneOptions.Password (digest MD5, RFC 2617) in a new REGISTER with the next
// CSeq; a second challenge is answered only if it says stale=true. Without a
// password the challenge comes back as a *StatusError. The phone neither
// refreshes its registration nor removes it on Close.
func (p *Phone) Register(ctx context.Context, registrar string, expires time.Duration) (*sip.Response, error) {
	if expires < 0 {
		return nil, fmt.Errorf("%w: Register expires %v is negative", ErrInvalidOptions, expires)
	}
	u, headers, err := parseTarget(registrar)
	if err != nil {
		return nil, err
	}
	if len(headers) > 0 {
		return nil, fmt.Errorf("%w: registrar %q: a REGISTER takes no URI headers", ErrBadTarget, registrar)
	}
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	// §10.2: the Request-URI names the registrar's domain, without a user.
	u.User, u.Password = "", ""
	aor := sip.Uri{Scheme: "sip", User: p.user, Host: u.Host, Port: u.Port}
	seconds := int64((expires + time.Second - 1) / time.Second)

	var auth sip.Header
	for retry := 0; ; retry++ {
		req := p.registerRequest(u, aor, seconds, auth)
		res, err := p.do(ctx, req)
		if err != nil {
			return nil, err
		}
		if res.IsSuccess() {
			return res, nil
		}
		if !isChallenge(res) || p.password == "" || retry == maxAuthRetries || (retry > 0 && !staleChallenge(res)) {
			return nil, statusError(req, res)
		}
		if auth, err = p.authorization(req, res); err != nil {
			return nil, err
		}
	}
}

// registerRequest builds the next REGISTER to registrar, under the Call-ID
// the phone uses there and with the next CSeq.
func (p *Phone) registerRequest(registrar, aor sip.Uri, expires int64, auth sip.Header) *sip.Request {
	key := registrar.String()
	p.mu.Lock()
	r := p.registrations[key]
	if r == nil {
		r = &registration{callID: newToken(), seq: firstSeq()}
		p.registrations[key] = r
	}
	r.seq++
	callID, seq := r.callID, r.seq
	p.mu.Unlock()

	req := sip.NewRequest(sip.REGISTER, *registrar.Clone())
	from := &sip.FromHeader{Address: *aor.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", newToken())
	to := &sip.ToHeader{Address: *aor.Clone(), Params: sip.NewParams()}
	callIDHeader := sip.CallIDHeader(callID)
	maxForwards := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callIDHeader)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: sip.REGISTER})
	req.AppendHeader(&maxForwards)
	req.AppendHeader(p.contact.Clone())
	req.AppendHeader(sip.NewHeader("Expires", strconv.FormatInt(expires, 10)))
	if auth != nil {
		req.AppendHeader(sip.HeaderClone(auth))
	}
	req.SetTransport(p.transport)
	req.SetBody(nil)
	return req
}

// isChallenge reports whether res asks for credentials: 401 from a
// registrar or user agent, 407 from a proxy or a PBX acting as one.
func isChallenge(res *sip.Response) bool {
	return res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired
}

// challengeHeaders returns the header a challenge res carries and the one
// its answer goes in.
func challengeHeaders(res *sip.Response) (challenge, answer string) {
	if res.StatusCode == sip.StatusProxyAuthRequired {
		return "Proxy-Authenticate", "Proxy-Authorization"
	}
	return "WWW-Authenticate", "Authorization"
}

// staleChallenge reports whether a challenge says the nonce of our answer had
// expired but the password was right: worth answering again.
func staleChallenge(res *sip.Response) bool {
	name, _ := challengeHeaders(res)
	for _, h := range res.GetHeaders(name) {
		if chal, err := digest.ParseChallenge(h.Value()); err == nil && chal.Stale {
			return true
		}
	}
	return false
}

// errNoUsableChallenge reports a 401 or 407 whose challenges the phone
// cannot answer (no digest, an unknown algorithm or qop).
var errNoUsableChallenge = errors.New("no digest challenge the phone can answer")

// authorization answers the challenge in res to req with the phone's user
// and password: the Authorization (401) or Proxy-Authorization (407) header
// for the request sent again. A response it cannot answer comes back as the
// *StatusError of res, wrapping why.
func (p *Phone) authorization(req *sip.Request, res *sip.Response) (sip.Header, error) {
	name, answer := challengeHeaders(res)
	for _, h := range res.GetHeaders(name) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil || !digest.CanDigest(chal) {
			continue
		}
		cred, err := digest.Digest(chal, digest.Options{
			Method:   req.Method.String(),
			URI:      req.Recipient.String(),
			Username: p.user,
			Password: p.password,
		})
		if err != nil {
			continue
		}
		return sip.NewHeader(answer, cred.String()), nil
	}
	return nil, fmt.Errorf("%w: %w", statusError(req, res), errNoUsableChallenge)
}
