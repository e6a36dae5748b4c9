package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/examples/internal/softphone"
	"github.com/callpark/callpark/internal/interop"
	"github.com/callpark/callpark/park"
)

// Real phones registered with the PBX, with digest authentication: each
// has a password in a users file, as an admin would set it up.
const phoneUsers = `# extension:password
101:alice-secret
102:bob-secret
103:carol-secret
`

func usersFile(t *testing.T) *Users {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.txt")
	require.NoError(t, os.WriteFile(path, []byte(phoneUsers), 0o600))
	users, err := LoadUsers(path)
	require.NoError(t, err)
	require.True(t, users.AuthRequired())
	return users
}

// registeredBaresip starts a baresip for ext (its ports spaced from the
// parkserver tests', which may run at the same time) and waits until the
// PBX has its registration.
func registeredBaresip(t *testing.T, p *PBX, ext, password string, slot int) *softphone.Baresip {
	t.Helper()
	ph := softphone.StartBaresip(t, softphone.BaresipOptions{
		Name:      ext,
		SIPPort:   31271 + 2*slot,
		CtrlPort:  30271 + 2*slot,
		RTPLow:    18000 + 200*slot,
		Registrar: p.Addr().String(),
		Password:  password,
	})
	// The phone may register before its control socket is connected, so
	// the registrar, not a REGISTER_OK event, is the witness.
	softphone.WaitFor(t, 10*time.Second, ext+" registers", func() bool { return len(p.Registrar().Contacts(ext)) == 1 })
	return ph
}

// parkedCall waits until the lot holds a call and returns it.
func parkedCall(t *testing.T, p *PBX) park.CallInfo {
	t.Helper()
	softphone.WaitFor(t, 15*time.Second, "a call is parked", func() bool { return p.Lot().Len() == 1 })
	return p.Lot().Calls()[0]
}

// The flow with three real phones: alice calls bob, bob blind-
// transfers alice to 700, alice hears music, carol dials the orbit and
// talks to alice. The phones' own RTP counters prove audio went both ways.
func TestBaresipTransferToParkThenRetrieve(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	p := testPBX(t, Config{Users: usersFile(t)})
	alice := registeredBaresip(t, p, "101", "alice-secret", 0)
	bob := registeredBaresip(t, p, "102", "bob-secret", 1)
	carol := registeredBaresip(t, p, "103", "carol-secret", 2)

	alice.Do("dial", p.URI("102"))
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "102", 10*time.Second)
	bob.WaitEvent(0, "CALL_ESTABLISHED", "101", 10*time.Second)
	softphone.WaitFor(t, 10*time.Second, "alice and bob hear each other", func() bool {
		aliceRx, _ := alice.RTPCounts()
		bobRx, _ := bob.RTPCounts()
		return aliceRx >= 25 && bobRx >= 25
	})

	bob.Do("transfer", p.URI("700"))
	info := parkedCall(t, p)
	require.Equal(t, p.URI("101"), info.Party)
	require.Equal(t, p.URI("102"), info.Parker, "the referrer is the parker, though baresip sends no Referred-By")
	bob.WaitEvent(0, "CALL_CLOSED", "101", 10*time.Second)

	// Alice's call never dropped: the same dialog now hears the music.
	before, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "alice hears hold music", func() bool {
		rx, _ := alice.RTPCounts()
		return rx >= before+50
	})

	carol.Do("dial", p.URI(string(info.Orbit)))
	carol.WaitEvent(0, "CALL_ESTABLISHED", string(info.Orbit), 10*time.Second)
	require.Zero(t, p.Lot().Len(), "retrieved")
	aliceBefore, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "carol hears alice and alice hears carol", func() bool {
		carolRx, carolTx := carol.RTPCounts()
		aliceRx, _ := alice.RTPCounts()
		return carolRx >= 50 && carolTx >= 50 && aliceRx >= aliceBefore+50
	})

	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "102", 10*time.Second)
}

