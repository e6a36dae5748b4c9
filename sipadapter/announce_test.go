package sipadapter_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/orbit"
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

// sequence is what a prompt and an orbit say, in codec.
func sequence(t *testing.T, codec media.Codec, lead, o string) *media.Frames {
	t.Helper()
	names, err := media.SpokenOrbit(o)
	require.NoError(t, err)
	clips, err := media.DefaultPrompts().Say(append([]string{lead}, names...)...)
	require.NoError(t, err)
	seq, err := media.Sequence(codec, clips...)
	require.NoError(t, err)
	return seq
}

// requireSaidOnce checks that c heard seq, frame for frame, once, soon.
func requireSaidOnce(ctx context.Context, t *testing.T, c *parktest.Call, seq *media.Frames) {
	t.Helper()
	require.NoError(t, c.WaitReceived(ctx, c.Received()+uint64(seq.Len()+25)))
	heard := c.Heard()
	at := said(heard, seq)
	require.GreaterOrEqual(t, at, 0, "the announcement, frame for frame")
	require.Equal(t, -1, said(heard[at+seq.Len():], seq), "once")
}

// Whoever parks by calling the park extension hears "parked at" and the
// orbit, exactly the prompts' frames, once, then music: for orbits with a
// star, a pound and none.
func TestParkerHearsTheOrbit(t *testing.T) {
	for _, o := range []string{"*7012", "#105", "701"} {
		t.Run(o, func(t *testing.T) {
			told := make(chan sipadapter.Telling, 4)
			srv := testServer(t, sipadapter.Config{
				Orbits:        orbitsTable(t, o+"-"+o),
				Announcements: sipadapter.Announcements{Parker: true},
				OnTelling:     func(tl sipadapter.Telling) { told <- tl },
			})
			bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
			ctx := ctxFor(t, 20*time.Second)
			consult, err := bob.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
			require.NoError(t, err)
			require.Equal(t, o, consult.Orbit())
			seq := sequence(t, consult.Negotiated().Codec, media.PromptParkedAt, o)
			requireSaidOnce(ctx, t, consult, seq)
			require.Less(t, said(consult.Heard(), seq), 5, "at once")
			tl := <-told
			require.Equal(t, sipadapter.Telling{Kind: sipadapter.Announced, Orbit: orbit.Orbit(o), To: bob.URI()}, tl, "an event to count")
			require.NoError(t, consult.Hangup(ctx))
		})
	}
}

// A party parked by a transfer (here a re-park by REFER) hears "you are
// parked at" and its new orbit when Announcements.Parked asks.
func TestTransferredPartyHearsItsOrbit(t *testing.T) {
	srv := testServer(t, sipadapter.Config{Announcements: sipadapter.Announcements{Parked: true}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
	require.NoError(t, err)
	codec := parked.Negotiated().Codec
	require.Equal(t, -1, said(parked.Heard(), sequence(t, codec, media.PromptParkedAt, parked.Orbit())), "Parker is off")
	talk, err := bob.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	res, err := talk.Refer(ctx, srv.ParkURI())
	require.NoError(t, err)
	require.Equal(t, 200, res.FinalStatus)
	require.NoError(t, talk.Hangup(ctx))
	requireSaidOnce(ctx, t, parked, sequence(t, codec, media.PromptYouAreParkedAt, res.Orbit))
	require.NoError(t, parked.Hangup(ctx))
}

// Without Announcements nothing is said.
func TestNoAnnouncementByDefault(t *testing.T) {
	srv := testServer(t, sipadapter.Config{})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
	require.NoError(t, err)
	seq := sequence(t, parked.Negotiated().Codec, media.PromptParkedAt, parked.Orbit())
	require.NoError(t, parked.WaitReceived(ctx, uint64(seq.Len()+5)))
	require.Equal(t, -1, said(parked.Heard(), seq))
	require.NoError(t, parked.Hangup(ctx))
}

// The Notify addresses get a MESSAGE on each park (who, where, by whom)
// and each end (how it ended); the parker's own "Parked at" stays.
func TestNotifyTellsOfParksAndEnds(t *testing.T) {
	chat := parktest.NewPhone(t, parktest.PhoneOptions{User: "chat"})
	srv := testServer(t, sipadapter.Config{Notify: []string{chat.URI()}})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	carol := parktest.NewPhone(t, parktest.PhoneOptions{User: "carol"})
	ctx := ctxFor(t, 20*time.Second)

	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, Headers: []sip.Header{referredBy(bob.URI())}})
	require.NoError(t, err)
	o := parked.Orbit()
	msgs, err := chat.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+o+": "+alice.URI()+", by "+bob.URI(), msgs[0].Body)
	parkerMsgs, err := bob.Inbox().WaitMessages(ctx, 1)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+o, parkerMsgs[0].Body, "the parker's notice stays")

	talk, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(o)), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	msgs, err = chat.Inbox().WaitMessages(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, "Left "+o+": "+alice.URI()+", retrieved", msgs[1].Body)
	require.NoError(t, talk.Hangup(ctx))

	again, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.NoError(t, again.Hangup(ctx))
	msgs, err = chat.Inbox().WaitMessages(ctx, 4)
	require.NoError(t, err)
	require.Equal(t, "Parked at "+again.Orbit()+": "+alice.URI(), msgs[2].Body, "no parker: no 'by'")
	require.Equal(t, "Left "+again.Orbit()+": "+alice.URI()+", abandoned", msgs[3].Body)

	_, err = sipadapter.New(sipadapter.Config{Notify: []string{"mailto:ops@example.com"}})
	var ce *sipadapter.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Config.Notify[0]", ce.Field)
}

