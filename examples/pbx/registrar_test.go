package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/parktest"
)

// registerRecorded runs ServeRegister without a network and returns its
// response.
func registerRecorded(t *testing.T, reg *Registrar, r sipTestRequest) *sip.Response {
	t.Helper()
	req := r.build(t)
	tx := siptest.NewServerTxRecorder(req)
	defer tx.Terminate()
	reg.ServeRegister(req, tx)
	sent := tx.Result()
	require.Len(t, sent, 1, "one final response")
	return sent[0]
}

// contactsOf lists a response's Contacts as "URI expires=N", in order.
func contactsOf(res *sip.Response) []string {
	var out []string
	for _, h := range res.GetHeaders("Contact") {
		c := h.(*sip.ContactHeader)
		expires, _ := c.Params.Get("expires")
		out = append(out, c.Address.String()+" expires="+expires)
	}
	return out
}

const (
	contactA = "<sip:100@10.0.0.1:5070>"
	contactB = "<sip:100@10.0.0.2:5070>"
	contactC = "<sip:100@10.0.0.3:5070>"
	uriA     = "sip:100@10.0.0.1:5070"
	uriB     = "sip:100@10.0.0.2:5070"
	uriC     = "sip:100@10.0.0.3:5070"
)

// registerStep is one REGISTER of a scenario: sent after wait, answered
// with wantCode and, on 200, listing wantContacts.
type registerStep struct {
	wait         time.Duration
	req          sipTestRequest
	wantCode     int
	wantContacts []string
}