// Nobody dials the orbit: after the pickup timeout the PBX rings bob's
// registered phone, which answers and talks to alice.
func TestBaresipRecallRingsTheParkersPhone(t *testing.T) {
	interop.RequireTool(t, "baresip", "baresip")
	p := testPBX(t, Config{Users: usersFile(t), Park: park.Config{PickupTimeout: park.MinPickupTimeout}})
	alice := registeredBaresip(t, p, "101", "alice-secret", 0)
	bob := registeredBaresip(t, p, "102", "bob-secret", 1)

	alice.Do("dial", p.URI("102"))
	alice.WaitEvent(0, "CALL_ESTABLISHED", "102", 10*time.Second)
	bi := bob.WaitEvent(0, "CALL_ESTABLISHED", "101", 10*time.Second)
	bob.Do("transfer", p.URI("700"))
	info := parkedCall(t, p)
	bi = bob.WaitEvent(bi, "CALL_CLOSED", "101", 10*time.Second)
	parkedAt := time.Now()

	bob.WaitEvent(bi, "CALL_ESTABLISHED", string(info.Orbit), park.MinPickupTimeout+10*time.Second)
	t.Logf("recall answered %.1f s after the park", time.Since(parkedAt).Seconds())
	softphone.WaitFor(t, 5*time.Second, "the call leaves the lot", func() bool { return p.Lot().Len() == 0 })
	softphone.WaitFor(t, 10*time.Second, "bob hears alice again", func() bool {
		rx, _ := bob.RTPCounts()
		return rx >= 50
	})
	bob.Do("hangup", "")
}

// linphone as bob: it registers with a password, is called by a baresip,
// and transfers the call to the park extension (it puts alice on hold
// first, and sends Referred-By). Carol, a baresip, retrieves.
func TestLinphoneTransfersToPark(t *testing.T) {
	interop.RequireTool(t, "linphonecsh", "linphone-cli")
	interop.RequireTool(t, "baresip", "baresip")
	p := testPBX(t, Config{Users: usersFile(t)})
	alice := registeredBaresip(t, p, "101", "alice-secret", 0)
	carol := registeredBaresip(t, p, "103", "carol-secret", 2)
	bob := softphone.StartLinphone(t, softphone.LinphoneOptions{
		User: "102", SIPPort: 31291, RTPPort: 31900,
		Registrar: p.Addr().String(), Password: "bob-secret", Realm: pbxRealm,
	})
	softphone.WaitFor(t, 15*time.Second, "linphone registers", func() bool { return len(p.Registrar().Contacts("102")) == 1 })

	alice.Do("dial", p.URI("102"))
	ai := alice.WaitEvent(0, "CALL_ESTABLISHED", "102", 10*time.Second)
	bob.WaitCallState("StreamsRunning", 15*time.Second)

	bob.Run("generic", "transfer "+p.URI("700"))
	info := parkedCall(t, p)
	require.Equal(t, p.URI("101"), info.Party)
	require.Equal(t, p.URI("102"), info.Parker)
	softphone.WaitFor(t, 15*time.Second, "linphone hangs up after the transfer", func() bool {
		return strings.Contains(bob.Run("generic", "calls"), "No active call")
	})

	carol.Do("dial", p.URI(string(info.Orbit)))
	carol.WaitEvent(0, "CALL_ESTABLISHED", string(info.Orbit), 10*time.Second)
	aliceBefore, _ := alice.RTPCounts()
	softphone.WaitFor(t, 10*time.Second, "carol and alice hear each other", func() bool {
		carolRx, _ := carol.RTPCounts()
		aliceRx, _ := alice.RTPCounts()
		return carolRx >= 50 && aliceRx >= aliceBefore+50
	})
	carol.Do("hangup", "")
	alice.WaitEvent(ai, "CALL_CLOSED", "", 10*time.Second)
}
