package media_test

import (
	"fmt"
	"net"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/pion/rtp"
)

// rtpSocketForExample opens an RTP socket on the loopback interface, port chosen by the
// system.
func rtpSocketForExample() *net.UDPConn {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	return c
}

// receiveRTPForExample reads one RTP packet (waiting 5 s at most).
func receiveRTPForExample(c *net.UDPConn) rtp.Packet {
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		panic(err)
	}
	n, err := c.Read(buf)
	if err != nil {
		panic(err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(buf[:n]); err != nil {
		panic(err)
	}
	return p
}

// One scheduler paces every stream of the process; each stream sends from
// its own socket (here any PacketWriter) to its peer.
func ExampleScheduler_Play() {
	s := media.NewScheduler(media.SchedulerOptions{})
	defer s.Close()

	conn, peer := rtpSocketForExample(), rtpSocketForExample()
	defer conn.Close()
	defer peer.Close()

	tone := make([]int16, media.SampleRate) // one second of silence
	frames := media.NewFrames(media.PCMU, tone)
	stream, err := s.Play(conn, peer.LocalAddr().(*net.UDPAddr).AddrPort(), frames)
	if err != nil {
		panic(err)
	}
	defer stream.Stop()

	first, second := receiveRTPForExample(peer), receiveRTPForExample(peer)
	fmt.Println("payload type", first.PayloadType, "marker", first.Marker, "bytes", len(first.Payload))
	fmt.Println("next: sequence +", second.SequenceNumber-first.SequenceNumber,
		"timestamp +", second.Timestamp-first.Timestamp, "marker", second.Marker)
	// Output:
	// payload type 0 marker true bytes 160
	// next: sequence + 1 timestamp + 160 marker false
}

// A parked caller's leg plays hold music until someone retrieves the call.
func ExampleEndpoint_PlayMusic() {
	s := media.NewScheduler(media.SchedulerOptions{})
	defer s.Close()
	phone := rtpSocketForExample()
	defer phone.Close()

	leg, err := media.NewEndpoint(rtpSocketForExample(), media.EndpointOptions{
		Remote:    phone.LocalAddr().(*net.UDPAddr).AddrPort(), // from the phone's SDP
		Codec:     media.PCMA,
		Scheduler: s,
	})
	if err != nil {
		panic(err)
	}
	defer leg.Close()

	music := media.NewFrames(media.PCMA, make([]int16, 4*media.SamplesPerFrame))
	if err := leg.PlayMusic(music); err != nil {
		panic(err)
	}
	p := receiveRTPForExample(phone)
	fmt.Println("phone hears payload type", p.PayloadType, "from SSRC of the leg:", p.SSRC == leg.SSRC())
	// Output:
	// phone hears payload type 8 from SSRC of the leg: true
}

// Retrieving a parked call bridges the retriever's leg to the parked one; a
// PCMU phone and a PCMA phone hear each other through transcoding.
func ExampleBridge() {
	s := media.NewScheduler(media.SchedulerOptions{})
	defer s.Close()
	parked, retriever := rtpSocketForExample(), rtpSocketForExample()
	defer parked.Close()
	defer retriever.Close()

	parkedLeg, err := media.NewEndpoint(rtpSocketForExample(), media.EndpointOptions{
		Remote: parked.LocalAddr().(*net.UDPAddr).AddrPort(), Codec: media.PCMU, TelephoneEvent: 101, Scheduler: s,
	})
	if err != nil {
		panic(err)
	}
	defer parkedLeg.Close()
	retrieverLeg, err := media.NewEndpoint(rtpSocketForExample(), media.EndpointOptions{
		Remote: retriever.LocalAddr().(*net.UDPAddr).AddrPort(), Codec: media.PCMA, TelephoneEvent: 96, Scheduler: s,
	})
	if err != nil {
		panic(err)
	}
	defer retrieverLeg.Close()

	relay, err := media.Bridge(parkedLeg, retrieverLeg)
	if err != nil {
		panic(err)
	}
	defer relay.Close()

	// The parked phone speaks PCMU (0xff is µ-law silence)...
	payload := make([]byte, media.SamplesPerFrame)
	for i := range payload {
		payload[i] = 0xff
	}
	speech, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 1, Timestamp: 160, SSRC: 7}, Payload: payload}).Marshal()
	if _, err := parked.WriteToUDPAddrPort(speech, parkedLeg.LocalAddr()); err != nil {
		panic(err)
	}
	// ... and the retriever hears PCMA (0xd5 is A-law silence).
	p := receiveRTPForExample(retriever)
	fmt.Printf("payload type %d, first byte %#x\n", p.PayloadType, p.Payload[0])
	// Output:
	// payload type 8, first byte 0xd5
}