func TestServeRegister(t *testing.T) {
	tests := []struct {
		name  string
		steps []registerStep
	}{
		{name: "default expiry", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}}, wantCode: 200, wantContacts: []string{uriA + " expires=3600"}},
		}},
		{name: "Expires header", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}, expires: "120"}, wantCode: 200, wantContacts: []string{uriA + " expires=120"}},
		}},
		{name: "contact parameter beats the header", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA + ";expires=300", contactB}, expires: "120"}, wantCode: 200,
				wantContacts: []string{uriA + " expires=300", uriB + " expires=120"}},
		}},
		{name: "below the minimum is 423", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}, expires: "59"}, wantCode: 423},
			{req: sipTestRequest{cseq: 2, contacts: []string{contactA}, expires: "60"}, wantCode: 200, wantContacts: []string{uriA + " expires=60"}},
		}},
		{name: "one contact too brief fails the whole request", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA, contactB + ";expires=10"}}, wantCode: 423},
			{req: sipTestRequest{cseq: 2}, wantCode: 200},
		}},
		{name: "above the maximum is capped", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}, expires: "99999999999"}, wantCode: 200, wantContacts: []string{uriA + " expires=7200"}},
		}},
		{name: "several contacts, newest first", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA, contactB}}, wantCode: 200,
				wantContacts: []string{uriA + " expires=3600", uriB + " expires=3600"}},
			{wait: 10 * time.Second, req: sipTestRequest{callID: "other-phone", contacts: []string{contactC}, expires: "600"}, wantCode: 200,
				wantContacts: []string{uriC + " expires=600", uriA + " expires=3590", uriB + " expires=3590"}},
		}},
		{name: "a refresh updates the binding", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}}, wantCode: 200, wantContacts: []string{uriA + " expires=3600"}},
			{wait: time.Minute, req: sipTestRequest{cseq: 2, contacts: []string{contactA}, expires: "600"}, wantCode: 200,
				wantContacts: []string{uriA + " expires=600"}},
		}},
		{name: "same Call-ID with a CSeq not above is out of order", steps: []registerStep{
			{req: sipTestRequest{cseq: 5, contacts: []string{contactA}, expires: "120"}, wantCode: 200},
			{req: sipTestRequest{cseq: 5, contacts: []string{contactA}, expires: "0"}, wantCode: 500},
			{req: sipTestRequest{cseq: 4, contacts: []string{contactA}, expires: "600"}, wantCode: 500},
			{req: sipTestRequest{cseq: 6}, wantCode: 200, wantContacts: []string{uriA + " expires=120"}},
		}},
		{name: "another Call-ID may have a lower CSeq", steps: []registerStep{
			{req: sipTestRequest{cseq: 5, contacts: []string{contactA}}, wantCode: 200},
			{req: sipTestRequest{callID: "call-2", cseq: 1, contacts: []string{contactA}, expires: "120"}, wantCode: 200,
				wantContacts: []string{uriA + " expires=120"}},
		}},
		{name: "expires 0 removes one contact", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA, contactB}}, wantCode: 200},
			{req: sipTestRequest{cseq: 2, contacts: []string{contactA + ";expires=0"}}, wantCode: 200, wantContacts: []string{uriB + " expires=3600"}},
			{req: sipTestRequest{cseq: 3, contacts: []string{contactB}, expires: "0"}, wantCode: 200},
		}},
		{name: "removing an unknown contact is fine", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}, expires: "0"}, wantCode: 200},
		}},
		{name: "wildcard removes all", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA, contactB}}, wantCode: 200},
			{req: sipTestRequest{callID: "other", contacts: []string{contactC}}, wantCode: 200},
			{req: sipTestRequest{cseq: 2, contacts: []string{"*"}, expires: "0"}, wantCode: 200},
			{req: sipTestRequest{cseq: 3}, wantCode: 200},
		}},
		{name: "wildcard out of order", steps: []registerStep{
			{req: sipTestRequest{cseq: 2, contacts: []string{contactA}}, wantCode: 200},
			{req: sipTestRequest{cseq: 2, contacts: []string{"*"}, expires: "0"}, wantCode: 500},
			{req: sipTestRequest{cseq: 3}, wantCode: 200, wantContacts: []string{uriA + " expires=3600"}},
		}},
		{name: "wildcard needs Expires 0", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{"*"}, expires: "60"}, wantCode: 400},
			{req: sipTestRequest{contacts: []string{"*"}}, wantCode: 400},
		}},
		{name: "wildcard must be alone", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{"*", contactA}, expires: "0"}, wantCode: 400},
		}},
		{name: "no Contact is a query", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}}, wantCode: 200},
			{wait: 100 * time.Second, req: sipTestRequest{callID: "query", cseq: 1}, wantCode: 200, wantContacts: []string{uriA + " expires=3500"}},
		}},
		{name: "unknown extension", steps: []registerStep{
			{req: sipTestRequest{to: "200", contacts: []string{contactA}}, wantCode: 404},
		}},
		{name: "another user's extension", steps: []registerStep{
			{req: sipTestRequest{from: "101", contacts: []string{contactA}}, wantCode: 403},
		}},
		{name: "malformed Expires", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}, expires: "soon"}, wantCode: 400},
			{req: sipTestRequest{contacts: []string{contactA}, expires: "-1"}, wantCode: 400},
			{req: sipTestRequest{contacts: []string{contactA + ";expires=1h"}}, wantCode: 400},
		}},
		{name: "contact that is not a sip URI", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{"<tel:+15551234>"}}, wantCode: 400},
		}},
		{name: "contact parameters other than transport do not make a new binding", steps: []registerStep{
			{req: sipTestRequest{contacts: []string{contactA}}, wantCode: 200},
			{req: sipTestRequest{cseq: 2, contacts: []string{"<sip:100@10.0.0.1:5070;ob>"}, expires: "120"}, wantCode: 200,
				wantContacts: []string{"sip:100@10.0.0.1:5070;ob expires=120"}},
			{wait: time.Second, req: sipTestRequest{cseq: 3, contacts: []string{"<sip:100@10.0.0.1:5070;transport=tcp>"}, expires: "60"}, wantCode: 200,
				wantContacts: []string{"sip:100@10.0.0.1:5070;transport=tcp expires=60", "sip:100@10.0.0.1:5070;ob expires=119"}},
		}},
		{name: "at most 10 contacts", steps: []registerStep{
			{req: sipTestRequest{contacts: manyContacts(0, 10)}, wantCode: 200},
			{req: sipTestRequest{cseq: 2, contacts: manyContacts(10, 1)}, wantCode: 403},
			{req: sipTestRequest{cseq: 3, contacts: []string{"<sip:100@10.1.0.0>;expires=0"}}, wantCode: 200},
			{req: sipTestRequest{cseq: 4, contacts: manyContacts(10, 1)}, wantCode: 200},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				users := OpenUsers()
				reg := NewRegistrar(users, NewAuthenticator(users, testRealm, nil), RegistrarOptions{})
				for i, step := range tt.steps {
					time.Sleep(step.wait)
					step.req.to = cmp.Or(step.req.to, "100")
					res := registerRecorded(t, reg, step.req)
					require.Equal(t, step.wantCode, res.StatusCode, "step %d: %s", i, res.Short())
					if step.wantCode != 200 {
						require.Empty(t, contactsOf(res))
						continue
					}
					if step.wantContacts != nil {
						require.Equal(t, step.wantContacts, contactsOf(res), "step %d", i)
					}
					var listed []string
					for _, b := range reg.Contacts(step.req.to) {
						listed = append(listed, b.Contact.String())
					}
					var inResponse []string
					for _, c := range contactsOf(res) {
						inResponse = append(inResponse, strings.Fields(c)[0])
					}
					require.Equal(t, inResponse, listed, "step %d: Contacts agrees with the 200 OK", i)
				}
			})
		})
	}
}

