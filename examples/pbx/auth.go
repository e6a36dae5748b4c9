package main

import (
	"crypto/rand"
	"crypto/subtle"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// nonceLifetime is how long a challenge's nonce may be answered and reused
// (with a rising nonce count). A phone that comes back later is challenged
// again with stale=true, which it answers without asking its user.
const nonceLifetime = 5 * time.Minute

// maxNonces bounds the nonces kept at once: a flood of unanswered requests
// evicts the oldest instead of growing memory. At one challenge per request
// it covers far more phones than the example serves within nonceLifetime.
const maxNonces = 10000

// Authenticator checks SIP digest credentials (RFC 2617, RFC 3261 §22: MD5,
// qop=auth or none) against a Users directory. It issues its own nonces and
// remembers them, with the nonce count each has reached, for nonceLifetime,
// so that an answer is accepted only once. It is safe for concurrent use.
type Authenticator struct {
	users *Users
	realm string
	log   *slog.Logger

	mu     sync.Mutex
	nonces map[string]*nonceState
	order  []string // nonces oldest first, for expiry and eviction
}

// nonceState is what the authenticator remembers of a nonce it issued.
type nonceState struct {
	expires time.Time
	// lastCount is the highest nonce count accepted (RFC 2617 §3.2.2): a
	// request must bring a higher one, so a captured request cannot be
	// replayed. A nonce answered without qop has no count and is used up by
	// its one success.
	lastCount int
	usedUp    bool
}

// NewAuthenticator returns an authenticator for users in realm; log may be
// nil to stay silent.
func NewAuthenticator(users *Users, realm string, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{
		users:  users,
		realm:  realm,
		log:    log,
		nonces: make(map[string]*nonceState),
	}
}

// Authenticate checks req's credentials. When users need no authentication
// it returns the From user, which must exist (403 Forbidden otherwise).
//
// Otherwise a request with no credentials for the realm, or with a stale or
// unusable nonce, is challenged: 401 with WWW-Authenticate for REGISTER, 407
// with Proxy-Authenticate for other methods, carrying a fresh nonce (stale=true
// when the old nonce was answered with the right password). An unknown user, a
// wrong password for a live nonce and, on REGISTER, an authenticated user other
// than the From user get 403. In all these cases Authenticate has responded
// and returns ok=false; on success it returns the authenticated user and has
// sent nothing. Never call it for ACK or CANCEL, which cannot be challenged.
func (a *Authenticator) Authenticate(req *sip.Request, tx sip.ServerTransaction) (user string, ok bool) {
	fromUser := ""
	if from := req.From(); from != nil {
		fromUser = from.Address.User
	}
	if !a.users.AuthRequired() {
		if !a.users.Exists(fromUser) {
			a.log.Info("auth: refused, unknown From user", "method", req.Method, "from", fromUser, "source", req.Source())
			a.respond(req, tx, sip.StatusForbidden, "Forbidden")
			return "", false
		}
		return fromUser, true
	}

	cred := a.credentials(req)
	if cred == nil {
		a.challenge(req, tx, false)
		return "", false
	}
	password, known := a.users.Password(cred.Username)
	if !known {
		a.log.Info("auth: refused, unknown user", "method", req.Method, "user", cred.Username, "source", req.Source())
		a.respond(req, tx, sip.StatusForbidden, "Forbidden")
		return "", false
	}
	if !usableCredentials(cred) {
		a.log.Debug("auth: credentials not usable, challenging", "method", req.Method, "user", cred.Username,
			"algorithm", cred.Algorithm, "qop", cred.QOP)
		a.challenge(req, tx, false)
		return "", false
	}
	right := a.rightResponse(req, cred, password)
	switch a.useNonce(cred, right) {
	case nonceUnknown:
		// Expired, evicted, used up or never ours: a phone that knows the
		// password only needs a fresh nonce (stale=true); anyone else gets a
		// plain challenge, and 403 if its next answer is wrong too.
		a.log.Debug("auth: nonce not usable, challenging", "method", req.Method, "user", cred.Username, "stale", right)
		a.challenge(req, tx, right)
		return "", false
	case nonceReplayed:
		a.log.Info("auth: nonce count not above the last, challenging", "method", req.Method, "user", cred.Username,
			"nc", cred.Nc, "source", req.Source())
		a.challenge(req, tx, right)
		return "", false
	}
	if !right {
		a.log.Info("auth: refused, wrong password", "method", req.Method, "user", cred.Username, "source", req.Source())
		a.respond(req, tx, sip.StatusForbidden, "Forbidden")
		return "", false
	}
	if req.Method == sip.REGISTER && cred.Username != fromUser {
		a.log.Info("auth: refused, REGISTER From another user", "user", cred.Username, "from", fromUser, "source", req.Source())
		a.respond(req, tx, sip.StatusForbidden, "Forbidden")
		return "", false
	}
	return cred.Username, true
}

// authHeaders returns the header a challenge goes in and the one its answer
// comes back in: REGISTER is answered by the registrar itself (401,
// RFC 3261 §22.2), everything else by the PBX acting as a proxy would (407,
// §22.3), which is what phones expect of a PBX.
func authHeaders(method sip.RequestMethod) (code int, reason, challenge, answer string) {
	if method == sip.REGISTER {
		return sip.StatusUnauthorized, "Unauthorized", "WWW-Authenticate", "Authorization"
	}
	return sip.StatusProxyAuthRequired, "Proxy Authentication Required", "Proxy-Authenticate", "Proxy-Authorization"
}

// credentials returns the request's digest credentials for our realm, nil
// when there are none (or none that parse): a phone may carry credentials
// for other realms too.
func (a *Authenticator) credentials(req *sip.Request) *digest.Credentials {
	_, _, _, answer := authHeaders(req.Method)
	for _, h := range req.GetHeaders(answer) {
		cred, err := digest.ParseCredentials(h.Value())
		if err != nil {
			a.log.Debug("auth: unparsable credentials", "header", answer, "error", err)
			continue
		}
		if cred.Realm == a.realm {
			return cred
		}
	}
	return nil
}

// usableCredentials reports whether cred is an answer this authenticator
// can check: MD5, qop=auth with its cnonce and count, or no qop at all.
func usableCredentials(cred *digest.Credentials) bool {
	if cred.Nonce == "" || cred.Response == "" || cred.Userhash {
		return false
	}
	if cred.Algorithm != "" && !strings.EqualFold(cred.Algorithm, "MD5") {
		return false
	}
	switch cred.QOP {
	case "":
		return true
	case "auth":
		return cred.Cnonce != "" && cred.Nc > 0
	}
	return false
}

// rightResponse reports whether cred's response is the one password gives
// for req, by computing the digest the way the phone did. The digest's uri
// is taken as the phone wrote it rather than compared with the
// Request-URI: phones differ in which form they hash, the response covers
// the one they chose, and the nonce count already stops a replay.
func (a *Authenticator) rightResponse(req *sip.Request, cred *digest.Credentials, password string) bool {
	chal := &digest.Challenge{Realm: a.realm, Nonce: cred.Nonce, Opaque: cred.Opaque, Algorithm: cred.Algorithm}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(chal, digest.Options{
		Method:   req.Method.String(),
		URI:      cred.URI,
		Username: cred.Username,
		Password: password,
		Count:    cred.Nc,
		Cnonce:   cred.Cnonce,
	})
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want.Response), []byte(strings.ToLower(cred.Response))) == 1
}

