package main

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"
)

// sipTestRequest describes a request as a phone would send it, for
// handlers called without a network.
type sipTestRequest struct {
	method   sip.RequestMethod // REGISTER when empty
	to, from string            // users; from is to when empty
	callID   string            // "call-1" when empty
	cseq     uint32            // 1 when zero
	contacts []string          // Contact header values
	expires  string            // the Expires header; none when empty
	headers  []string          // further "Name: value" lines
}

// requestURI is the Request-URI the request goes to: the registrar for
// REGISTER, the To user at the PBX otherwise.
func (r sipTestRequest) requestURI() string {
	if r.method == "" || r.method == sip.REGISTER {
		return "sip:127.0.0.1:5060"
	}
	return "sip:" + r.to + "@127.0.0.1:5060"
}

// build parses the request from its text, as sipgo would receive it from
// 127.0.0.1:5070 over UDP.
func (r sipTestRequest) build(t *testing.T) *sip.Request {
	t.Helper()
	method := r.method
	if method == "" {
		method = sip.REGISTER
	}
	from, callID, cseq := r.from, r.callID, r.cseq
	if from == "" {
		from = r.to
	}
	if callID == "" {
		callID = "call-1"
	}
	if cseq == 0 {
		cseq = 1
	}
	lines := []string{
		fmt.Sprintf("%s %s SIP/2.0", method, r.requestURI()),
		"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK" + rand.Text(),
		fmt.Sprintf("From: <sip:%s@127.0.0.1>;tag=%s", from, "from-tag"),
		fmt.Sprintf("To: <sip:%s@127.0.0.1>", r.to),
		"Call-ID: " + callID,
		fmt.Sprintf("CSeq: %d %s", cseq, method),
		"Max-Forwards: 70",
	}
	for _, c := range r.contacts {
		lines = append(lines, "Contact: "+c)
	}
	if r.expires != "" {
		lines = append(lines, "Expires: "+r.expires)
	}
	lines = append(lines, r.headers...)
	lines = append(lines, "Content-Length: 0", "", "")
	msg, err := sip.ParseMessage([]byte(strings.Join(lines, "\r\n")))
	require.NoError(t, err)
	req, ok := msg.(*sip.Request)
	require.True(t, ok)
	req.SetSource("127.0.0.1:5070")
	req.SetTransport("UDP")
	return req
}

// authenticateRecorded runs Authenticate without a network and returns what
// it decided and the response it sent, nil if none.
func authenticateRecorded(t *testing.T, a *Authenticator, req *sip.Request) (string, bool, *sip.Response) {
	t.Helper()
	tx := siptest.NewServerTxRecorder(req)
	defer tx.Terminate()
	user, ok := a.Authenticate(req, tx)
	sent := tx.Result()
	if ok {
		require.Empty(t, sent, "a success sends nothing")
		return user, ok, nil
	}
	require.Len(t, sent, 1, "a refusal sends one response")
	return user, ok, sent[0]
}

// challengeOf returns the digest challenge of a 401 or 407.
func challengeOf(t *testing.T, res *sip.Response) *digest.Challenge {
	t.Helper()
	name := "WWW-Authenticate"
	if res.StatusCode == sip.StatusProxyAuthRequired {
		name = "Proxy-Authenticate"
	}
	h := res.GetHeader(name)
	require.NotNil(t, h, "%d without %s", res.StatusCode, name)
	chal, err := digest.ParseChallenge(h.Value())
	require.NoError(t, err)
	return chal
}

// answerOf computes a phone's credentials for the challenge.
func answerOf(t *testing.T, chal *digest.Challenge, r sipTestRequest, user, password string, nc int) *digest.Credentials {
	t.Helper()
	method := r.method
	if method == "" {
		method = sip.REGISTER
	}
	cred, err := digest.Digest(chal, digest.Options{
		Method: string(method), URI: r.requestURI(), Username: user, Password: password, Count: nc,
	})
	require.NoError(t, err)
	return cred
}

// authHeader is the header line carrying cred, named for method.
func authHeader(method sip.RequestMethod, cred *digest.Credentials) string {
	if method == "" || method == sip.REGISTER {
		return "Authorization: " + cred.String()
	}
	return "Proxy-Authorization: " + cred.String()
}

const testRealm = "pbx-test"

func testUsers(t *testing.T) *Users {
	t.Helper()
	u, err := ParseUsers(strings.NewReader("100:pw100\n101:pw101\n"), "test users")
	require.NoError(t, err)
	return u
}

