package parktest

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

func TestParseSipfrag(t *testing.T) {
	tests := []struct {
		name, body string
		want       Sipfrag
		wantErr    string
	}{
		{
			name: "re-park answer", body: "SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n",
			want: Sipfrag{Code: 200, Reason: "OK", Headers: []SipfragHeader{{"X-Park-Orbit", "701"}}},
		},
		{name: "no line end", body: "SIP/2.0 100 Trying", want: Sipfrag{Code: 100, Reason: "Trying"}},
		{name: "LF line ends", body: "SIP/2.0 486 Busy Here\nReason: Q.850;cause=17\n", want: Sipfrag{Code: 486, Reason: "Busy Here", Headers: []SipfragHeader{{"Reason", "Q.850;cause=17"}}}},
		{name: "no reason phrase", body: "SIP/2.0 503\r\n", want: Sipfrag{Code: 503}},
		{name: "lower-case version", body: "sip/2.0 200 OK\r\n", want: Sipfrag{Code: 200, Reason: "OK"}},
		{
			name: "folded header", body: "SIP/2.0 200 OK\r\nWarning: 399 host\r\n  \"long text\"\r\n",
			want: Sipfrag{Code: 200, Reason: "OK", Headers: []SipfragHeader{{"Warning", `399 host "long text"`}}},
		},
		{
			name: "body after the blank line is ignored", body: "SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabc",
			want: Sipfrag{Code: 200, Reason: "OK", Headers: []SipfragHeader{{"Content-Length", "3"}}},
		},
		{name: "empty", body: "", wantErr: `status line ""`},
		{name: "a request line", body: "INVITE sip:700@host SIP/2.0\r\n", wantErr: `status line "INVITE sip:700@host SIP/2.0"`},
		{name: "other protocol", body: "HTTP/1.1 200 OK\r\n", wantErr: "status line"},
		{name: "two-digit code", body: "SIP/2.0 20 OK\r\n", wantErr: `status code "20"`},
		{name: "code out of range", body: "SIP/2.0 700 Odd\r\n", wantErr: `status code "700"`},
		{name: "signed code", body: "SIP/2.0 +20 OK\r\n", wantErr: `status code "+20"`},
		{name: "header without colon", body: "SIP/2.0 200 OK\r\nX-Park-Orbit 701\r\n", wantErr: `header line "X-Park-Orbit 701"`},
		{name: "header name not a token", body: "SIP/2.0 200 OK\r\nX Park: 1\r\n", wantErr: `header line "X Park: 1"`},
		{name: "continuation first", body: "SIP/2.0 200 OK\r\n more\r\n", wantErr: "continuation line"},
		{name: "stray CR in reason", body: "SIP/2.0 200 O\rK\r\n", wantErr: "reason phrase"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSipfrag([]byte(tt.body))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadSipfrag)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSipfragHeaderAndString(t *testing.T) {
	f, err := ParseSipfrag([]byte("SIP/2.0 200 OK\r\nx-park-orbit: *7012\r\n"))
	require.NoError(t, err)
	require.Equal(t, "*7012", f.Header("X-Park-Orbit"))
	require.Empty(t, f.Header("Reason"))
	require.Equal(t, "SIP/2.0 200 OK\r\nx-park-orbit: *7012\r\n", f.String())
}

const dialogInfoParked = `<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:701@10.0.0.1">
  <dialog id="park-7" call-id="abc@x" local-tag="l1" remote-tag="r1" direction="recipient">
    <state>confirmed</state>
    <local><identity>sip:701@10.0.0.1</identity></local>
    <remote><identity>sip:carol@10.0.0.9</identity></remote>
  </dialog>
  <dialog id="park-6"><state event="remote-bye">terminated</state></dialog>
</dialog-info>`

func TestParseDialogInfo(t *testing.T) {
	replace := func(old, new string) string { return strings.Replace(dialogInfoParked, old, new, 1) }
	tests := []struct {
		name, body string
		want       DialogInfo
		wantErr    string
	}{
		{
			name: "parked orbit", body: dialogInfoParked,
			want: DialogInfo{Version: 3, State: "full", Entity: "sip:701@10.0.0.1", Dialogs: []DialogInfoDialog{
				{ID: "park-7", CallID: "abc@x", LocalTag: "l1", RemoteTag: "r1", Direction: "recipient", State: "confirmed", Local: "sip:701@10.0.0.1", Remote: "sip:carol@10.0.0.9"},
				{ID: "park-6", State: "terminated", Event: "remote-bye"},
			}},
		},
		{
			name: "empty orbit, partial",
			body: `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="partial" entity="sip:701@h"/>`,
			want: DialogInfo{Version: 0, State: "partial", Entity: "sip:701@h"},
		},
		{name: "not XML", body: "hello", wantErr: "EOF"},
		{name: "wrong namespace", body: replace("urn:ietf:params:xml:ns:dialog-info", "urn:example"), wantErr: "expected element"},
		{name: "wrong root", body: `<presence xmlns="urn:ietf:params:xml:ns:dialog-info"/>`, wantErr: "expected element"},
		{name: "negative version", body: replace(`version="3"`, `version="-1"`), wantErr: `version "-1"`},
		{name: "missing version", body: replace(`version="3"`, ``), wantErr: `version ""`},
		{name: "bad state", body: replace(`state="full"`, `state="all"`), wantErr: `state "all"`},
		{name: "missing entity", body: replace(`entity="sip:701@10.0.0.1"`, ``), wantErr: "entity is missing"},
		{name: "dialog without id", body: replace(`id="park-6"`, ``), wantErr: "dialog 1: id is missing"},
		{name: "unknown dialog state", body: replace(`<state>confirmed</state>`, `<state>parked</state>`), wantErr: `dialog "park-7": state "parked"`},
		{name: "unknown direction", body: replace(`direction="recipient"`, `direction="sideways"`), wantErr: `direction "sideways"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDialogInfo([]byte(tt.body))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadDialogInfo)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDialogInfoMarshalRoundTrip(t *testing.T) {
	want, err := ParseDialogInfo([]byte(dialogInfoParked))
	require.NoError(t, err)
	b, err := want.Marshal()
	require.NoError(t, err)
	got, err := ParseDialogInfo(b)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name, in    string
		wantURI     string
		wantHeaders map[string]string
		wantErr     string
	}{
		{name: "plain", in: "sip:700@127.0.0.1:5060", wantURI: "sip:700@127.0.0.1:5060"},
		{name: "angle brackets", in: " <sip:701@h;transport=tcp> ", wantURI: "sip:701@h;transport=tcp"},
		{
			name:        "Replaces becomes a header",
			in:          "sip:700@h?Replaces=abc%40x%3Bto-tag%3D1%3Bfrom-tag%3D2",
			wantURI:     "sip:700@h",
			wantHeaders: map[string]string{"Replaces": "abc@x;to-tag=1;from-tag=2"},
		},
		{
			name:        "two headers",
			in:          "sip:700@h?Replaces=a&Referred-By=%3Csip%3Ab%40h%3E",
			wantURI:     "sip:700@h",
			wantHeaders: map[string]string{"Replaces": "a", "Referred-By": "<sip:b@h>"},
		},
		{name: "empty", in: "", wantErr: "bad target"},
		{name: "tel scheme", in: "tel:+15551234", wantErr: `scheme "tel"`},
		{name: "no scheme", in: "700@h", wantErr: "bad target"},
		{name: "header name not a token", in: "sip:700@h?Bad%20Name=1", wantErr: `URI header name "Bad%20Name"`},
		{name: "line break in a value", in: "sip:700@h?X=a%0D%0AVia:%20evil", wantErr: "line break"},
		{name: "bad escape", in: "sip:700@h?X=%zz", wantErr: "URI header X"},
		{name: "line break in the password", in: "sip:0:\r@0", wantErr: `byte '\r' at 6`},
		{name: "space in the user", in: "sip:7 00@h", wantErr: `byte ' ' at 5`},
		{name: "quote in a parameter", in: `sip:700@h;x="y"`, wantErr: `byte '"'`},
		{name: "bracket inside", in: "<sip:700@h>>", wantErr: `byte '>'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, headers, err := parseTarget(tt.in)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadTarget)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantURI, u.String())
			got := map[string]string{}
			for _, h := range headers {
				got[h.Name()] = h.Value()
			}
			if tt.wantHeaders == nil {
				tt.wantHeaders = map[string]string{}
			}
			require.Equal(t, tt.wantHeaders, got)
		})
	}
}

