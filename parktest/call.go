package parktest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// CallOptions tunes one outgoing call. The zero value is a plain call that
// sends audio.
type CallOptions struct {
	// Headers are added to the INVITE: Referred-By for a directed park,
	// Replaces to take a call over, anything a test wants the server to see.
	Headers []sip.Header
	// Codecs override the phone's for this call's offer.
	Codecs []media.Codec
	// Mute keeps the call silent until StartAudio; by default it sends a
	// 440 Hz tone from the answer on, so that the far end has audio to
	// relay.
	Mute bool
	// LateOffer sends the INVITE without SDP, as some PBXs do: the callee
	// offers in its 200 OK and the phone answers in the ACK.
	LateOffer bool
	// KeepAudio keeps the payload of each audio packet the call receives
	// (the first 100 s of them), for Heard: a test that checks what was
	// said, not only that packets came. On an SRTP call they are the
	// decrypted payloads.
	KeepAudio bool
	// SRTP, when set, offers RTP/SAVP with this suite and a fresh key
	// (SDES, RFC 4568): the call then encrypts what it sends and decrypts
	// what it receives. Zero offers plain RTP/AVP.
	SRTP media.SRTPSuite
	// KeepWire keeps each datagram the call's RTP port receives as it came
	// (the first 5,000), for Wire: on an SRTP call, still encrypted.
	KeepWire bool
}

// Call is one established call of a phone, outgoing or incoming: its dialog,
// its RTP port and what was negotiated. A Call is safe for concurrent use.
type Call struct {
	phone    *Phone
	dlg      *dialog
	outgoing bool
	setup    []sip.Header // headers of the 200 OK (outgoing) or the INVITE (incoming)
	ep       *media.Endpoint
	done     chan struct{}
	reinvite sync.Mutex // our re-INVITEs go one at a time
	heard    *audioLog  // CallOptions.KeepAudio
	wire     *audioLog  // CallOptions.KeepWire

	mu            sync.Mutex
	local         media.LocalMedia
	lastSDP       []byte       // the last SDP body we sent
	offer         *media.Offer // our last offer, to check its answer
	neg           media.Negotiated
	remote        *media.RemoteMedia
	ended         bool
	endedByRemote bool
	reinviting    bool                    // our re-INVITE is in progress (glare, RFC 3261 §14.2)
	acks          map[uint32]*sip.Request // ACKs of our INVITEs by CSeq, resent on a stray 2xx
	pendingAck    *ackWait                // our 2xx waiting for its ACK
	refers        []*referWaiter
}

// maxHeard is how many payloads KeepAudio keeps: 100 s of 20 ms frames.
const maxHeard = 5000

// audioLog keeps what a call heard (CallOptions.KeepAudio).
type audioLog struct {
	mu       sync.Mutex
	payloads [][]byte
}

func (a *audioLog) add(payload []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.payloads) < maxHeard {
		a.payloads = append(a.payloads, append([]byte(nil), payload...))
	}
}

// Heard returns the payloads of the audio packets the call has received,
// in the order they came, when it was placed with CallOptions.KeepAudio;
// nil otherwise.
func (c *Call) Heard() [][]byte {
	if c.heard == nil {
		return nil
	}
	c.heard.mu.Lock()
	defer c.heard.mu.Unlock()
	return append([][]byte(nil), c.heard.payloads...)
}

// ackWait is a 2xx of ours to an INVITE waiting for its ACK.
type ackWait struct {
	seq  uint32
	done chan struct{} // closed when the ACK arrives
	req  *sip.Request  // the ACK, set before done is closed; nil when a later INVITE implied it
}

// Hold puts the call on hold with a re-INVITE offering a=sendonly; the
// peer's answer (recvonly from an RFC 3264 peer, inactive from one that holds
// too) shows in RemoteSDP and Negotiated. Non-2xx answers come back as
// *StatusError and leave the call as it was.
func (c *Call) Hold(ctx context.Context) error { return c.offerDirection(ctx, media.SendOnly) }

// Resume takes the call off hold with a re-INVITE offering a=sendrecv.
func (c *Call) Resume(ctx context.Context) error { return c.offerDirection(ctx, media.SendRecv) }