// manyContacts returns n distinct contacts numbered from first.
func manyContacts(first, n int) []string {
	var out []string
	for i := first; i < first+n; i++ {
		out = append(out, fmt.Sprintf("<sip:100@10.1.0.%d>", i))
	}
	return out
}

func TestServeRegisterIntervalTooBriefNamesTheMinimum(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := NewRegistrar(OpenUsers(), nil, RegistrarOptions{MinExpiry: 90 * time.Second})
		res := registerRecorded(t, reg, sipTestRequest{to: "100", contacts: []string{contactA}, expires: "89"})
		require.Equal(t, 423, res.StatusCode)
		require.Equal(t, "90", res.GetHeader("Min-Expires").Value())
	})
}

func TestRegistrarOptions(t *testing.T) {
	tests := []struct {
		name      string
		opts      RegistrarOptions
		wantRange [3]time.Duration // default, minimum, maximum
	}{
		{name: "zero means the defaults", opts: RegistrarOptions{},
			wantRange: [3]time.Duration{3600 * time.Second, 60 * time.Second, 7200 * time.Second}},
		{name: "set", opts: RegistrarOptions{DefaultExpiry: time.Minute, MinExpiry: 30 * time.Second, MaxExpiry: time.Hour},
			wantRange: [3]time.Duration{time.Minute, 30 * time.Second, time.Hour}},
		{name: "maximum below minimum is raised", opts: RegistrarOptions{MinExpiry: time.Hour, MaxExpiry: time.Minute},
			wantRange: [3]time.Duration{time.Hour, time.Hour, time.Hour}},
		{name: "default brought within the range", opts: RegistrarOptions{DefaultExpiry: time.Second},
			wantRange: [3]time.Duration{60 * time.Second, 60 * time.Second, 7200 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistrar(OpenUsers(), nil, tt.opts)
			require.Equal(t, tt.wantRange, [3]time.Duration{reg.defaultExpiry, reg.minExpiry, reg.maxExpiry})
		})
	}
}

