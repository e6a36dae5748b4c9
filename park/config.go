package park

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/callpark/callpark/orbit"
)

// Lync Server 2013's defaults and limits (CallPickupTimeoutThreshold,
// MaxCallPickupAttempts), plus the ring time a recall gets, which Lync leaves
// to the client. Every rule the lot enforces on its configuration is here.
const (
	DefaultPickupTimeout = 90 * time.Second
	MinPickupTimeout     = 10 * time.Second
	MaxPickupTimeout     = 10 * time.Minute

	DefaultMaxPickupAttempts = 1
	MaxMaxPickupAttempts     = 10

	DefaultRecallRingTime = 30 * time.Second
	MinRecallRingTime     = time.Second
	MaxRecallRingTime     = 10 * time.Minute

	// DefaultOrbits is the range a Lot serves when Config.Orbits is nil.
	DefaultOrbits = "701-799"
)

// Config mirrors Lync Server 2013's call park settings. The zero value is Lync Server 2013's
// default configuration: 90 s pickup timeout, one recall, 30 s of ringing, no
// fallback (the call is disconnected), built-in music on hold, orbits 701-799
// chosen least recently freed first.
type Config struct {
	// PickupTimeout is how long a call waits in its orbit before it is
	// recalled (CallPickupTimeoutThreshold): 10 s to 10 min, 0 means 90 s.
	PickupTimeout time.Duration

	// MaxPickupAttempts is how many times the parker is rung back before the
	// fallback (MaxCallPickupAttempts): 1 to 10, 0 means 1.
	MaxPickupAttempts int

	// RecallRingTime is how long each recall rings the parker before it is
	// given up: 1 s to 10 min, 0 means 30 s.
	RecallRingTime time.Duration

	// FallbackURI is where a call goes when no recall is answered
	// (OnTimeoutURI): a sip: URI, or empty to disconnect the call.
	FallbackURI string

	// FallbackRingTime is how long the fallback rings: same limits as
	// RecallRingTime, 0 means RecallRingTime.
	FallbackRingTime time.Duration

	// DisableMusicOnHold turns hold music off (EnableMusicOnHold=false):
	// parked legs are told to hold with a nil clip and play nothing.
	DisableMusicOnHold bool

	// MusicOnHold is what parked callers hear, usually a *media.Clip; nil
	// means BuiltinMusic(), the host's built-in music.
	MusicOnHold Music

	// Orbits hands out orbit numbers. Nil means an in-memory allocator over
	// DefaultOrbits with the least-recently-freed policy. A shared allocator
	// (several park servers) plugs in here.
	Orbits orbit.Allocator

	// Cluster shares the lot with other park servers: their calls show in
	// Lookup, Calls and Observe, and a retrieve of one of them returns an
	// *ElsewhereError saying where it is. It goes with a shared allocator
	// in Orbits (park/redispark with orbit/redisorbit). Nil: one node.
	Cluster Cluster

	// Dialer rings the parker (recall) and the fallback. Nil means nobody can
	// be rung: a call that times out is disconnected.
	Dialer Dialer

	// Adopter continues here the calls of other nodes of the Cluster that
	// died or stopped (takeover): with one, this node takes its share of
	// them. Nil: this node takes over no call (its own calls can still be
	// taken over by other nodes when their legs are Portable).
	Adopter Adopter

	// AuthorizeRetrieve, when set, decides who may retrieve which orbit:
	// Retrieve calls it first, before looking at the orbit, so a refused
	// retriever cannot tell an empty orbit from an occupied one. A non-nil
	// error refuses (Retrieve wraps it with ErrNotAuthorized). It runs
	// without the lot's lock, so it may call Lot.Lookup, for instance to
	// let only the parker retrieve. AllowFrom builds one from address
	// prefixes. Nil lets everyone retrieve, as Lync did.
	AuthorizeRetrieve func(ctx context.Context, req RetrieveRequest) error

	// Logger receives the lot's diagnostics; nil discards them.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by every configuration error.
var ErrInvalidConfig = errors.New("invalid park configuration")

// ConfigError names the configuration field that breaks a rule.
type ConfigError struct {
	Field string // the Config field, e.g. "PickupTimeout"
	Value any    // the rejected value
	Rule  string // what the value must be
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("park: Config.%s = %v: %s", e.Field, e.Value, e.Rule)
}

// Unwrap makes every ConfigError match ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ErrInvalidRequest is wrapped by every error about a request's fields
// (ParkRequest, ReplaceRequest): a host's mistake, never the caller's.
var ErrInvalidRequest = errors.New("invalid park request")

// RequestError names the field of a request that breaks a rule, as
// ConfigError does for Config.
type RequestError struct {
	Field string // the request type and field, e.g. "ParkRequest.Parker"
	Value any    // the rejected value
	Rule  string // what the value must be
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("park: %s = %v: %s", e.Field, e.Value, e.Rule)
}

// Unwrap makes every RequestError match ErrInvalidRequest.
func (e *RequestError) Unwrap() error { return ErrInvalidRequest }

// checkParker applies the parker rule of ParkRequest and ReplaceRequest:
// empty (unknown), or a URI a recall can ring.
func checkParker(field, parker string) error {
	if parker != "" && !IsSIPURI(parker) {
		return &RequestError{field, fmt.Sprintf("%q", parker), `must be a sip: URI such as "sip:bob@example.com", or empty`}
	}
	return nil
}

// withDefaults validates c and returns it with zero fields replaced by the
// defaults of Lync Server 2013. It does not build the allocator or the music.
func (c Config) withDefaults() (Config, error) {
	if c.PickupTimeout == 0 {
		c.PickupTimeout = DefaultPickupTimeout
	}
	if c.PickupTimeout < MinPickupTimeout || c.PickupTimeout > MaxPickupTimeout {
		return c, &ConfigError{"PickupTimeout", c.PickupTimeout, fmt.Sprintf("must be between %v and %v", MinPickupTimeout, MaxPickupTimeout)}
	}
	if c.MaxPickupAttempts == 0 {
		c.MaxPickupAttempts = DefaultMaxPickupAttempts
	}
	if c.MaxPickupAttempts < 1 || c.MaxPickupAttempts > MaxMaxPickupAttempts {
		return c, &ConfigError{"MaxPickupAttempts", c.MaxPickupAttempts, fmt.Sprintf("must be between 1 and %d", MaxMaxPickupAttempts)}
	}
	if c.RecallRingTime == 0 {
		c.RecallRingTime = DefaultRecallRingTime
	}
	if c.RecallRingTime < MinRecallRingTime || c.RecallRingTime > MaxRecallRingTime {
		return c, &ConfigError{"RecallRingTime", c.RecallRingTime, fmt.Sprintf("must be between %v and %v", MinRecallRingTime, MaxRecallRingTime)}
	}
	if c.FallbackRingTime == 0 {
		c.FallbackRingTime = c.RecallRingTime
	}
	if c.FallbackRingTime < MinRecallRingTime || c.FallbackRingTime > MaxRecallRingTime {
		return c, &ConfigError{"FallbackRingTime", c.FallbackRingTime, fmt.Sprintf("must be between %v and %v", MinRecallRingTime, MaxRecallRingTime)}
	}
	if c.FallbackURI != "" && !IsSIPURI(c.FallbackURI) {
		return c, &ConfigError{"FallbackURI", fmt.Sprintf("%q", c.FallbackURI), `must be a sip: URI such as "sip:operator@example.com", or empty`}
	}
	if c.DisableMusicOnHold && c.MusicOnHold != nil {
		return c, &ConfigError{"MusicOnHold", c.MusicOnHold.Name(), "must be nil when DisableMusicOnHold is set"}
	}
	return c, nil
}

// IsSIPURI reports whether s is a plausible sip: URI: the scheme (any case),
// a host part, and no white space. It is the check the lot applies to
// FallbackURI and to parkers; full SIP parsing is the SIP layer's job.
func IsSIPURI(s string) bool {
	if len(s) < 5 || !strings.EqualFold(s[:4], "sip:") {
		return false
	}
	rest := s[4:]
	if strings.ContainsAny(s, " \t\r\n<>\"") {
		return false
	}
	host := rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if at == 0 {
			return false
		}
		host = rest[at+1:]
	}
	return host != "" && host[0] != ';' && host[0] != ':'
}
