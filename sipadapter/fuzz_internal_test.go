package sipadapter

import (
	"net/netip"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/orbit"
)

// The lot FuzzReferTo classifies against: every numbering form, and a
// range another node serves, which this one must not take as its own.
const (
	fuzzParkExt = "700"
	fuzzOrbits  = "701-799,*7000-*7099,#1000-#1999,nodeB=801-899"
)

// FuzzReferTo feeds Refer-To values through sipgo as the server receives
// them (a REFER read off the wire, then req.ReferTo()) and as a host
// building its own request gets them (sip.NewHeader), then through
// referTarget, the classification onRefer acts on. No value may panic, and
// the answer must hold: the park extension is found with no orbit, an orbit
// is found only if this node serves it and is then a valid orbit, anything
// else is not found. Seeds live in testdata/fuzz/FuzzReferTo.
func FuzzReferTo(f *testing.F) {
	table, err := orbit.ParseTable(fuzzOrbits)
	if err != nil {
		f.Fatal(err)
	}
	server := netip.MustParseAddrPort("127.0.0.1:5060")
	f.Add("<sip:700@127.0.0.1:5060>")
	f.Fuzz(func(t *testing.T, value string) {
		for _, referTo := range referTos(value) {
			directed, found := checkReferTarget(t, value, referTo, table)

			// A Replaces in the URI (attended transfer) changes nothing
			// here; parseReplaces reads it as sipgo hands it over.
			if replaces, ok := referTo.Address.Headers.Get("Replaces"); ok {
				if callID, toTag, fromTag, err := parseReplaces(replaces); err == nil && (callID == "" || toTag == "" || fromTag == "") {
					t.Fatalf("%q: Replaces %q read with an empty part: %q %q %q", value, replaces, callID, toTag, fromTag)
				}
				bare := referTo.Clone()
				bare.Address.Headers = nil
				if d, ok := referTarget(bare, fuzzParkExt, table); d != directed || ok != found {
					t.Fatalf("%q: without its Replaces reads as (%q, %v), with it (%q, %v)", value, d, ok, directed, found)
				}
			}

			// The URI the server gives an orbit, transferred to, names it.
			if found && directed != "" {
				uri := "<" + userURI(string(directed), server) + ">"
				for _, own := range referTos(uri) {
					if d, ok := referTarget(own, fuzzParkExt, table); d != directed || !ok {
						t.Fatalf("%q: the orbit's own URI %q reads as (%q, %v)", value, uri, d, ok)
					}
				}
			}
		}
	})
}

// Where onRefer sends the other party, for the values phones write.
func TestReferTarget(t *testing.T) {
	table, err := orbit.ParseTable(fuzzOrbits)
	require.NoError(t, err)
	for _, tc := range []struct {
		value    string
		directed orbit.Orbit
		found    bool
	}{
		{"<sip:700@127.0.0.1:5060>", "", true},
		{"sip:700@127.0.0.1:5060", "", true},
		{`"Park" <sip:700@pbx.example.com;transport=udp>;x=1`, "", true},
		{"<sip:700@127.0.0.1:5060?Replaces=a1b2%4010.0.0.1%3Bto-tag%3Dsrv%3Bfrom-tag%3Dphone>", "", true},
		{"<sip:750@127.0.0.1:5060>", "750", true},
		{"<sips:*7012@127.0.0.1:5061;transport=tls>", "*7012", true},
		{"<sip:#1005@127.0.0.1:5060>", "#1005", true},
		{"<sip:%231005@127.0.0.1:5060>", "#1005", true}, // # escaped, as RFC 3261 wants it
		{"<sip:%2A7012@127.0.0.1:5060>", "*7012", true},
		{"<sip:%2G701@127.0.0.1:5060>", "", false}, // a broken escape matches nothing
		{"<sip:701@[::1]:5060>", "701", true},
		{"<sip:801@127.0.0.1:5060>", "", false}, // another node's orbit
		{"<sip:0701@127.0.0.1:5060>", "", false},
		{"<sip:600@127.0.0.1:5060>", "", false},
		{"<tel:700>", "", false},
		{"<sip:127.0.0.1:5060>", "", false},
	} {
		refs := referTos(tc.value)
		require.Len(t, refs, 2, "%q: read off the wire and built", tc.value)
		for _, referTo := range refs {
			directed, found := referTarget(referTo, fuzzParkExt, table)
			require.Equal(t, tc.directed, directed, tc.value)
			require.Equal(t, tc.found, found, tc.value)
		}
	}
}

// checkReferTarget classifies referTo and checks the answer against the
// rules of onRefer.
func checkReferTarget(t *testing.T, value string, referTo *sip.ReferToHeader, table *orbit.Table) (orbit.Orbit, bool) {
	t.Helper()
	directed, found := referTarget(referTo, fuzzParkExt, table)
	user := URIUser(referTo.Address)
	switch {
	case !found:
		if directed != "" {
			t.Fatalf("%q: not found, yet directed to %q", value, directed)
		}
		if user == fuzzParkExt || servesOrbit(table, orbit.Orbit(user)) {
			t.Fatalf("%q: user %q is the park extension or a served orbit, yet not found", value, user)
		}
	case directed == "":
		if user != fuzzParkExt {
			t.Fatalf("%q: user %q taken as the park extension", value, user)
		}
	default:
		if string(directed) != user {
			t.Fatalf("%q: directed to %q, but the user is %q", value, directed, user)
		}
		if pool, ok := table.Owner(directed); !ok || pool != "" {
			t.Fatalf("%q: directed to %q, which is served by pool %q (%v), not this node", value, directed, pool, ok)
		}
		if _, err := orbit.ParseOrbit(string(directed)); err != nil {
			t.Fatalf("%q: directed to %q, which is no orbit: %v", value, directed, err)
		}
		if directed == fuzzParkExt {
			t.Fatalf("%q: the park extension taken as an orbit", value)
		}
	}
	return directed, found
}

// referTos returns the Refer-To headers sipgo reads from value, in a REFER
// read off the wire (wireReferTo) and in one built with sip.NewHeader; none
// where sipgo reads none (the server then answers 400).
func referTos(value string) []*sip.ReferToHeader {
	var out []*sip.ReferToHeader
	if h := wireReferTo(value); h != nil {
		out = append(out, h)
	}
	req := sip.NewRequest(sip.REFER, sip.Uri{Scheme: "sip", User: "callpark", Host: "127.0.0.1", Port: 5060})
	req.AppendHeader(sip.NewHeader("Refer-To", value))
	if h := req.ReferTo(); h != nil {
		out = append(out, h)
	}
	return out
}

// wireReferTo is what onRefer gets from req.ReferTo() for a REFER carrying
// value that sipgo reads off the wire; nil if it reads none.
func wireReferTo(value string) *sip.ReferToHeader {
	raw := "REFER sip:callpark@127.0.0.1:5060 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-fuzz\r\n" +
		"From: <sip:alice@127.0.0.1:5062>;tag=a1\r\n" +
		"To: <sip:callpark@127.0.0.1:5060>;tag=s1\r\n" +
		"Call-ID: fuzz-refer\r\n" +
		"CSeq: 2 REFER\r\n" +
		"Refer-To: " + value + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		return nil
	}
	req, ok := msg.(*sip.Request)
	if !ok {
		return nil
	}
	return req.ReferTo()
}