func (c *Call) offerDirection(ctx context.Context, dir media.Direction) error {
	p := c.phone
	if !p.enter() {
		return ErrPhoneClosed
	}
	defer p.leave()
	c.reinvite.Lock()
	defer c.reinvite.Unlock()
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return ErrCallEnded
	}
	c.reinviting = true
	saved := c.local
	offer, err := c.offerLocked(dir)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reinviting = false
		c.mu.Unlock()
	}()
	if err != nil {
		return fmt.Errorf("parktest: SDP offer: %w", err)
	}
	req := c.dlg.newRequest(sip.INVITE)
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(offer.SDP())
	seq := req.CSeq().SeqNo
	res, err := p.do(ctx, req)
	if err == nil && !res.IsSuccess() {
		err = statusError(req, res)
	}
	if err != nil {
		// The offer did not take: the next one starts from the old SDP.
		c.mu.Lock()
		c.local, c.lastSDP = saved, nil
		c.mu.Unlock()
		return err
	}
	ack := c.dlg.ack(seq)
	c.mu.Lock()
	c.acks[seq] = ack
	c.mu.Unlock()
	p.sendAck(ack)
	c.dlg.updateTarget(res.Contact())
	return c.applyAnswer(offer, res.Body())
}

// resendAck answers a retransmitted 2xx to our INVITE numbered seq.
func (c *Call) resendAck(seq uint32) {
	c.mu.Lock()
	ack := c.acks[seq]
	c.mu.Unlock()
	if ack != nil {
		c.phone.sendAck(ack)
	}
}

// Hangup ends the call with a BYE. The call ends whatever the answer; a
// non-2xx answer (481 when the peer had already hung up) comes back as
// *StatusError. Hanging up an ended call does nothing and returns nil.
func (c *Call) Hangup(ctx context.Context) error {
	if c.isEnded() {
		return nil
	}
	p := c.phone
	if !p.enter() {
		return ErrPhoneClosed
	}
	defer p.leave()
	return c.hangup(ctx)
}

func (c *Call) hangup(ctx context.Context) error {
	if c.isEnded() {
		return nil
	}
	req := c.dlg.newRequest(sip.BYE)
	res, err := c.phone.do(ctx, req)
	c.end(false)
	if err != nil {
		return err
	}
	if !res.IsSuccess() {
		return statusError(req, res)
	}
	return nil
}

// hangupBestEffort hangs up without waiting long: the call went wrong (no
// ACK, a bad SDP in the ACK).
func (c *Call) hangupBestEffort() {
	ctx, cancel := context.WithTimeout(context.Background(), closeHangupBudget)
	defer cancel()
	if err := c.hangup(ctx); err != nil {
		c.phone.log.Debug("parktest: BYE failed", "call-id", c.dlg.callID, "error", err)
	}
}

// end closes the call's media and marks it ended, once. The dialog stays
// reachable while a REFER of ours still waits for its NOTIFYs.
func (c *Call) end(byRemote bool) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended, c.endedByRemote = true, byRemote
	keep := len(c.refers) > 0
	c.mu.Unlock()
	if c.ep != nil {
		_ = c.ep.Close()
	}
	// Forgotten before Done closes: whoever waits on Done finds the phone
	// holding nothing more of the call (TestByeBeforeAckStillDeliversTheCall
	// looked in between, about 1 run in 20 under -race).
	if !keep {
		c.phone.unregister(c)
	}
	close(c.done)
}

func (c *Call) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// Done is closed when the call has ended, by a BYE either way.
func (c *Call) Done() <-chan struct{} { return c.done }

// EndedByRemote reports whether the call ended with a BYE from the peer.
func (c *Call) EndedByRemote() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.endedByRemote
}

// Outgoing reports whether the phone placed the call (Phone.Call) rather
// than answered it.
func (c *Call) Outgoing() bool { return c.outgoing }

// Header returns the first value of the named header (case-insensitive,
// compact forms too) of the message that set the call up: the 200 OK for an
// outgoing call, the INVITE for an incoming one. Empty if absent.
func (c *Call) Header(name string) string { return headerValue(c.setup, name) }

// Orbit returns the X-Park-Orbit header of the 200 OK that parked the call:
// the orbit a park server put it in.
func (c *Call) Orbit() string { return c.Header("X-Park-Orbit") }

// compactForms maps the long header names that have a compact form (RFC
// 3261 §7.3.3, RFC 3515, RFC 3892, RFC 6665) to it.
var compactForms = map[string]string{
	"call-id": "i", "contact": "m", "content-encoding": "e", "content-length": "l",
	"content-type": "c", "from": "f", "subject": "s", "supported": "k", "to": "t",
	"via": "v", "refer-to": "r", "referred-by": "b", "event": "o", "allow-events": "u",
}