func TestRegistrationsExpire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := NewRegistrar(OpenUsers(), nil, RegistrarOptions{})
		start := time.Now()
		res := registerRecorded(t, reg, sipTestRequest{to: "150", callID: "desk", cseq: 7, contacts: []string{contactA}, expires: "120"})
		require.Equal(t, 200, res.StatusCode)
		time.Sleep(time.Second)
		registerRecorded(t, reg, sipTestRequest{to: "150", callID: "mobile", contacts: []string{contactB}, expires: "3600"})
		registerRecorded(t, reg, sipTestRequest{to: "101", contacts: []string{contactC}, expires: "300"})
		require.Equal(t, []string{"101", "150"}, reg.Extensions())

		got := reg.Contacts("150")
		require.Len(t, got, 2)
		require.Equal(t, uriB, got[0].Contact.String(), "newest first")
		desk := got[1]
		require.Equal(t, uriA, desk.Contact.String())
		require.Equal(t, "UDP", desk.Transport)
		require.Equal(t, "127.0.0.1:5070", desk.Source)
		require.Equal(t, "desk", desk.CallID)
		require.Equal(t, uint32(7), desk.CSeq)
		require.Equal(t, start.Add(120*time.Second), desk.Expires)

		// Contacts hands out copies: changing one changes nothing inside.
		got[0].Contact.Host = "changed"
		require.Equal(t, uriB, reg.Contacts("150")[0].Contact.String())

		time.Sleep(119*time.Second - time.Nanosecond)
		require.Len(t, reg.Contacts("150"), 2, "alive until its last instant")
		time.Sleep(time.Nanosecond)
		require.Len(t, reg.Contacts("150"), 1)
		require.Equal(t, uriB, reg.Contacts("150")[0].Contact.String())

		time.Sleep(181 * time.Second)
		require.Equal(t, []string{"150"}, reg.Extensions(), "101's 300 s are over")
		require.Nil(t, reg.Contacts("101"))

		time.Sleep(time.Hour)
		require.Empty(t, reg.Extensions())
		require.Nil(t, reg.Contacts("150"))
		require.Empty(t, reg.bindings, "lapsed bindings are purged, not only hidden")
	})
}

// startRegistrarServer serves reg's REGISTER handler over sipgo on a free
// loopback port of transport until the test ends, and returns the URI to
// register at.
func startRegistrarServer(t *testing.T, reg *Registrar, transport string) string {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("pbx-test"),
		sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
	)
	require.NoError(t, err)
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(quiet))
	require.NoError(t, err)
	srv.OnRegister(reg.ServeRegister)

	// A REGISTER gets its final response before the phone goes on, and
	// nothing follows it (no ACK), so closing after the test is safe.
	served := make(chan struct{})
	var uri string
	var stop func() error
	if transport == "tcp" {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		uri, stop = "sip:"+l.Addr().String()+";transport=tcp", l.Close
		go func() {
			defer close(served)
			_ = srv.ServeTCP(l)
		}()
	} else {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		uri, stop = "sip:"+conn.LocalAddr().String(), conn.Close
		go func() {
			defer close(served)
			_ = srv.ServeUDP(conn)
		}()
	}
	t.Cleanup(func() {
		_ = stop()
		<-served
		_ = ua.Close()
	})
	return uri
}

func registrarTestContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRegisterOverSIP(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			ctx := registrarTestContext(t)
			users := OpenUsers()
			reg := NewRegistrar(users, NewAuthenticator(users, testRealm, nil), RegistrarOptions{})
			at := startRegistrarServer(t, reg, transport)
			desk := parktest.NewPhone(t, parktest.PhoneOptions{User: "150", Transport: transport})
			soft := parktest.NewPhone(t, parktest.PhoneOptions{User: "150", Transport: transport})

			res, err := desk.Register(ctx, at, time.Hour)
			require.NoError(t, err)
			require.Equal(t, []string{desk.URI() + " expires=3600"}, contactsOf(res))
			res, err = soft.Register(ctx, at, 10*time.Minute)
			require.NoError(t, err)
			require.ElementsMatch(t, []string{desk.URI() + " expires=3600", soft.URI() + " expires=600"}, contactsOf(res))

			bindings := reg.Contacts("150")
			require.Len(t, bindings, 2)
			byURI := map[string]Binding{}
			for _, b := range bindings {
				byURI[b.Contact.String()] = b
			}
			b := byURI[desk.URI()]
			require.Equal(t, strings.ToUpper(transport), b.Transport)
			if transport == "udp" {
				require.Equal(t, desk.Addr().String(), b.Source, "a UDP phone sends from its listening port")
			} else {
				require.True(t, strings.HasPrefix(b.Source, "127.0.0.1:"), b.Source)
			}

			_, err = desk.Register(ctx, at, 0)
			require.NoError(t, err, "unregister")
			require.Len(t, reg.Contacts("150"), 1, "the other phone stays")
			require.Equal(t, soft.URI(), reg.Contacts("150")[0].Contact.String())
			require.Equal(t, []string{"150"}, reg.Extensions())

			_, err = parktest.NewPhone(t, parktest.PhoneOptions{User: "250", Transport: transport}).Register(ctx, at, time.Hour)
			require.Equal(t, 404, statusCodeOf(t, err))
		})
	}
}

