package sipadapter_test

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/sipadapter"
)

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		err     error
		code    int
		reason  string
		headers map[string]string // name: a piece of the value
	}{
		{park.ErrLotFull, 486, "Busy Here", map[string]string{"Warning": "full", "Reason": "cause=486"}},
		{park.ErrOrbitInUse, 486, "Busy Here", map[string]string{"Warning": "occupied", "Reason": "cause=486"}},
		{park.ErrUnknownOrbit, 404, "Not Found", nil},
		{park.ErrNotParked, 404, "Not Found", nil},
		{park.ErrStale, 404, "Not Found", nil},
		{park.ErrClosed, 503, "Service Unavailable", map[string]string{"Retry-After": "30"}},
		{sipadapter.ErrNoRTPPort, 503, "Service Unavailable", map[string]string{"Warning": "RTP port"}},
		{errors.New("disk on fire"), 500, "Server Internal Error", nil},
		{nil, 500, "Server Internal Error", nil},
	} {
		name := "nil"
		if tc.err != nil {
			name = tc.err.Error()
		}
		t.Run(name, func(t *testing.T) {
			// Wrapped as a host's code would wrap it: errors.Is decides.
			for _, err := range []error{tc.err, fmt.Errorf("park 701: %w", tc.err)} {
				code, reason, headers := sipadapter.StatusFor(err)
				require.Equal(t, tc.code, code)
				require.Equal(t, tc.reason, reason)
				require.Len(t, headers, len(tc.headers))
				for _, h := range headers {
					want, ok := tc.headers[h.Name()]
					require.True(t, ok, "unexpected header %s", h.Name())
					require.Contains(t, h.Value(), want)
				}
			}
		})
	}
	// The Reason of a 486 carries the error's own words, made safe for a
	// quoted string.
	_, _, headers := sipadapter.StatusFor(fmt.Errorf("orbit \"7\x0001\": %w", park.ErrOrbitInUse))
	require.Equal(t, "Reason", headers[1].Name())
	require.NotContains(t, strings.TrimSuffix(strings.TrimPrefix(headers[1].Value(), `SIP;cause=486;text="`), `"`), `"`)
}

func TestReferredBy(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{`"Bob" <sip:bob@example.com>;tag=x`, "sip:bob@example.com"},
		{`<sip:bob@example.com;transport=tcp>`, "sip:bob@example.com;transport=tcp"},
		{`sip:bob@example.com;cid=1`, "sip:bob@example.com"}, // linphone: a bare URI
		{"", ""},
	} {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "700", Host: "127.0.0.1"})
		if tc.header != "" {
			req.AppendHeader(sip.NewHeader("Referred-By", tc.header))
		}
		require.Equal(t, tc.want, sipadapter.ReferredBy(req), tc.header)
	}
}