func TestAuthenticateChallenges(t *testing.T) {
	tests := []struct {
		method     sip.RequestMethod
		wantCode   int
		wantHeader string
	}{
		{sip.REGISTER, 401, "WWW-Authenticate"},
		{sip.INVITE, 407, "Proxy-Authenticate"},
		{sip.SUBSCRIBE, 407, "Proxy-Authenticate"},
	}
	for _, tt := range tests {
		t.Run(string(tt.method), func(t *testing.T) {
			a := NewAuthenticator(testUsers(t), testRealm, nil)
			r := sipTestRequest{method: tt.method, to: "100"}
			_, ok, res := authenticateRecorded(t, a, r.build(t))
			require.False(t, ok)
			require.Equal(t, tt.wantCode, res.StatusCode)
			require.NotNil(t, res.GetHeader(tt.wantHeader))
			chal := challengeOf(t, res)
			require.Equal(t, testRealm, chal.Realm)
			require.Equal(t, "MD5", chal.Algorithm)
			require.Equal(t, []string{"auth"}, chal.QOP)
			require.False(t, chal.Stale)
			require.NotEmpty(t, chal.Nonce)

			_, _, again := authenticateRecorded(t, a, r.build(t))
			require.NotEqual(t, chal.Nonce, challengeOf(t, again).Nonce, "every challenge has a fresh nonce")
		})
	}
}

func TestAuthenticateAnswers(t *testing.T) {
	tests := []struct {
		name      string
		method    sip.RequestMethod
		from      string // the From user; "100" when empty
		user      string // who answers; "100" when empty
		password  string // "pw100" when empty
		noQOP     bool   // answer as an RFC 2069 phone, without qop
		forged    bool   // answer a nonce the authenticator never issued
		change    func(*digest.Credentials)
		header    string // the answer's header name, when not the right one
		wantUser  string // on success
		wantCode  int    // on refusal
		wantStale bool
	}{
		{name: "REGISTER, right password", wantUser: "100"},
		{name: "INVITE, right password", method: sip.INVITE, wantUser: "100"},
		{name: "INVITE from another From user", method: sip.INVITE, from: "101", wantUser: "100"},
		{name: "answer without qop", noQOP: true, wantUser: "100"},
		{name: "uppercase response", change: func(c *digest.Credentials) { c.Response = strings.ToUpper(c.Response) }, wantUser: "100"},
		{name: "second user", from: "101", user: "101", password: "pw101", wantUser: "101"},
		{name: "wrong password", password: "guess", wantCode: 403},
		{name: "wrong password on INVITE", method: sip.INVITE, password: "guess", wantCode: 403},
		{name: "unknown user", from: "555", user: "555", password: "x", wantCode: 403},
		{name: "REGISTER From another user", from: "101", wantCode: 403},
		{name: "nonce never issued, right password", forged: true, wantCode: 401, wantStale: true},
		{name: "nonce never issued, wrong password", password: "guess", forged: true, wantCode: 401},
		{name: "credentials for another realm", change: func(c *digest.Credentials) { c.Realm = "elsewhere" }, wantCode: 401},
		{name: "algorithm not offered", change: func(c *digest.Credentials) { c.Algorithm = "SHA-256" }, wantCode: 401},
		{name: "qop not offered", change: func(c *digest.Credentials) { c.QOP = "auth-int" }, wantCode: 401},
		{name: "qop without a nonce count", change: func(c *digest.Credentials) { c.Nc = 0 }, wantCode: 401},
		{name: "userhash", change: func(c *digest.Credentials) { c.Userhash = true }, wantCode: 401},
		{name: "answer in the proxy header on REGISTER", header: "Proxy-Authorization", wantCode: 401},
		{name: "answer in the registrar header on INVITE", method: sip.INVITE, header: "Authorization", wantCode: 407},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := NewAuthenticator(testUsers(t), testRealm, nil)
			from, user, password := cmp.Or(tt.from, "100"), cmp.Or(tt.user, "100"), cmp.Or(tt.password, "pw100")
			r := sipTestRequest{method: tt.method, to: "100", from: from}
			_, ok, res := authenticateRecorded(t, a, r.build(t))
			require.False(t, ok)
			chal := challengeOf(t, res)
			if tt.noQOP {
				chal.QOP = nil
			}
			if tt.forged {
				chal.Nonce = "forged"
			}
			cred := answerOf(t, chal, r, user, password, 1)
			if tt.change != nil {
				tt.change(cred)
			}
			line := authHeader(tt.method, cred)
			if tt.header != "" {
				line = tt.header + ": " + cred.String()
			}
			r.cseq, r.headers = 2, []string{line}

			got, ok, res := authenticateRecorded(t, a, r.build(t))
			if tt.wantCode == 0 {
				require.True(t, ok, "refused with %v", res)
				require.Equal(t, tt.wantUser, got)
				return
			}
			require.False(t, ok)
			require.Empty(t, got)
			require.Equal(t, tt.wantCode, res.StatusCode)
			if tt.wantCode == 401 || tt.wantCode == 407 {
				require.Equal(t, tt.wantStale, challengeOf(t, res).Stale)
			}
		})
	}
}

