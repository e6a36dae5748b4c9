package orbit

import (
	"errors"
	"strconv"
)

// Numbering and configuration rules. A [*RuleError] wraps exactly one of
// these, so callers pick the rule out with errors.Is and keep the message,
// which names the value that broke it.
var (
	// ErrSyntax: the text is not an orbit, a range or a table item at all
	// (empty, a character other than digits after the optional prefix, a
	// misplaced "-" or "=").
	ErrSyntax = errors.New("invalid syntax")
	// ErrFirstDigit: the first digit after any prefix is 0.
	ErrFirstDigit = errors.New("the first digit must be 1-9")
	// ErrTooManyDigits: more than 9 digits, or more than 8 after a prefix.
	ErrTooManyDigits = errors.New("too many digits (at most 9, or 8 after * or #)")
	// ErrPrefixedTooLow: a "*" or "#" orbit whose number is 100 or less.
	ErrPrefixedTooLow = errors.New("a prefixed orbit must be above 100")
	// ErrLengthMismatch: the ends of a range have different numbers of digits.
	ErrLengthMismatch = errors.New("start and end must have the same number of digits")
	// ErrPrefixMismatch: the ends of a range have different prefixes.
	ErrPrefixMismatch = errors.New("start and end must have the same prefix")
	// ErrReversed: the start of a range is above its end.
	ErrReversed = errors.New("start must not be above end")
	// ErrRangeTooLarge: a range holds more than [MaxRangeLen] orbits.
	ErrRangeTooLarge = errors.New("more than 10000 orbits in one range")
	// ErrOverlap: two ranges share at least one orbit.
	ErrOverlap = errors.New("ranges overlap")
	// ErrPoolTooLarge: one pool (or one allocator) holds more than
	// [MaxPoolLen] orbits.
	ErrPoolTooLarge = errors.New("more than 50000 orbits in one pool")
	// ErrDuplicateName: two table entries share a name.
	ErrDuplicateName = errors.New("duplicate range name")
	// ErrNoRanges: a table or allocator was given no range at all.
	ErrNoRanges = errors.New("no orbit ranges")
	// ErrUnknownPolicy: a policy name or value other than those of [Policy].
	ErrUnknownPolicy = errors.New("unknown allocation policy (want lru, lowest or random)")
)

// Allocation outcomes. Errors about one orbit wrap these with the orbit in
// the message, so errors.Is works and a log line says which orbit it was.
var (
	// ErrFull: every orbit of the allocator is in use. The park request
	// fails, as in Lync when no orbit is free.
	ErrFull = errors.New("parking lot full")
	// ErrInUse: a directed park named an orbit that already holds a call.
	ErrInUse = errors.New("already in use")
	// ErrNotInUse: a release named an orbit that was already free, which
	// means two owners believed they held it.
	ErrNotInUse = errors.New("not in use")
	// ErrUnknownOrbit: the orbit is in none of the allocator's ranges.
	ErrUnknownOrbit = errors.New("not in any range of this allocator")
	// ErrUnavailable: a shared allocator cannot reach its store, or the
	// store is settling after it lost its state. Nothing was taken: refuse
	// the park for now (503 with Retry-After) rather than guess.
	ErrUnavailable = errors.New("orbit store unavailable")
)

// Limits from Lync Server 2013 capacity planning.
const (
	// MaxRangeLen is the most orbits one range may hold.
	MaxRangeLen = 10000
	// MaxPoolLen is the most orbits one pool (and so one allocator) may hold.
	MaxPoolLen = 50000
)

// RuleError reports a value that breaks a numbering or configuration rule.
// Its message reads like
//
//	orbit range "*99-*100": a prefixed orbit must be above 100 (start "*99"; lowest is *101)
//
// and errors.Is(err, ErrPrefixedTooLow) holds.
type RuleError struct {
	// Subject says what was being checked: "orbit", "orbit range",
	// "orbit table", "orbit pool", "orbit range name" or "orbit policy".
	Subject string
	// Value is the offending text exactly as given.
	Value string
	// Rule is the broken rule, one of the Err* sentinels of this package.
	Rule error
	// Detail names the part of Value that broke the rule, or the other
	// value it clashed with; empty when Value says it all.
	Detail string
}

// Error returns the subject, the quoted value, the rule and any detail.
func (e *RuleError) Error() string {
	s := e.Subject + " " + strconv.Quote(e.Value) + ": " + e.Rule.Error()
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

// Unwrap returns the broken rule so errors.Is can match it.
func (e *RuleError) Unwrap() error { return e.Rule }