func TestParseReplaces(t *testing.T) {
	for _, tc := range []struct {
		value                  string
		callID, toTag, fromTag string
		wantErr                string
	}{
		{value: "abc@host;to-tag=t1;from-tag=f1", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		{value: "abc@host;from-tag=f1;to-tag=t1", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		{value: " abc@host ; To-Tag = t1 ; FROM-TAG=f1 ", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		{value: "abc@host;to-tag=t1;from-tag=f1;early-only", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		// As found in a Refer-To URI header.
		{value: "abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		{value: "abc%40host;to-tag=t1;from-tag=f1", callID: "abc@host", toTag: "t1", fromTag: "f1"},
		// A '%' that is no escape belongs to the Call-ID.
		{value: "ab%zz;to-tag=t1;from-tag=f1", callID: "ab%zz", toTag: "t1", fromTag: "f1"},
		{value: "", wantErr: "no call-id, no to-tag, no from-tag"},
		{value: ";to-tag=t1;from-tag=f1", wantErr: "no call-id"},
		{value: "abc@host;from-tag=f1", wantErr: "no to-tag"},
		{value: "abc@host;to-tag=t1", wantErr: "no from-tag"},
		{value: "abc@host;to-tag=;from-tag=f1", wantErr: "no to-tag"},
		{value: "abc@host", wantErr: "no to-tag, no from-tag"},
		{value: "abc%40host%3Bto-tag%3Dt1", wantErr: "no from-tag"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			callID, toTag, fromTag, err := sipadapter.ParseReplaces(tc.value)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorContains(t, err, "Replaces")
				require.Empty(t, callID+toTag+fromTag)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.callID, callID)
			require.Equal(t, tc.toTag, toTag)
			require.Equal(t, tc.fromTag, fromTag)
		})
	}
}

// What a phone builds (escaped in a Refer-To) reads back as what it named.
func TestParseReplacesReferTo(t *testing.T) {
	value := "a1b2@10.0.0.1;to-tag=srv;from-tag=phone"
	referTo := "sip:700@127.0.0.1?Replaces=" + url.QueryEscape(value)
	u, err := url.Parse(referTo)
	require.NoError(t, err)
	escaped := strings.TrimPrefix(u.RawQuery, "Replaces=")
	require.NotContains(t, escaped, ";")
	callID, toTag, fromTag, err := sipadapter.ParseReplaces(escaped)
	require.NoError(t, err)
	require.Equal(t, []string{"a1b2@10.0.0.1", "srv", "phone"}, []string{callID, toTag, fromTag})
}

func FuzzParseReplaces(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzParseReplaces.
	f.Add("abc@host;to-tag=t1;from-tag=f1")
	f.Add("abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1")
	f.Fuzz(func(t *testing.T, value string) {
		callID, toTag, fromTag, err := sipadapter.ParseReplaces(value)
		if err != nil {
			if callID != "" || toTag != "" || fromTag != "" {
				t.Fatalf("error %v with values %q %q %q", err, callID, toTag, fromTag)
			}
			return
		}
		if callID == "" || toTag == "" || fromTag == "" {
			t.Fatalf("%q: an empty part without an error: %q %q %q", value, callID, toTag, fromTag)
		}
		if strings.Contains(callID, ";") || strings.Contains(toTag, ";") || strings.Contains(fromTag, ";") {
			t.Fatalf("%q: a part holds a ';': %q %q %q", value, callID, toTag, fromTag)
		}
		if strings.Contains(callID+toTag+fromTag, "%") {
			return // unescaping again would read another value
		}
		// What was read, written back in the header form, reads the same.
		again := callID + ";to-tag=" + toTag + ";from-tag=" + fromTag
		c2, t2, f2, err := sipadapter.ParseReplaces(again)
		if err != nil || c2 != callID || t2 != toTag || f2 != fromTag {
			t.Fatalf("%q -> %q: read back %q %q %q, %v", value, again, c2, t2, f2, err)
		}
	})
}

func TestSipfrags(t *testing.T) {
	require.Equal(t, "SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n", sipadapter.ParkedSipfrag("701"))
	require.Equal(t, "SIP/2.0 100 Trying\r\n", sipadapter.StatusSipfrag(100, "Trying"))
	require.Equal(t, "SIP/2.0 486 Busy Here\r\n", sipadapter.StatusSipfrag(486, "Busy Here"))
	require.Equal(t, "SIP/2.0 500 two  lines\r\n", sipadapter.StatusSipfrag(500, "two\r\nlines"), "one status line")
}

// A Warning quoting a long piece of the request stays short: sipgo sends no
// UDP message over 1,300 bytes, so an unbounded one would turn a 400 into
// no answer at all.
func TestWarningIsBounded(t *testing.T) {
	long := sipadapter.Warning("bad c= line: " + strings.Repeat("x", 2000)).Value()
	require.Less(t, len(long), 160)
	require.True(t, strings.HasSuffix(long, `…"`), long)
	require.Equal(t, `399 callpark "short reason"`, sipadapter.Warning("short reason").Value())
	require.Equal(t, `399 callpark "a   quote and a   break"`, sipadapter.Warning("a \" quote and a \n break").Value(), "quotes and controls become spaces")
}
