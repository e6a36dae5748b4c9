// Package parktest is to callpark what net/http/httptest is to net/http: a
// scripted SIP phone for tests that drive a call park server, ours or a PBX
// vendor's wiring of the SDK.
//
// A Phone listens on 127.0.0.1 on a free UDP or TCP port and does what the
// park contract (SIP-CONTRACT.md) needs a peer to do, each step a method that
// returns when the network has answered. What a test of a park server calls
// is small:
//
//   - park and retrieve: Phone.Call an extension or an orbit, with headers
//     such as Referred-By; Call.Orbit reads the X-Park-Orbit of the answer;
//   - hear and be heard: every call has its own RTP port that sends a
//     440 Hz tone (media.Tone through a media.Scheduler) and counts what
//     arrives (Call.WaitReceived);
//   - recalls: SetAnswer answers incoming INVITEs at once, after a delay,
//     rejects them, or lets them ring until cancelled; answered calls arrive
//     on Incoming, and the Inbox counts INVITEs, CANCELs and MESSAGEs
//     ("Parked at 701");
//   - re-park and attended transfer: Call.Refer collects the NOTIFYs of a
//     REFER, Call.ReplacingURI builds a Refer-To with Replaces, and a phone
//     follows REFERs it receives as a transferee does (Transfers);
//   - BLF: Subscribe, with ParseDialogInfo for the RFC 4235 bodies;
//   - behind a PBX: Register binds the phone's contact at a registrar (and
//     unregisters with a zero expiry), and PhoneOptions.Password answers
//     digest challenges to REGISTER and INVITE;
//   - the rest: holds (Call.Hold, Call.Resume), Options, and Send for
//     deliberately odd requests.
//
// With no server at hand, a phone also plays the server's part towards
// another phone, set up once in its PhoneOptions: OnRefer answers REFERs
// with the sipfrags a server would send, and a Notifier in Serve serves
// subscriptions. That is how this package tests itself; a test of a real
// server needs neither.
//
// The phone builds its dialogs itself on sipgo's transaction layer instead of
// using sipgo's dialog sessions: a phone must send and receive re-INVITEs,
// REFERs and NOTIFYs on both sides of a call, and sipgo's ReadInvite rewrites
// the To tag of re-INVITEs. It resends its 2xx to an INVITE until the ACK
// (RFC 3261 §13.3.1.4) and acknowledges retransmitted 2xx, which sipgo leaves
// to the user agent. It binds its requests to its listening UDP socket so
// that Contact and Via carry the port peers must use.
//
// Limits, on purpose: IPv4 loopback only, no TLS, digest authentication
// only for REGISTER and INVITE (answering each challenge, never sending
// credentials unasked), loose routing only, no subscription or registration
// refresh, and an incoming INVITE with Replaces is answered as a new call
// (the park server is the party that honours Replaces). A Phone logs only to PhoneOptions.Logger; sipgo itself writes a
// few records to slog.Default that no option reaches (a TCP phone's Close
// may log "TCP ref went negative").
package parktest