func TestRegisterWithPasswords(t *testing.T) {
	users, err := LoadUsers(filepath.Join("testdata", "users.txt"))
	require.NoError(t, err)
	tests := []struct {
		name     string
		user     string
		password string
		wantCode int
	}{
		{name: "right password", user: "100", password: "correct-horse", wantCode: 200},
		{name: "password with a colon", user: "101", password: "battery:staple", wantCode: 200},
		{name: "wrong password", user: "100", password: "battery:staple", wantCode: 403},
		{name: "no password", user: "100", wantCode: 401},
		{name: "not in the file", user: "150", password: "x", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := registrarTestContext(t)
			reg := NewRegistrar(users, NewAuthenticator(users, testRealm, nil), RegistrarOptions{})
			at := startRegistrarServer(t, reg, "udp")
			ph := parktest.NewPhone(t, parktest.PhoneOptions{User: tt.user, Password: tt.password})
			_, err := ph.Register(ctx, at, time.Hour)
			if tt.wantCode == 200 {
				require.NoError(t, err)
				require.Len(t, reg.Contacts(tt.user), 1)
				_, err = ph.Register(ctx, at, 0)
				require.NoError(t, err, "an unregister answers a new challenge")
				require.Empty(t, reg.Contacts(tt.user))
				return
			}
			require.Equal(t, tt.wantCode, statusCodeOf(t, err))
			require.Empty(t, reg.Extensions())
		})
	}
}

// TestRegisterWithSipgoClient registers with sipgo's own digest client, an
// implementation other than parktest's.
func TestRegisterWithSipgoClient(t *testing.T) {
	ctx := registrarTestContext(t)
	users, err := LoadUsers(filepath.Join("testdata", "users.txt"))
	require.NoError(t, err)
	reg := NewRegistrar(users, NewAuthenticator(users, testRealm, nil), RegistrarOptions{})
	at := startRegistrarServer(t, reg, "tcp")

	quiet := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("200"),
		sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)),
	)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	client, err := sipgo.NewClient(ua, sipgo.WithClientLogger(quiet))
	require.NoError(t, err)

	var recipient sip.Uri
	require.NoError(t, sip.ParseUri(at, &recipient))
	req := sip.NewRequest(sip.REGISTER, recipient)
	aor := sip.Uri{Scheme: "sip", User: "200", Host: recipient.Host, Port: recipient.Port}
	from := &sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", "sipgo")
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: aor})
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "200", Host: "127.0.0.1", Port: 5999}})
	req.AppendHeader(sip.NewHeader("Expires", "300"))
	req.SetTransport("TCP")

	res, err := client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 401, res.StatusCode)
	res, err = client.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "200", Password: "s3cret"})
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode, res.Short())
	require.Equal(t, []string{"sip:200@127.0.0.1:5999 expires=300"}, contactsOf(res))
	require.Equal(t, "TCP", reg.Contacts("200")[0].Transport)
}

// statusCodeOf returns the status of a parktest.StatusError.
func statusCodeOf(t *testing.T, err error) int {
	t.Helper()
	var se *parktest.StatusError
	require.ErrorAs(t, err, &se)
	return se.Code
}
