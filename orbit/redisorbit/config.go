package redisorbit

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/orbit"
)

// Lease limits and default (CLUSTER.md's -lease): how long a node that has
// gone silent keeps its orbits before the others free them.
const (
	DefaultLease = 10 * time.Second
	MinLease     = 2 * time.Second
	MaxLease     = 60 * time.Second

	// DefaultCluster is the lot's name when Config.Cluster is empty.
	DefaultCluster = "callpark"
)

// Config describes one node's share of a lot kept in Redis.
type Config struct {
	// Client reaches Redis (6.2 or later). Required. The allocator never
	// closes it: close it after Allocator.Close. Give it
	// Options.ContextTimeoutEnabled, so that a park's claim gives up on a
	// silent Redis within a second (else it waits for the client's
	// ReadTimeout and retries).
	Client redis.UniversalClient
	// Cluster names the lot in Redis: every key is under the hash tag
	// {callpark:<Cluster>}. Empty means DefaultCluster.
	Cluster string
	// Node names this park server among the live nodes (letters, digits
	// and ".-_:", at most 64). Required. A node restarted under the same
	// name starts a new incarnation and frees what the old one held.
	Node string
	// Advertise is the SIP host:port other nodes forward this node's
	// retrieves to; empty when nobody needs to (tests, tools).
	Advertise string
	// Lease is how long the node's claims outlive its silence: 2 s to
	// 60 s, 0 means 10 s. It renews every third of it.
	Lease time.Duration
	// Ranges are the lot's orbits, in order. Required. The first node of a
	// cluster stores them (with Policy) and every later one must give the
	// same, else New returns a *MismatchError.
	Ranges []orbit.Range
	// Policy chooses the orbit Allocate takes, across the whole cluster.
	Policy orbit.Policy
	// ClaimAhead is how many orbits the node claims before any park asks
	// for them, so that Allocate answers without a round trip to Redis
	// (see ahead.go for what that costs). 0 means DefaultClaimAhead; a
	// negative value claims every orbit when Allocate is called.
	ClaimAhead int
	// OnLost is told which orbits this node no longer holds although it
	// never released them: its lease ran out while it was paused or cut
	// off, or Redis lost the lot and another node claimed them first. The
	// calls parked there must leave those orbits at once, since the
	// orbits may hold other calls now, or another node has taken the calls
	// over: park.Lot.Disown does what is right for each. It runs on a
	// goroutine of the allocator's; Close waits for it. Nil: the loss is
	// only logged.
	OnLost func(lost []orbit.Orbit)
	// Logger receives the allocator's diagnostics; nil discards them.
	Logger *slog.Logger
}

// ErrInvalidConfig is wrapped by every *ConfigError.
var ErrInvalidConfig = errors.New("invalid redisorbit configuration")

// ConfigError names the Config field that breaks a rule.
type ConfigError struct {
	Field string // the Config field, e.g. "Lease"
	Value any    // the rejected value
	Rule  string // what the value must be
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("redisorbit: Config.%s = %v: %s", e.Field, e.Value, e.Rule)
}

// Unwrap makes every ConfigError match ErrInvalidConfig.
func (e *ConfigError) Unwrap() error { return ErrInvalidConfig }

// ErrMismatch is wrapped by every *MismatchError.
var ErrMismatch = errors.New("configuration differs from the cluster's")

// MismatchError reports a node started with other orbits or another policy
// than the cluster it joins: the table belongs to the cluster (CLUSTER.md),
// so the node must not serve.
type MismatchError struct {
	Cluster string // the cluster's name
	Field   string // "orbits" or "policy"
	Theirs  string // what Redis holds
	Ours    string // what this node was given
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("redisorbit: cluster %q has %s %q, this node was given %q", e.Cluster, e.Field, e.Theirs, e.Ours)
}

// Unwrap makes every MismatchError match ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Client == nil {
		return c, &ConfigError{"Client", nil, "required"}
	}
	if c.Cluster == "" {
		c.Cluster = DefaultCluster
	}
	if !isName(c.Cluster) {
		return c, &ConfigError{"Cluster", fmt.Sprintf("%q", c.Cluster), `must be 1 to 64 letters, digits or ".-_:"`}
	}
	if !isName(c.Node) {
		return c, &ConfigError{"Node", fmt.Sprintf("%q", c.Node), `must be 1 to 64 letters, digits or ".-_:"`}
	}
	if strings.ContainsAny(c.Advertise, " \t\r\n") {
		return c, &ConfigError{"Advertise", fmt.Sprintf("%q", c.Advertise), "must be a host:port without spaces"}
	}
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Lease < MinLease || c.Lease > MaxLease {
		return c, &ConfigError{"Lease", c.Lease, fmt.Sprintf("must be between %v and %v", MinLease, MaxLease)}
	}
	if len(c.Ranges) == 0 {
		return c, &ConfigError{"Ranges", "[]", "at least one range is required"}
	}
	switch {
	case c.ClaimAhead == 0:
		c.ClaimAhead = DefaultClaimAhead
	case c.ClaimAhead < 0:
		c.ClaimAhead = 0
	case c.ClaimAhead > 64:
		return c, &ConfigError{"ClaimAhead", c.ClaimAhead, "must be at most 64"}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

func isName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-_:", r):
		default:
			return false
		}
	}
	return true
}
