package park

import (
	"context"
)

// Music is what parked callers hear. The lot never decodes or plays audio:
// it hands its Music to Leg.Hold, and the host's media layer plays it. A
// *media.Clip is Music (a tone, a WAV file, the built-in music), and so is
// BuiltinMusic(), the lot's default. Keeping the type this small keeps the
// media libraries out of a build that only embeds the lot.
type Music interface {
	// Name says what is playing, for logs and snapshots.
	Name() string
}

// BuiltinMusic is the Music of a lot whose Config.MusicOnHold is nil: it
// stands for the host's own built-in music, which sipadapter plays as
// media.BuiltinMusic. It compares equal to itself.
func BuiltinMusic() Music { return builtinMusic{} }

type builtinMusic struct{}

func (builtinMusic) Name() string { return "built-in music" }

// Leg is the parked party's call as the host sees it. The lot never touches
// SIP or RTP itself: it tells the leg what to do and the host does it.
//
// Once a call leaves the lot by retrieve, recall or fallback, the leg is the
// host's again (it is handed back through Lot.Retrieve or Answered.Connect);
// the lot calls Hangup only on a call it drops.
type Leg interface {
	// Hold is called once when the call is parked (and on the new leg after
	// Call.Replace): start playing music, or nothing when music is nil (music
	// on hold disabled). An error aborts the park.
	Hold(ctx context.Context, music Music) error

	// Hangup ends the parked party's call: nobody took it, or the lot was
	// shut down with nowhere to send it.
	Hangup(ctx context.Context) error
}

// DialPurpose says why the lot rings someone.
type DialPurpose int

const (
	// Recall rings the parker back after the pickup timeout.
	Recall DialPurpose = iota + 1
	// Fallback rings Config.FallbackURI after the last recall.
	Fallback
)

func (p DialPurpose) String() string {
	switch p {
	case Recall:
		return "recall"
	case Fallback:
		return "fallback"
	}
	return "unknown"
}

// DialRequest is one attempt to ring someone on behalf of a parked call.
type DialRequest struct {
	Purpose DialPurpose
	Target  string   // URI to ring: the parker, or the fallback
	Attempt int      // 1-based recall attempt; 1 for the fallback
	Call    CallInfo // the parked call being offered
}

// Dialer rings a recall or fallback target. Dial returns when the target
// answers (with the answered call), refuses, or ctx ends: the lot cancels ctx
// when the ring time runs out or when the parked call is taken meanwhile
// (retrieved, hung up), and a SIP host then sends CANCEL.
//
// An answered call is not yet connected: the lot decides, atomically, whether
// the parked call is still there to give. If it is, it calls Answered.Connect;
// if someone else won the race, it calls Answered.Hangup.
type Dialer interface {
	Dial(ctx context.Context, req DialRequest) (Answered, error)
}

// DialerFunc adapts a function to the Dialer interface.
type DialerFunc func(ctx context.Context, req DialRequest) (Answered, error)

// Dial calls f(ctx, req).
func (f DialerFunc) Dial(ctx context.Context, req DialRequest) (Answered, error) { return f(ctx, req) }

// Answered is a recall or fallback call that was answered.
type Answered interface {
	// Connect bridges the answered party with the parked leg. From then on
	// the call is the host's; the lot has recorded its outcome.
	Connect(ctx context.Context, leg Leg) error

	// Hangup ends the answered call because the parked call was taken by
	// someone else (retrieved, or the parked party hung up) while it rang.
	Hangup(ctx context.Context) error
}

// Portable is a Leg another node of a cluster can continue when this one
// dies, stops or is fenced (CLUSTER.md 9-11); sipadapter's legs are. In a
// cluster the lot reads Handoff when the call is parked, replaced or
// updated (Call.Update) and shares it with the other nodes.
type Portable interface {
	Leg

	// Handoff returns what another node's Adopter needs to continue the
	// leg (its dialog and media, as the host writes them), opaque to the
	// lot. It is read outside the lot's lock.
	Handoff() ([]byte, error)

	// Forget lets the leg go without a word to its party: another node
	// continues the call now. Its music stops and it sends nothing more,
	// no BYE either.
	Forget()
}

// Adopter continues, on this node, a call another node of the cluster
// parked: the host rebuilds the leg from c.Info().Handoff (a SIP host
// sends the party a re-INVITE from here) and returns it; the lot then puts
// it on hold (Leg.Hold) in the call's orbit. The Call is the lot's handle
// for the call from now on (a host links its leg to it, as after Park).
// An error ends the call as Lost, with the error as the reason; one
// wrapping ErrClosed (the host cannot take calls now: not started yet, or
// stopping) leaves it for another node.
type Adopter interface {
	Adopt(ctx context.Context, c *Call) (Leg, error)
}

// AdopterFunc adapts a function to the Adopter interface.
type AdopterFunc func(ctx context.Context, c *Call) (Leg, error)

// Adopt calls f(ctx, c).
func (f AdopterFunc) Adopt(ctx context.Context, c *Call) (Leg, error) { return f(ctx, c) }
