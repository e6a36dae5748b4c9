package parktest

import (
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/internal/siptransport"
)

// challenger is a small SIP server for the phone's authentication tests: a
// registrar and a callee behind a digest challenge, checked with
// icholy/digest independently of the phone's code. It records what it
// receives.
type challenger struct {
	uri     string  // the server's sip: URI, with ;transport=tcp over TCP
	contact sip.Uri // the Contact of its 200 to an INVITE

	user, password string
	// inviteCode is the challenge an INVITE gets: 401 or 407 (the default).
	inviteCode int
	// wrongAnswer is what an answer with the wrong password gets: 403 (the
	// default), or 401/407 to challenge again.
	wrongAnswer int
	// staleOnce answers the first right answer with a stale=true challenge,
	// as a server does whose nonce expired meanwhile.
	staleOnce bool

	mu       sync.Mutex
	received []*sip.Request // REGISTERs, INVITEs, ACKs and BYEs, in order
	nonces   map[string]bool
	staled   bool
}

const challengerRealm = "parktest-challenger"

// startChallenger starts c on a loopback port of transport until the test
// ends.
func startChallenger(t *testing.T, transport string, c *challenger) *challenger {
	t.Helper()
	if c.inviteCode == 0 {
		c.inviteCode = sip.StatusProxyAuthRequired
	}
	if c.wrongAnswer == 0 {
		c.wrongAnswer = sip.StatusForbidden
	}
	c.nonces = make(map[string]bool)
	quiet := slog.New(slog.DiscardHandler)
	// The server drains as a Phone does (see Phone.drain), or a request
	// still on its way when the test ends makes sipgo open a socket nothing
	// closes: the ACK of a challenge, sent as the phone's Call returns.
	var draining atomic.Bool // over TCP; the UDP listener drains itself
	readFilter := func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		if draining.Load() {
			return nil, nil
		}
		return data, nil
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("challenger"),
		sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet), sip.WithTransportLayerReadFilter(readFilter)),
	)
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	require.NoError(t, err)
	srv.OnRegister(c.onRegister)
	srv.OnInvite(c.onInvite)
	srv.OnAck(func(req *sip.Request, _ sip.ServerTransaction) { c.record(req) })
	srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		c.record(req)
		_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil))
	})

	// Everything the handlers read is set before serving starts.
	loopback := net.IPv4(127, 0, 0, 1)
	served := make(chan struct{})
	if transport == "tcp" {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: loopback})
		require.NoError(t, err)
		c.uri = "sip:" + l.Addr().String() + ";transport=tcp"
		c.contact = sip.Uri{Scheme: "sip", User: "challenger", Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, UriParams: sip.NewParams()}
		c.contact.UriParams.Add("transport", "tcp")
		go func() {
			defer close(served)
			_ = srv.ServeTCP(l)
		}()
		t.Cleanup(func() {
			draining.Store(true)
			_ = l.Close()
			<-served
			_ = ua.Close()
		})
		return c
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback})
	require.NoError(t, err)
	c.uri = "sip:" + conn.LocalAddr().String()
	c.contact = sip.Uri{Scheme: "sip", User: "challenger", Host: "127.0.0.1", Port: conn.LocalAddr().(*net.UDPAddr).Port}
	udp := siptransport.NewListener(conn)
	go func() {
		defer close(served)
		defer udp.Stopped()
		_ = srv.ServeUDP(udp)
	}()
	select {
	case <-udp.Reading():
	case <-served:
		require.FailNow(t, "challenger stopped serving at start")
	}
	t.Cleanup(func() {
		draining.Store(true)
		udp.Pin(ua.TransportLayer().Pool("udp"), udp.Drain())
		_ = conn.Close()
		<-served
		// Not ua.Close, which would drop the stand-ins from the pool.
		ua.TransactionLayer().Close()
	})
	return c
}

func (c *challenger) record(req *sip.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.received = append(c.received, req.Clone())
}

// requests returns what the server received of method, in order.
func (c *challenger) requests(method sip.RequestMethod) []*sip.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*sip.Request
	for _, r := range c.received {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func (c *challenger) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	c.record(req)
	if !c.authenticate(req, tx, sip.StatusUnauthorized) {
		return
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if ct := req.Contact(); ct != nil {
		res.AppendHeader(ct.Clone())
	}
	_ = tx.Respond(res)
}

func (c *challenger) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	c.record(req)
	if !c.authenticate(req, tx, c.inviteCode) {
		return
	}
	// Port 9 (discard): the tests mute their calls, nothing is sent there.
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n" +
		"m=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", []byte(sdp))
	res.To().Params.Add("tag", "challenger")
	contact := &sip.ContactHeader{Address: *c.contact.Clone()}
	res.AppendHeader(contact)
	res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	_ = tx.Respond(res)
}

