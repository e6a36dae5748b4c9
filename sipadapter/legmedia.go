package sipadapter

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
)

// legMedia is where a host's call legs get their media: an RTP port from
// Ports, SDP that names IP, audio paced by Scheduler. The server and
// examples/pbx answer INVITEs and place calls through it, so both follow one
// set of offer/answer rules: G.711 or 488, a parked leg answered one-way,
// delayed offer only when asked for.
type legMedia struct {
	Ports     *PortPool
	IP        netip.Addr // written into SDP c= lines
	Username  string     // the SDP o= user
	Scheduler *media.Scheduler
	// Shared, when set, is the one RTP port every parked leg answers with
	// (EngineConfig.SharedRTPPort); nil gives each leg a port of its own.
	Shared *media.SharedPort
	// Logger gets the endpoints' diagnostics; nil is silent.
	Logger *slog.Logger
	// AcceptLateOffer answers an INVITE without SDP with an offer of ours,
	// which the ACK must answer (Config.AcceptLateOffer says why it is off
	// by default).
	AcceptLateOffer bool
	// LateOfferSwitch, when AcceptLateOffer is off, is named in the 488's
	// warning as the way to turn it on ("-late-offer").
	LateOfferSwitch string
	// SRTP is the policy for plain and SRTP offers (EngineConfig.SRTP).
	SRTP media.SRTPPolicy
}

// mediaRefusal is a new INVITE's media refused: the final response to send, and
// why. It is the error legMedia.Answer returns; errors.Is sees the cause
// (media.ErrBadSDP, ErrNoRTPPort, ...) through it.
type mediaRefusal struct {
	Code    int
	Reason  string
	Headers []sip.Header
	Err     error
	// Overload is set when the refusal is for want of an RTP port, which a
	// host logs louder than a bad offer.
	Overload bool
}

func (r *mediaRefusal) Error() string {
	return fmt.Sprintf("sipadapter: %d %s: %v", r.Code, r.Reason, r.Err)
}

// Unwrap returns the cause.
func (r *mediaRefusal) Unwrap() error { return r.Err }

// endpoint builds an endpoint on a port already taken from Ports, set up
// from what offer/answer agreed; on error the port is given back.
func (m legMedia) endpoint(conn *media.Socket, n media.Negotiated) (*media.Endpoint, error) {
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return m.Ports.endpoint(conn, media.EndpointOptions{
		Remote:         n.Remote,
		Codec:          n.Codec,
		PayloadType:    n.PayloadType,
		TelephoneEvent: n.TelephoneEvent,
		Scheduler:      m.Scheduler,
		Logger:         logger.With("component", "rtp"),
		SRTP:           n.SRTP,
	})
}

// session is the SDP session of a leg whose RTP port is port. Under
// SRTPRequired our own offers (recalls, late offers) are SRTP too.
func (m legMedia) session(port uint16) *media.Session {
	local := media.LocalMedia{Addr: netip.AddrPortFrom(m.IP, port), Username: m.Username, SRTP: m.SRTP}
	if m.SRTP == media.SRTPRequired {
		local.SRTPSuite, local.SRTPKey = media.SuiteAESCM128SHA1_80, media.NewSRTPKey()
	}
	return media.NewSession(local)
}

// Offering takes an RTP port for a call we place (a recall, a call to an
// extension): an endpoint that sends PCMU until the answer says otherwise,
// and the session to make the offer from. A recall of a parked call that
// keeps a port (reserved) may take one kept for recalls.
func (m legMedia) Offering(reserved bool) (*media.Endpoint, *media.Session, error) {
	acquire := m.Ports.acquire
	if reserved {
		acquire = m.Ports.acquireReserved
	}
	conn, err := acquire()
	if err != nil {
		return nil, nil, err
	}
	ep, err := m.endpoint(conn, media.Negotiated{Codec: media.PCMU})
	if err != nil {
		return nil, nil, err
	}
	return ep, m.session(ep.LocalAddr().Port()), nil
}

