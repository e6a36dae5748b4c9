package parktest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkCallSetupAndHangup measures what one phone-to-phone call costs a
// test over UDP loopback: INVITE, 200, ACK, RTP port and endpoint on each
// side, BYE. It bounds how many calls a load test built on parktest can
// place per second.
func BenchmarkCallSetupAndHangup(b *testing.B) {
	alice := NewPhone(b, PhoneOptions{User: "alice"})
	bob := NewPhone(b, PhoneOptions{User: "bob"})
	require.NoError(b, bob.SetAnswer(AnswerPolicy{Mute: true}))
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		out, err := alice.Call(ctx, bob.URI(), CallOptions{Mute: true})
		if err != nil {
			b.Fatal(err)
		}
		in := <-bob.Incoming()
		if err := out.Hangup(ctx); err != nil {
			b.Fatal(err)
		}
		<-in.Done()
	}
}

// BenchmarkParseDialogInfo measures parsing one BLF NOTIFY body, which a
// test watching many orbits does for every change.
func BenchmarkParseDialogInfo(b *testing.B) {
	body := []byte(dialogInfoParked)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDialogInfo(body); err != nil {
			b.Fatal(err)
		}
	}
}