// authenticate checks req's answer to a challenge of kind code (401 or
// 407) and, when there is none or it is not right, responds.
func (c *challenger) authenticate(req *sip.Request, tx sip.ServerTransaction, code int) bool {
	challengeName, answerName := "WWW-Authenticate", "Authorization"
	reason := "Unauthorized"
	if code == sip.StatusProxyAuthRequired {
		challengeName, answerName, reason = "Proxy-Authenticate", "Proxy-Authorization", "Proxy Authentication Required"
	}
	challenge := func(stale bool) {
		nonce := newToken()
		c.mu.Lock()
		c.nonces[nonce] = true
		c.mu.Unlock()
		chal := digest.Challenge{Realm: challengerRealm, Nonce: nonce, Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		res.AppendHeader(sip.NewHeader(challengeName, chal.String()))
		_ = tx.Respond(res)
	}
	h := req.GetHeader(answerName)
	if h == nil {
		challenge(false)
		return false
	}
	cred, err := digest.ParseCredentials(h.Value())
	c.mu.Lock()
	known := err == nil && c.nonces[cred.Nonce]
	c.mu.Unlock()
	if !known {
		challenge(false)
		return false
	}
	want, err := digest.Digest(
		&digest.Challenge{Realm: challengerRealm, Nonce: cred.Nonce, Algorithm: "MD5", QOP: []string{"auth"}},
		digest.Options{Method: req.Method.String(), URI: cred.URI, Username: cred.Username, Password: c.password, Count: cred.Nc, Cnonce: cred.Cnonce},
	)
	if err != nil || cred.Username != c.user || cred.Response != want.Response || cred.URI != req.Recipient.String() {
		if c.wrongAnswer == code {
			challenge(false)
		} else {
			_ = tx.Respond(sip.NewResponseFromRequest(req, c.wrongAnswer, "Forbidden", nil))
		}
		return false
	}
	c.mu.Lock()
	stale := c.staleOnce && !c.staled
	c.staled = true
	c.mu.Unlock()
	if stale {
		challenge(true)
		return false
	}
	return true
}

func TestRegisterAnswersChallenge(t *testing.T) {
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			ctx := testContext(t)
			srv := startChallenger(t, transport, &challenger{user: "alice", password: "s3cret"})
			alice := NewPhone(t, PhoneOptions{User: "alice", Transport: transport, Password: "s3cret"})

			res, err := alice.Register(ctx, srv.uri, time.Minute)
			require.NoError(t, err)
			require.Equal(t, sip.StatusOK, res.StatusCode)

			regs := srv.requests(sip.REGISTER)
			require.Len(t, regs, 2, "a challenge, then the answer")
			first, second := regs[0], regs[1]
			require.Nil(t, first.GetHeader("Authorization"))
			require.NotNil(t, second.GetHeader("Authorization"))
			require.Equal(t, first.CallID().Value(), second.CallID().Value())
			require.Equal(t, first.CSeq().SeqNo+1, second.CSeq().SeqNo)
			require.Empty(t, second.Recipient.User, "a REGISTER's Request-URI has no user")
			require.Equal(t, "alice", second.To().Address.User)
			require.Equal(t, "alice", second.From().Address.User)
			require.Equal(t, alice.URI(), second.Contact().Address.String())
			require.Equal(t, "60", second.GetHeader("Expires").Value())

			// A refresh keeps the Call-ID and raises the CSeq (RFC 3261 §10.2).
			_, err = alice.Register(ctx, srv.uri, 1500*time.Millisecond)
			require.NoError(t, err)
			_, err = alice.Register(ctx, srv.uri, 0)
			require.NoError(t, err)
			regs = srv.requests(sip.REGISTER)
			require.Len(t, regs, 6)
			for i := 1; i < len(regs); i++ {
				require.Equal(t, first.CallID().Value(), regs[i].CallID().Value())
				require.Greater(t, regs[i].CSeq().SeqNo, regs[i-1].CSeq().SeqNo)
			}
			require.Equal(t, "2", regs[3].GetHeader("Expires").Value(), "1.5 s rounds up, never to 0")
			require.Equal(t, "0", regs[5].GetHeader("Expires").Value())
		})
	}
}

func TestRegisterFailures(t *testing.T) {
	tests := []struct {
		name         string
		password     string
		wrongAnswer  int
		staleOnce    bool
		wantCode     int
		wantRequests int
	}{
		{name: "no password leaves the challenge", wantCode: 401, wantRequests: 1},
		{name: "wrong password refused", password: "guess", wantCode: 403, wantRequests: 2},
		{name: "wrong password challenged again", password: "guess", wrongAnswer: 401, wantCode: 401, wantRequests: 2},
		{name: "stale nonce answered again", password: "s3cret", staleOnce: true, wantCode: 200, wantRequests: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			srv := startChallenger(t, "udp", &challenger{
				user: "alice", password: "s3cret", wrongAnswer: tt.wrongAnswer, staleOnce: tt.staleOnce,
			})
			alice := NewPhone(t, PhoneOptions{User: "alice", Password: tt.password})
			res, err := alice.Register(ctx, srv.uri, time.Hour)
			if tt.wantCode == 200 {
				require.NoError(t, err)
				require.Equal(t, 200, res.StatusCode)
			} else {
				var se *StatusError
				require.ErrorAs(t, err, &se)
				require.Equal(t, tt.wantCode, se.Code)
				require.Equal(t, sip.REGISTER, se.Method)
			}
			require.Len(t, srv.requests(sip.REGISTER), tt.wantRequests)
		})
	}
}