// headerValue finds the first header named name (or its compact form) in hs.
func headerValue(hs []sip.Header, name string) string {
	compact := compactForms[strings.ToLower(name)]
	for _, h := range hs {
		if strings.EqualFold(h.Name(), name) || (compact != "" && strings.EqualFold(h.Name(), compact)) {
			return h.Value()
		}
	}
	return ""
}

// CallID returns the call's Call-ID.
func (c *Call) CallID() string { return c.dlg.callID }

// Wire returns the datagrams the call's RTP port received, as they came,
// when it was placed with CallOptions.KeepWire; nil otherwise.
func (c *Call) Wire() [][]byte {
	if c.wire == nil {
		return nil
	}
	c.wire.mu.Lock()
	defer c.wire.mu.Unlock()
	return append([][]byte(nil), c.wire.payloads...)
}

// RemoteSDP returns the peer's last session description (its offer or its
// answer), nil while none has arrived (an INVITE without SDP before the ACK).
func (c *Call) RemoteSDP() *media.RemoteMedia {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote
}

// Negotiated returns what the last offer/answer agreed; its Direction is
// ours (SendOnly while we hold the peer, RecvOnly while it holds us).
func (c *Call) Negotiated() media.Negotiated {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.neg
}

// Received returns the number of RTP packets of the negotiated payload types
// received on the call's port.
func (c *Call) Received() uint64 { return c.ep.Stats().Received }

// RTPStats returns all the counters of the call's RTP port.
func (c *Call) RTPStats() media.EndpointStats { return c.ep.Stats() }

// LocalRTP returns the address of the call's RTP port.
func (c *Call) LocalRTP() netip.AddrPort { return c.ep.LocalAddr() }

// WaitReceived waits until at least n RTP packets have been received. It
// returns ErrCallEnded if the call ends first.
func (c *Call) WaitReceived(ctx context.Context, n uint64) error {
	ended := false
	err := pollUntil(ctx, c.phone.closing, pollInterval, func() bool {
		if c.ep.Stats().Received >= n {
			return true
		}
		select {
		case <-c.done:
			ended = true
			return true
		default:
			return false
		}
	})
	if err == nil && ended {
		return fmt.Errorf("%w: %d of %d RTP packets received", ErrCallEnded, c.ep.Stats().Received, n)
	}
	return err
}

// StartAudio sends a 440 Hz tone to the peer as paced RTP in the negotiated
// codec (paused while the negotiated direction forbids sending). Calls send it
// from the start unless muted; calling it again changes nothing.
func (c *Call) StartAudio() error {
	if err := c.ep.PlayMusic(c.phone.tone.Frames(c.ep.Codec())); err != nil {
		if errors.Is(err, media.ErrClosed) {
			return ErrCallEnded
		}
		return err
	}
	return nil
}

// StopAudio stops sending audio.
func (c *Call) StopAudio() { c.ep.StopMusic() }

// Send sends a request a test built by hand inside the call's dialog: each
// dialog header it lacks (From, To, Call-ID, CSeq, Max-Forwards, Route,
// Contact; the Request-URI if it has no host) is filled in, the others are
// left as they are, so that odd requests (a REFER without Refer-To) can be
// sent. It returns the final response whatever its status; the 2xx of an
// INVITE sent this way is not acknowledged (use Hold and Resume).
func (c *Call) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if req.IsAck() || req.IsCancel() {
		return nil, fmt.Errorf("%w: Send: method %s has no response to wait for", ErrInvalidOptions, req.Method)
	}
	if c.isEnded() {
		return nil, ErrCallEnded
	}
	p := c.phone
	if !p.enter() {
		return nil, ErrPhoneClosed
	}
	defer p.leave()
	c.dlg.fill(req)
	return p.do(ctx, req)
}

// ReplacingURI returns target with a Replaces URI header (RFC 3891) naming
// this call's dialog: the Refer-To of an attended transfer, so that whoever
// calls it takes this call's place (SIP-CONTRACT flow 5b: park by attended
// transfer). Pass it to another call's Refer.
func (c *Call) ReplacingURI(target string) string {
	sep := "?"
	if strings.Contains(target, "?") {
		sep = "&"
	}
	return target + sep + "Replaces=" + escapeURIHeaderValue(c.dlg.replaces())
}
