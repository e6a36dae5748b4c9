package parktest

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/callpark/callpark/media"
	"github.com/emiago/sipgo/sip"
)

// PhoneOptions configures a Phone. The zero value of every optional field
// means its default.
type PhoneOptions struct {
	// User is the user part of the phone's URI ("alice" in
	// sip:alice@127.0.0.1:PORT). Required.
	User string
	// Transport is "udp" (the default), "tcp" or "tls": the phone listens
	// on it and sends every request over it.
	Transport string
	// TLS is the phone's TLS configuration, required with Transport "tls":
	// its certificate (Certificates: a server opens TLS connections to the
	// phone's Contact for its requests in a call, and one requiring mutual
	// TLS asks for it) and the roots it trusts (RootCAs).
	TLS *tls.Config
	// Codecs are offered in this order and accepted in answers; empty means
	// PCMU then PCMA.
	Codecs []media.Codec
	// Logger receives the phone's and sipgo's records; nil keeps the phone
	// silent.
	Logger *slog.Logger
	// Password answers digest challenges (401 or 407, RFC 2617 MD5) to
	// REGISTER (Register) and INVITE (Call), with User as the username;
	// empty leaves challenges unanswered, as *StatusError.
	Password string
	// OnRefer decides how the phone answers the REFERs it receives in its
	// calls; nil follows each one as a transferee does
	// (ReferReply{Follow: true}). A phone standing in for a park server
	// answers with the sipfrags the server would send.
	OnRefer ReferHandler
	// Serve are the event packages whose subscriptions the phone serves, as
	// a park server serves BLF; a SUBSCRIBE to another package gets 489.
	// Each Notifier belongs to one phone.
	Serve []*Notifier
	// ReInviteAnswerDelay holds the phone's answer to each re-INVITE from
	// its peer this long, as a phone does whose answers are slow or lost
	// under load. A BYE from the peer meanwhile ends the call at once and
	// has the pending re-INVITE answered 487 Request Terminated, as RFC 3261
	// §15.1.2 recommends. Zero answers at once; an hour is a phone that
	// never answers before the call ends.
	ReInviteAnswerDelay time.Duration
}

// AnswerMode is what a phone does with an incoming call (see AnswerPolicy).
type AnswerMode int

// The answer modes. Every incoming INVITE is answered 180 Ringing first.
const (
	// AutoAnswer answers 200 OK after AnswerPolicy.Delay.
	AutoAnswer AnswerMode = iota
	// Reject answers AnswerPolicy.Code after AnswerPolicy.Delay: a parker
	// declining a recall with 486, 603 or 480.
	Reject
	// NoAnswer rings until the caller cancels: a recall that times out.
	NoAnswer
)

// String returns the mode's name.
func (m AnswerMode) String() string {
	switch m {
	case AutoAnswer:
		return "AutoAnswer"
	case Reject:
		return "Reject"
	case NoAnswer:
		return "NoAnswer"
	}
	return fmt.Sprintf("AnswerMode(%d)", int(m))
}

// AnswerPolicy is how a phone answers incoming calls. The zero value answers
// at once and sends audio.
type AnswerPolicy struct {
	// Mode is what to do with the call.
	Mode AnswerMode
	// Delay is how long the phone rings before answering or rejecting; a
	// CANCEL during it ends the attempt (counted by Cancels).
	Delay time.Duration
	// Code is Reject's final status, 300 to 699; zero means 486 Busy Here.
	Code int
	// Mute keeps answered calls silent until Call.StartAudio; by default
	// they send a tone from the answer on, as a real phone streams RTP.
	Mute bool
	// Headers are added to the final answer, 200 or rejection: a phone
	// playing a park server answers with X-Park-Orbit.
	Headers []sip.Header
	// KeepAudio keeps what answered calls hear, for Call.Heard (as
	// CallOptions.KeepAudio does for calls the phone places).
	KeepAudio bool
}

// check validates the policy and applies its defaults.
func (a AnswerPolicy) check() (AnswerPolicy, error) {
	switch a.Mode {
	case AutoAnswer, NoAnswer:
	case Reject:
		if a.Code == 0 {
			a.Code = sip.StatusBusyHere
		}
		if a.Code < 300 || a.Code > 699 {
			return a, fmt.Errorf("%w: AnswerPolicy.Code %d, want 300 to 699", ErrInvalidOptions, a.Code)
		}
	default:
		return a, fmt.Errorf("%w: AnswerPolicy.Mode %v", ErrInvalidOptions, a.Mode)
	}
	if a.Delay < 0 {
		return a, fmt.Errorf("%w: AnswerPolicy.Delay %v is negative", ErrInvalidOptions, a.Delay)
	}
	return a, nil
}

// checkPhoneOptions validates opts and returns the transport as sipgo
// spells it.
func checkPhoneOptions(opts *PhoneOptions) (string, error) {
	if opts.User == "" {
		return "", fmt.Errorf("%w: PhoneOptions.User is empty", ErrInvalidOptions)
	}
	if strings.ContainsAny(opts.User, " \t\r\n<>@:;?\"") {
		return "", fmt.Errorf("%w: PhoneOptions.User %q: want a SIP user part without spaces or <>@:;?\"", ErrInvalidOptions, opts.User)
	}
	var transport string
	switch strings.ToLower(opts.Transport) {
	case "", "udp":
		transport = "UDP"
	case "tcp":
		transport = "TCP"
	case "tls":
		transport = "TLS"
		if opts.TLS == nil || len(opts.TLS.Certificates) == 0 {
			return "", fmt.Errorf("%w: PhoneOptions.TLS must hold the phone's certificate with Transport tls", ErrInvalidOptions)
		}
	default:
		return "", fmt.Errorf("%w: PhoneOptions.Transport %q, want udp, tcp or tls", ErrInvalidOptions, opts.Transport)
	}
	if opts.ReInviteAnswerDelay < 0 {
		return "", fmt.Errorf("%w: PhoneOptions.ReInviteAnswerDelay %v is negative", ErrInvalidOptions, opts.ReInviteAnswerDelay)
	}
	for _, c := range opts.Codecs {
		if !c.Valid() {
			return "", fmt.Errorf("%w: PhoneOptions.Codecs holds %v, want PCMU or PCMA", ErrInvalidOptions, c)
		}
	}
	return transport, nil
}