func TestRegisterRejectsBadArguments(t *testing.T) {
	alice := NewPhone(t, PhoneOptions{User: "alice"})
	tests := []struct {
		name      string
		registrar string
		expires   time.Duration
		wantErr   error
		wantText  string
	}{
		{name: "negative expiry", registrar: "sip:127.0.0.1:5060", expires: -time.Second, wantErr: ErrInvalidOptions, wantText: "expires -1s"},
		{name: "not a sip URI", registrar: "http://127.0.0.1", expires: time.Minute, wantErr: ErrBadTarget, wantText: "scheme"},
		{name: "URI headers", registrar: "sip:127.0.0.1?Subject=x", expires: time.Minute, wantErr: ErrBadTarget, wantText: "URI headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := alice.Register(t.Context(), tt.registrar, tt.expires)
			require.ErrorIs(t, err, tt.wantErr)
			require.ErrorContains(t, err, tt.wantText)
		})
	}
}

func TestCallAnswersChallenge(t *testing.T) {
	for _, transport := range transports {
		for _, code := range []int{sip.StatusProxyAuthRequired, sip.StatusUnauthorized} {
			t.Run(transport+" "+strconv.Itoa(code), func(t *testing.T) {
				ctx := testContext(t)
				srv := startChallenger(t, transport, &challenger{user: "alice", password: "s3cret", inviteCode: code})
				alice := NewPhone(t, PhoneOptions{User: "alice", Transport: transport, Password: "s3cret"})
				answerName := "Proxy-Authorization"
				if code == sip.StatusUnauthorized {
					answerName = "Authorization"
				}

				target := strings.Replace(srv.uri, "sip:", "sip:bob@", 1)
				call, err := alice.Call(ctx, target, CallOptions{Mute: true})
				require.NoError(t, err)

				invites := srv.requests(sip.INVITE)
				require.Len(t, invites, 2, "a challenge, then the answer")
				first, second := invites[0], invites[1]
				require.Nil(t, first.GetHeader(answerName))
				require.NotNil(t, second.GetHeader(answerName))
				require.Equal(t, first.CallID().Value(), second.CallID().Value())
				firstTag, _ := first.From().Params.Get("tag")
				secondTag, _ := second.From().Params.Get("tag")
				require.Equal(t, firstTag, secondTag)
				require.Equal(t, first.CSeq().SeqNo+1, second.CSeq().SeqNo)
				require.Equal(t, second.Body(), first.Body(), "the same offer")
				require.Equal(t, call.CallID(), second.CallID().Value())

				// The ACK of the 2xx carries the INVITE's credentials
				// (RFC 3261 §13.2.2.4). (Over TCP the challenge's ACK
				// shows up too: sipgo ends the server transaction at once
				// there and hands it to OnAck.)
				var ack *sip.Request
				require.Eventually(t, func() bool {
					for _, a := range srv.requests(sip.ACK) {
						if a.CSeq().SeqNo == second.CSeq().SeqNo {
							ack = a
							return true
						}
					}
					return false
				}, testTimeout, 5*time.Millisecond)
				require.Equal(t, second.GetHeader(answerName).Value(), ack.GetHeader(answerName).Value())

				require.NoError(t, call.Hangup(ctx))
				require.Len(t, srv.requests(sip.BYE), 1)
			})
		}
	}
}

func TestCallChallengeFailures(t *testing.T) {
	tests := []struct {
		name         string
		password     string
		wantCode     int
		wantRequests int
	}{
		{name: "no password", wantCode: 407, wantRequests: 1},
		{name: "wrong password", password: "guess", wantCode: 403, wantRequests: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			srv := startChallenger(t, "udp", &challenger{user: "alice", password: "s3cret"})
			alice := NewPhone(t, PhoneOptions{User: "alice", Password: tt.password})
			_, err := alice.Call(ctx, strings.Replace(srv.uri, "sip:", "sip:bob@", 1), CallOptions{Mute: true})
			var se *StatusError
			require.True(t, errors.As(err, &se), "got %v", err)
			require.Equal(t, tt.wantCode, se.Code)
			require.Len(t, srv.requests(sip.INVITE), tt.wantRequests)
		})
	}
}
