// Package callpark is a call park SDK for Go telephony programs: put a call on
// hold in a numbered orbit, let anyone retrieve it by dialling that orbit, and
// ring it back to the parker, then a fallback, when nobody does. It follows
// the Call Park application of Lync Server 2013 and adds what that, Asterisk's
// res_parking and FreeSWITCH's valet_parking lack: an embeddable Go API,
// atomic directed park, safe retrieve, and no call lost on shutdown.
//
// The packages, from the bottom up:
//
//   - orbit: what an orbit number is (Lync's numbering rules), which pool
//     serves it, and how free orbits are handed out (O(1), three policies).
//   - park: the life of a parked call, without SIP: park, retrieve, timeout,
//     recall, fallback, hang-up, shutdown, each call ending in exactly one
//     outcome and every change published as an event.
//   - media: what a parked caller hears and the bridge afterwards: built-in
//     music, tones and WAV files, G.711 encoded once and shared, RTP paced by
//     one scheduler for thousands of streams, SDP offer/answer, and a relay
//     that transcodes PCMU and PCMA.
//   - sipadapter: the SIP side, on sipgo: a park server (Server) for a PBX
//     to point at, or the park engine (Engine) a vendor's own SIP stack
//     hands its requests to; docs/SIP-CONTRACT.md is its promise on the
//     wire.
//   - parktest: a scripted SIP phone, as httptest is to net/http, for
//     testing a host's park wiring.
//
// orbit, park and media import no SIP library: a vendor with its own SIP stack
// supplies a park.Leg for the parked call and a park.Dialer for recalls.
//
//	lot, err := park.NewLot(park.Config{
//		PickupTimeout: 90 * time.Second,          // then recall the parker
//		FallbackURI:   "sip:operator@example.com", // then this, then hang up
//		Dialer:        myDialer,                   // rings via your SIP stack
//	})
//	if err != nil {
//		return err
//	}
//	call, err := lot.Park(ctx, park.ParkRequest{Leg: myLeg, Parker: "sip:bob@example.com"})
//	if err != nil {
//		return err // park.ErrLotFull, park.ErrOrbitInUse, ...
//	}
//	tellParker(call.Orbit()) // "701"
//	got, err := lot.Retrieve(ctx, park.RetrieveRequest{Orbit: "701"})
//	connect(retriever, got.Leg()) // exactly one retriever wins
//
// examples/embed runs this in memory with real RTP; see the README for more.
package callpark