func TestEscapeURIHeaderValue(t *testing.T) {
	for _, v := range []string{"", "abc", "call@host;to-tag=1;from-tag=2", "a b&c?d%e", "ünï\x00"} {
		escaped := escapeURIHeaderValue(v)
		require.NotContainsf(t, escaped, ";", "escaped %q", v)
		require.NotContains(t, escaped, "@")
		require.NotContains(t, escaped, "&")
		back, err := url.PathUnescape(escaped)
		require.NoError(t, err)
		require.Equal(t, v, back)
	}
}

func FuzzParseSipfrag(f *testing.F) {
	f.Add([]byte("SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		frag, err := ParseSipfrag(body)
		if err != nil {
			require.ErrorIs(t, err, ErrBadSipfrag)
			return
		}
		require.GreaterOrEqual(t, frag.Code, 100)
		require.LessOrEqual(t, frag.Code, 699)
		for _, h := range frag.Headers {
			require.True(t, isToken(h.Name), "header name %q", h.Name)
		}
		// What it parsed, written back, parses to the same thing when the
		// text is well formed.
		if utf8.Valid(body) && !strings.ContainsAny(frag.Reason, "\n") {
			again, err := ParseSipfrag([]byte(frag.String()))
			require.NoError(t, err)
			require.Equal(t, frag.Code, again.Code)
			require.Equal(t, len(frag.Headers), len(again.Headers))
		}
	})
}