// nonceVerdict is what useNonce found.
type nonceVerdict int

const (
	nonceFresh    nonceVerdict = iota // live, and the count is new
	nonceUnknown                      // expired, evicted, used up or never issued
	nonceReplayed                     // live, but the count is not above the last
)

// useNonce checks cred's nonce and, when accept (the response was right),
// records its count so that it cannot be accepted again.
func (a *Authenticator) useNonce(cred *digest.Credentials, accept bool) nonceVerdict {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	st := a.nonces[cred.Nonce]
	if st == nil || st.usedUp || !now.Before(st.expires) {
		return nonceUnknown
	}
	if cred.QOP != "" && cred.Nc <= st.lastCount {
		return nonceReplayed
	}
	if accept {
		if cred.QOP == "" {
			st.usedUp = true
		} else {
			st.lastCount = cred.Nc
		}
	}
	return nonceFresh
}

// challenge responds 401 or 407 with a fresh nonce.
func (a *Authenticator) challenge(req *sip.Request, tx sip.ServerTransaction, stale bool) {
	code, reason, header, _ := authHeaders(req.Method)
	chal := digest.Challenge{
		Realm:     a.realm,
		Nonce:     a.newNonce(),
		Algorithm: "MD5",
		QOP:       []string{"auth"},
		Stale:     stale,
	}
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	res.AppendHeader(sip.NewHeader(header, chal.String()))
	if err := tx.Respond(res); err != nil {
		a.log.Debug("auth: challenge not sent", "method", req.Method, "error", err)
	}
}

// newNonce issues a random nonce and remembers it until it expires or
// maxNonces newer ones push it out.
func (a *Authenticator) newNonce() string {
	nonce := rand.Text()
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	for len(a.order) >= maxNonces {
		a.dropOldestLocked()
	}
	a.nonces[nonce] = &nonceState{expires: now.Add(nonceLifetime)}
	a.order = append(a.order, nonce)
	return nonce
}

// expireLocked forgets the nonces that have expired. Every nonce lives
// nonceLifetime, so they expire in the order they were issued.
func (a *Authenticator) expireLocked(now time.Time) {
	for len(a.order) > 0 && !now.Before(a.nonces[a.order[0]].expires) {
		a.dropOldestLocked()
	}
}

// dropOldestLocked forgets the oldest nonce. Slicing the queue's head off
// costs nothing; append copies only the live tail when it grows the array,
// so the queue stays within twice maxNonces.
func (a *Authenticator) dropOldestLocked() {
	delete(a.nonces, a.order[0])
	a.order[0] = ""
	a.order = a.order[1:]
}

// respond sends a final response with no body; a failure means the phone
// went away.
func (a *Authenticator) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string) {
	if err := tx.Respond(sip.NewResponseFromRequest(req, code, reason, nil)); err != nil {
		a.log.Debug("auth: response not sent", "method", req.Method, "status", code, "error", err)
	}
}

// nonceCount returns how many nonces are remembered, for tests.
func (a *Authenticator) nonceCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.nonces)
}
