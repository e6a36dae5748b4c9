package sipadapter_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// said returns where the frames of seq appear, in order and whole, in
// heard; -1 if they do not.
func said(heard [][]byte, seq *media.Frames) int {
	for start := 0; start+seq.Len() <= len(heard); start++ {
		i := 0
		for i < seq.Len() && bytes.Equal(heard[start+i], seq.Payload(i)) {
			i++
		}
		if i == seq.Len() {
			return start
		}
	}
	return -1
}

// The parked party hears "you are parked at" and its orbit, exactly the
// prompts' frames, once, then its music: for orbits with a star, a pound
// and none.
func TestParkedPartyHearsItsOrbit(t *testing.T) {
	for _, o := range []string{"*7012", "#105", "701"} {
		t.Run(o, func(t *testing.T) {
			srv := testServer(t, sipadapter.Config{
				Orbits:        orbitsTable(t, o+"-"+o),
				ParkExtension: "7",
				Announcements: sipadapter.Announcements{Parked: true},
			})
			alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
			ctx := ctxFor(t, 20*time.Second)
			parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
			require.NoError(t, err)
			require.Equal(t, o, parked.Orbit())

			p := media.DefaultPrompts()
			names, err := media.SpokenOrbit(o)
			require.NoError(t, err)
			clips, err := p.Say(append([]string{media.PromptYouAreParkedAt}, names...)...)
			require.NoError(t, err)
			seq, err := media.Sequence(parked.Negotiated().Codec, clips...)
			require.NoError(t, err)
			require.NoError(t, parked.WaitReceived(ctx, uint64(seq.Len()+25)))
			heard := parked.Heard()
			at := said(heard, seq)
			require.GreaterOrEqual(t, at, 0, "the announcement, frame for frame")
			require.Less(t, at, 5, "at once")
			require.Equal(t, -1, said(heard[at+seq.Len():], seq), "once")
			require.NoError(t, parked.Hangup(ctx))
		})
	}
}

// Without Announcements.Parked nothing is said.
func TestNoAnnouncementByDefault(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
	require.NoError(t, err)
	names, _ := media.SpokenOrbit(parked.Orbit())
	clips, err := media.DefaultPrompts().Say(append([]string{media.PromptYouAreParkedAt}, names...)...)
	require.NoError(t, err)
	seq, err := media.Sequence(parked.Negotiated().Codec, clips...)
	require.NoError(t, err)
	require.NoError(t, parked.WaitReceived(ctx, uint64(seq.Len()+5)))
	require.Equal(t, -1, said(parked.Heard(), seq))
	require.NoError(t, parked.Hangup(ctx))
}