// A page: each paging address gets an INVITE asking it to answer by
// itself, hears "call parked at" and the orbit, frame for frame, and is
// hung up; one that never answers is given up after AnswerWait, and the
// park never waits for either.
func TestPagingSaysWhereTheCallWaits(t *testing.T) {
	speaker := parktest.NewPhone(t, parktest.PhoneOptions{User: "speaker"})
	require.NoError(t, speaker.SetAnswer(parktest.AnswerPolicy{Mode: parktest.AutoAnswer, Mute: true, KeepAudio: true}))
	deaf := parktest.NewPhone(t, parktest.PhoneOptions{User: "deaf"})
	require.NoError(t, deaf.SetAnswer(parktest.AnswerPolicy{Mode: parktest.NoAnswer}))
	var mu sync.Mutex
	var tellings []sipadapter.Telling
	srv := testServer(t, sipadapter.Config{
		Paging: sipadapter.Paging{URIs: []string{speaker.URI(), deaf.URI()}, AnswerWait: 3 * time.Second},
		OnTelling: func(tl sipadapter.Telling) {
			mu.Lock()
			defer mu.Unlock()
			tellings = append(tellings, tl)
		},
	})
	alice := parktest.NewPhone(t, parktest.PhoneOptions{User: "alice"})
	ctx := ctxFor(t, 20*time.Second)

	start := time.Now()
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	require.Less(t, time.Since(start), 1500*time.Millisecond, "no park waits for a page (the deaf one rings 3 s)")

	var page *parktest.Call
	select {
	case page = <-speaker.Incoming():
	case <-ctx.Done():
		t.Fatal("the speaker was not paged")
	}
	require.Contains(t, page.Header("Call-Info"), "answer-after=0")
	require.Contains(t, page.Header("Alert-Info"), "alert-autoanswer")
	select {
	case <-page.Done():
		require.True(t, page.EndedByRemote(), "the server hangs up once it has spoken")
	case <-ctx.Done():
		t.Fatal("the page was never hung up")
	}
	seq := sequence(t, page.Negotiated().Codec, media.PromptCallParkedAt, parked.Orbit())
	require.GreaterOrEqual(t, said(page.Heard(), seq), 0, "the page said where, frame for frame")
	from, err := media.DefaultPrompts().Clip(media.PromptFrom)
	require.NoError(t, err)
	require.Equal(t, -1, said(page.Heard(), from.Frames(page.Negotiated().Codec)), "alice is no number: no 'from'")

	require.NoError(t, deaf.Inbox().WaitCancels(ctx, 1), "the page nobody answers is given up")
	waitUntil(t, 5*time.Second, "both pages are told of", func() bool { mu.Lock(); defer mu.Unlock(); return len(tellings) == 2 })
	mu.Lock()
	byTo := map[string]sipadapter.Telling{}
	for _, tl := range tellings {
		require.Equal(t, sipadapter.Paged, tl.Kind)
		require.Equal(t, parked.Orbit(), string(tl.Orbit))
		byTo[tl.To] = tl
	}
	mu.Unlock()
	require.NoError(t, byTo[speaker.URI()].Err, "the speaker's page got through")
	require.Error(t, byTo[deaf.URI()].Err, "the deaf one's did not")
	require.NoError(t, parked.WaitReceived(ctx, parked.Received()+5), "the park goes on")
	require.NoError(t, parked.Hangup(ctx))

	_, err = sipadapter.New(sipadapter.Config{Paging: sipadapter.Paging{URIs: []string{"tel:+1555"}}})
	var ce *sipadapter.ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "Config.Paging.URIs[0]", ce.Field)
}