func FuzzParseDialogInfo(f *testing.F) {
	f.Add([]byte(dialogInfoParked))
	f.Fuzz(func(t *testing.T, body []byte) {
		info, err := ParseDialogInfo(body)
		if err != nil {
			require.ErrorIs(t, err, ErrBadDialogInfo)
			return
		}
		require.GreaterOrEqual(t, info.Version, 0)
		require.Contains(t, []string{"full", "partial"}, info.State)
		require.NotEmpty(t, info.Entity)
		for _, d := range info.Dialogs {
			require.NotEmpty(t, d.ID)
			require.True(t, dialogStates[d.State], "state %q", d.State)
		}
	})
}

func FuzzParseTarget(f *testing.F) {
	f.Add("sip:700@127.0.0.1:5060?Replaces=abc%40x%3Bto-tag%3D1%3Bfrom-tag%3D2")
	f.Fuzz(func(t *testing.T, in string) {
		u, headers, err := parseTarget(in)
		if err != nil {
			require.ErrorIs(t, err, ErrBadTarget)
			return
		}
		require.NotEmpty(t, u.Host)
		require.Empty(t, u.Headers, "URI headers are moved out of the Request-URI")
		for _, h := range headers {
			require.True(t, isToken(h.Name()), "header name %q", h.Name())
			require.NotContains(t, h.Value(), "\r")
			require.NotContains(t, h.Value(), "\n")
		}
		// The target must be usable in a request line without breaking it.
		line := sip.NewRequest(sip.INVITE, u).StartLine()
		require.NotContains(t, line, "\r")
		require.NotContains(t, line, "\n")
	})
}