// Answer prepares the media of req, a new INVITE, before the host reads its
// dialog: it takes an RTP port, builds the endpoint and returns the leg's
// Endpoint, SDP, Direction and LateOffer (the host adds sipDialog and Party)
// with the body of the 2xx. A parked leg (parked) answers one-way
// (media.ParkedDirection), any other sendrecv; an INVITE without SDP gets
// our offer when AcceptLateOffer is set. On a mediaRefusal nothing is held; on
// success the host frees the endpoint (Ports.FreeEndpoint) if it goes no
// further. A refusal is a *mediaRefusal. A leg that takes over a parked
// call's recall port (reserved: its retriever) may take a port kept for
// recalls.
func (m legMedia) Answer(req *sip.Request, parked, reserved bool) (legConfig, []byte, error) {
	late := len(req.Body()) == 0
	if late && !m.AcceptLateOffer {
		why := "no SDP offer: delayed offer is off"
		if m.LateOfferSwitch != "" {
			why += " (" + m.LateOfferSwitch + ")"
		}
		return legConfig{}, nil, &mediaRefusal{
			Code: sip.StatusNotAcceptableHere, Reason: "Not Acceptable Here",
			Headers: []sip.Header{warning(why)},
			Err:     errors.New("no SDP offer, and late offers are not accepted"),
		}
	}
	var offer *media.RemoteMedia
	stance := media.SendRecv
	if late {
		if parked {
			stance = media.SendOnly // a parked leg plays music and expects nothing
		}
	} else {
		var err error
		if offer, err = media.ParseOffer(req.Body()); err != nil {
			code, reason := offerStatus(err, req.Body())
			return legConfig{}, nil, &mediaRefusal{Code: code, Reason: reason, Headers: []sip.Header{warning(err.Error())}, Err: err}
		}
		if parked {
			stance = media.ParkedDirection(offer.Direction)
		}
	}
	if parked && m.Shared != nil {
		return m.answerShared(req, offer, stance)
	}
	acquire := m.Ports.acquire
	if reserved {
		acquire = m.Ports.acquireReserved
	}
	conn, err := acquire()
	if err != nil {
		code, reason, headers := statusFor(err)
		return legConfig{}, nil, &mediaRefusal{Code: code, Reason: reason, Headers: headers, Err: err, Overload: true}
	}
	sdp := m.session(conn.LocalAddr().Port())
	var body []byte
	var lateOffer *media.Offer
	n := media.Negotiated{Codec: media.PCMU, Direction: stance} // until the ACK answers a late offer
	if late {
		if lateOffer, err = sdp.Offer(stance); err == nil {
			body = lateOffer.SDP()
		}
	} else {
		body, n, err = sdp.Answer(offer, stance)
	}
	if err != nil {
		m.Ports.freeConn(conn)
		return legConfig{}, nil, &mediaRefusal{Code: sip.StatusNotAcceptableHere, Reason: "Not Acceptable Here", Headers: []sip.Header{warning(err.Error())}, Err: err}
	}
	ep, err := m.endpoint(conn, n)
	if err != nil {
		return legConfig{}, nil, &mediaRefusal{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Err: err}
	}
	if n.RemoteHold {
		ep.Hold()
	}
	return legConfig{Endpoint: ep, SDP: sdp, Direction: n.Direction, LateOffer: lateOffer}, body, nil
}

// answerShared is Answer for a parked leg on the shared port: no port of
// its own is taken, the SDP names the shared one, and the leg may latch to
// RTP from the host its INVITE came from (a phone behind NAT whose SDP
// names its private address).
func (m legMedia) answerShared(req *sip.Request, offer *media.RemoteMedia, stance media.Direction) (legConfig, []byte, error) {
	sdp := m.session(m.Shared.LocalAddr().Port())
	var (
		body      []byte
		lateOffer *media.Offer
		err       error
	)
	n := media.Negotiated{Codec: media.PCMU, Direction: stance}
	if offer == nil {
		if lateOffer, err = sdp.Offer(stance); err == nil {
			body = lateOffer.SDP()
		}
	} else {
		body, n, err = sdp.Answer(offer, stance)
	}
	if err != nil {
		return legConfig{}, nil, &mediaRefusal{Code: sip.StatusNotAcceptableHere, Reason: "Not Acceptable Here", Headers: []sip.Header{warning(err.Error())}, Err: err}
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ep, err := m.Shared.NewEndpoint(media.EndpointOptions{
		Remote:         n.Remote,
		Codec:          n.Codec,
		PayloadType:    n.PayloadType,
		TelephoneEvent: n.TelephoneEvent,
		Logger:         logger.With("component", "rtp"),
		SignalingAddr:  requestSource(req).Addr(),
		SRTP:           n.SRTP,
	})
	if err != nil {
		return legConfig{}, nil, &mediaRefusal{Code: sip.StatusInternalServerError, Reason: "Server Internal Error", Err: err}
	}
	if n.RemoteHold {
		ep.Hold()
	}
	return legConfig{Endpoint: ep, SDP: sdp, Direction: n.Direction, LateOffer: lateOffer}, body, nil
}