// A prompts directory with one digit recorded anew: the parker hears that
// recording for the 7 and the built-in prompts for the rest.
func TestReplacedPromptIsSaid(t *testing.T) {
	dir := t.TempDir()
	seven, err := media.Tone("a recorded seven", 300, 400*time.Millisecond)
	require.NoError(t, err)
	writeWAV(t, filepath.Join(dir, "7.wav"), seven.PCM())
	prompts, err := media.LoadPrompts(dir)
	require.NoError(t, err)
	srv := testServer(t, sipadapter.Config{
		Orbits:        orbitsTable(t, "701-701"),
		Announcements: sipadapter.Announcements{Parker: true, Prompts: prompts},
	})
	bob := parktest.NewPhone(t, parktest.PhoneOptions{User: "bob"})
	ctx := ctxFor(t, 20*time.Second)
	consult, err := bob.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true, KeepAudio: true})
	require.NoError(t, err)
	codec := consult.Negotiated().Codec
	clips, err := prompts.Say(media.PromptParkedAt, "7", "0", "1")
	require.NoError(t, err)
	want, err := media.Sequence(codec, clips...)
	require.NoError(t, err)
	requireSaidOnce(ctx, t, consult, want)
	require.Equal(t, -1, said(consult.Heard(), sequence(t, codec, media.PromptParkedAt, "701")), "not the built-in seven")
	require.NoError(t, consult.Hangup(ctx))
}

// writeWAV writes 8 kHz mono 16-bit pcm as a WAV file.
func writeWAV(t *testing.T, path string, pcm []int16) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("RIFF")
	for _, v := range []any{uint32(36 + 2*len(pcm))} {
		require.NoError(t, binary.Write(&b, binary.LittleEndian, v))
	}
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(8000), uint32(16000), uint16(2), uint16(16)} {
		require.NoError(t, binary.Write(&b, binary.LittleEndian, v))
	}
	b.WriteString("data")
	require.NoError(t, binary.Write(&b, binary.LittleEndian, uint32(2*len(pcm))))
	require.NoError(t, binary.Write(&b, binary.LittleEndian, pcm))
	require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
}

// A page names the caller when its URI is a number: "call parked at seven
// zero one from five five five one".
func TestPageNamesANumberedCaller(t *testing.T) {
	speaker := parktest.NewPhone(t, parktest.PhoneOptions{User: "speaker"})
	require.NoError(t, speaker.SetAnswer(parktest.AnswerPolicy{Mode: parktest.AutoAnswer, Mute: true, KeepAudio: true}))
	srv := testServer(t, sipadapter.Config{Paging: sipadapter.Paging{URIs: []string{speaker.URI()}}})
	caller := parktest.NewPhone(t, parktest.PhoneOptions{User: "5551"})
	ctx := ctxFor(t, 20*time.Second)
	parked, err := caller.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	require.NoError(t, err)
	var page *parktest.Call
	select {
	case page = <-speaker.Incoming():
	case <-ctx.Done():
		t.Fatal("not paged")
	}
	<-page.Done()
	names, err := media.SpokenOrbit(parked.Orbit())
	require.NoError(t, err)
	clips, err := media.DefaultPrompts().Say(append(append([]string{media.PromptCallParkedAt}, names...), media.PromptFrom, "5", "5", "5", "1")...)
	require.NoError(t, err)
	want, err := media.Sequence(page.Negotiated().Codec, clips...)
	require.NoError(t, err)
	require.GreaterOrEqual(t, said(page.Heard(), want), 0)
	require.NoError(t, parked.Hangup(ctx))
}