func TestAuthenticateNonceCount(t *testing.T) {
	a := NewAuthenticator(testUsers(t), testRealm, nil)
	r := sipTestRequest{to: "100"}
	_, _, res := authenticateRecorded(t, a, r.build(t))
	chal := challengeOf(t, res)

	steps := []struct {
		nc        int
		wantOK    bool
		wantStale bool
	}{
		{nc: 1, wantOK: true},
		{nc: 1, wantStale: true}, // a replay
		{nc: 2, wantOK: true},
		{nc: 7, wantOK: true}, // counts may skip
		{nc: 3, wantStale: true},
		{nc: 7, wantStale: true},
		{nc: 8, wantOK: true},
	}
	for i, step := range steps {
		r.cseq = uint32(2 + i)
		r.headers = []string{authHeader(sip.REGISTER, answerOf(t, chal, r, "100", "pw100", step.nc))}
		user, ok, res := authenticateRecorded(t, a, r.build(t))
		require.Equal(t, step.wantOK, ok, "step %d, nc %d", i, step.nc)
		if step.wantOK {
			require.Equal(t, "100", user)
			continue
		}
		require.Equal(t, 401, res.StatusCode)
		require.Equal(t, step.wantStale, challengeOf(t, res).Stale)
	}
}

func TestAuthenticateWithoutQOPUsesTheNonceOnce(t *testing.T) {
	a := NewAuthenticator(testUsers(t), testRealm, nil)
	r := sipTestRequest{to: "100"}
	_, _, res := authenticateRecorded(t, a, r.build(t))
	chal := challengeOf(t, res)
	chal.QOP = nil
	r.cseq, r.headers = 2, []string{authHeader(sip.REGISTER, answerOf(t, chal, r, "100", "pw100", 0))}

	_, ok, _ := authenticateRecorded(t, a, r.build(t))
	require.True(t, ok)
	r.cseq = 3
	_, ok, res = authenticateRecorded(t, a, r.build(t))
	require.False(t, ok, "without a nonce count, only a fresh nonce stops a replay")
	require.True(t, challengeOf(t, res).Stale)
}

func TestAuthenticateOpenUsers(t *testing.T) {
	a := NewAuthenticator(OpenUsers(), testRealm, nil)
	tests := []struct {
		method   sip.RequestMethod
		from     string
		wantOK   bool
		wantCode int
	}{
		{method: sip.REGISTER, from: "150", wantOK: true},
		{method: sip.INVITE, from: "199", wantOK: true},
		{method: sip.REGISTER, from: "200", wantCode: 403},
		{method: sip.INVITE, from: "alice", wantCode: 403},
	}
	for _, tt := range tests {
		t.Run(string(tt.method)+" from "+tt.from, func(t *testing.T) {
			user, ok, res := authenticateRecorded(t, a, sipTestRequest{method: tt.method, to: "150", from: tt.from}.build(t))
			require.Equal(t, tt.wantOK, ok)
			if tt.wantOK {
				require.Equal(t, tt.from, user)
				return
			}
			require.Equal(t, tt.wantCode, res.StatusCode)
		})
	}
}

func TestNonceExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := NewAuthenticator(testUsers(t), testRealm, nil)
		r := sipTestRequest{to: "100"}
		answerAfter := func(wait time.Duration, cseq uint32) (bool, *sip.Response) {
			r.cseq, r.headers = cseq, nil
			_, _, res := authenticateRecorded(t, a, r.build(t))
			time.Sleep(wait)
			r.cseq, r.headers = cseq+1, []string{authHeader(sip.REGISTER, answerOf(t, challengeOf(t, res), r, "100", "pw100", 1))}
			_, ok, res := authenticateRecorded(t, a, r.build(t))
			return ok, res
		}

		ok, _ := answerAfter(nonceLifetime-time.Second, 1)
		require.True(t, ok, "a nonce is good for its whole lifetime")

		ok, res := answerAfter(nonceLifetime, 3)
		require.False(t, ok)
		require.Equal(t, 401, res.StatusCode)
		require.True(t, challengeOf(t, res).Stale, "the right password on an expired nonce is stale, not wrong")
		require.Equal(t, 1, a.nonceCount(), "expired nonces are forgotten; the fresh one is kept")

		time.Sleep(nonceLifetime)
		a.newNonce()
		require.Equal(t, 1, a.nonceCount())
	})
}

func TestNoncesAreBounded(t *testing.T) {
	a := NewAuthenticator(testUsers(t), testRealm, nil)
	first := a.newNonce()
	var last string
	for range maxNonces + 10 {
		last = a.newNonce()
	}
	require.Equal(t, maxNonces, a.nonceCount())
	require.LessOrEqual(t, len(a.order), maxNonces)
	require.Equal(t, nonceUnknown, a.useNonce(&digest.Credentials{Nonce: first, QOP: "auth", Nc: 1}, false), "the oldest was evicted")
	require.Equal(t, nonceFresh, a.useNonce(&digest.Credentials{Nonce: last, QOP: "auth", Nc: 1}, false))
}
