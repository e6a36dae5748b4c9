package media_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/callpark/callpark/media"
)

// A phone's INVITE parks a call: the server answers with one PCMU stream and
// telephone-event under the phone's own numbers, and declines the video.
func ExampleAnswer() {
	offer := strings.ReplaceAll(`v=0
o=alice 2721 1838 IN IP4 10.0.0.5
s=Talk
c=IN IP4 10.0.0.5
t=0 0
m=audio 7078 RTP/AVP 96 0 8 100
a=rtpmap:96 opus/48000/2
a=rtpmap:100 telephone-event/8000
a=rtcp-mux
m=video 9078 RTP/AVP 97
a=rtpmap:97 H264/90000
`, "\n", "\r\n")

	remote, err := media.ParseOffer([]byte(offer))
	if err != nil {
		fmt.Println(err) // ErrBadSDP: 400, ErrNoAudioStream: 488
		return
	}
	local := media.LocalMedia{
		Addr:           netip.MustParseAddrPort("192.0.2.10:20000"),
		SessionID:      42, // kept for the dialog, like the version below
		SessionVersion: 1,
	}
	// SendRecv while parked: hold offers get recvonly, and the phone keeps
	// sending RTP so symmetric RTP can find it.
	answer, n, err := media.Answer(remote, local, media.SendRecv)
	if errors.Is(err, media.ErrNoCommonCodec) {
		fmt.Println("488 Not Acceptable Here")
		return
	}
	fmt.Print(strings.ReplaceAll(string(answer), "\r\n", "\n"))
	fmt.Printf("codec %v, payload type %d, telephone-event %d, send to %v, %v\n",
		n.Codec, n.PayloadType, n.TelephoneEvent, n.Remote, n.Direction)
	// Output:
	// v=0
	// o=callpark 42 1 IN IP4 192.0.2.10
	// s=-
	// c=IN IP4 192.0.2.10
	// t=0 0
	// m=audio 20000 RTP/AVP 0 100
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:100 telephone-event/8000
	// a=fmtp:100 0-16
	// a=ptime:20
	// a=sendrecv
	// m=video 0 RTP/AVP 97
	// codec PCMU, payload type 0, telephone-event 100, send to 10.0.0.5:7078, sendrecv
}

// A recall rings the parker: the server offers PCMU, PCMA and telephone-event,
// then reads what the parker's 200 OK agreed to.
func ExampleNewOffer() {
	local := media.LocalMedia{Addr: netip.MustParseAddrPort("192.0.2.10:20002"), SessionID: 7, SessionVersion: 1}
	offer, err := media.NewOffer(local, media.SendRecv)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(strings.ReplaceAll(string(offer.SDP()), "\r\n", "\n"))

	answer := "v=0\r\no=- 3 3 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n" +
		"m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
	n, err := offer.ParseAnswer([]byte(answer))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("parker answered %v (%d) at %v, %v\n", n.Codec, n.PayloadType, n.Remote, n.Direction)
	// Output:
	// v=0
	// o=callpark 7 1 IN IP4 192.0.2.10
	// s=-
	// c=IN IP4 192.0.2.10
	// t=0 0
	// m=audio 20002 RTP/AVP 0 8 101
	// a=rtpmap:0 PCMU/8000
	// a=rtpmap:8 PCMA/8000
	// a=rtpmap:101 telephone-event/8000
	// a=fmtp:101 0-16
	// a=ptime:20
	// a=sendrecv
	// parker answered PCMA (8) at 198.51.100.7:4000, sendrecv
}

// The table of RFC 3264 §6.1 for a parked leg (stance SendRecv) and for one
// that only plays music (stance SendOnly).
func ExampleAnswerDirection() {
	for _, offered := range []media.Direction{media.SendRecv, media.SendOnly, media.RecvOnly, media.Inactive} {
		fmt.Printf("%v offer: %v / %v\n", offered,
			media.AnswerDirection(offered, media.SendRecv), media.AnswerDirection(offered, media.SendOnly))
	}
	// Output:
	// sendrecv offer: sendrecv / sendonly
	// sendonly offer: recvonly / inactive
	// recvonly offer: sendonly / sendonly
	// inactive offer: inactive / inactive
}
