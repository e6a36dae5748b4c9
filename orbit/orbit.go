package orbit

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Orbit is an orbit exactly as dialed and as configured: "712", "*7012",
// "#105". It is a string because the SIP layer uses it verbatim as the user
// part of the orbit URI, and a number would lose the prefix. Use
// [ParseOrbit] to check text from outside.
type Orbit string

// ParseOrbit checks that s is a valid orbit number: an optional "*" or "#"
// prefix, then a first digit of 1-9 and only digits, at most 9 digits without
// a prefix or 8 after one, and a number above 100 after a prefix ("#101" is
// the lowest prefixed orbit, while plain "100" is fine). s is not trimmed: an
// orbit arrives as a SIP user part, where a space means a wrong number.
func ParseOrbit(s string) (Orbit, error) {
	if _, rule := scanOrbit(s); rule != nil {
		return "", &RuleError{Subject: "orbit", Value: s, Rule: rule, Detail: orbitDetail(s, rule)}
	}
	return Orbit(s), nil
}

// number is a parsed orbit. Two orbits are the same number only if prefix,
// width and value all match; because the first digit is never 0, the width
// follows from the value, but keeping it makes range arithmetic explicit.
type number struct {
	prefix byte   // 0, '*' or '#'
	width  uint8  // digits after the prefix, 1-9
	value  uint32 // below 10^9, so it fits
}

// scanOrbit parses s and returns the first rule it breaks, as a sentinel, so
// lookups on the hot path (every SIP request to an orbit URI) cost no
// allocation; the detail for a message is built only when one is needed.
func scanOrbit(s string) (number, error) {
	var n number
	digits := s
	if s != "" && (s[0] == '*' || s[0] == '#') {
		n.prefix = s[0]
		digits = s[1:]
	}
	if digits == "" {
		return number{}, ErrSyntax
	}
	for i := 0; i < len(digits); i++ {
		if c := digits[i]; c < '0' || c > '9' {
			return number{}, ErrSyntax
		}
	}
	if digits[0] == '0' {
		return number{}, ErrFirstDigit
	}
	maxDigits := 9
	if n.prefix != 0 {
		maxDigits = 8
	}
	if len(digits) > maxDigits {
		return number{}, ErrTooManyDigits
	}
	for i := 0; i < len(digits); i++ {
		n.value = n.value*10 + uint32(digits[i]-'0')
	}
	if n.prefix != 0 && n.value <= 100 {
		return number{}, ErrPrefixedTooLow
	}
	n.width = uint8(len(digits))
	return n, nil
}

// orbitDetail says which part of s broke rule, for the error message.
func orbitDetail(s string, rule error) string {
	digits := s
	if s != "" && (s[0] == '*' || s[0] == '#') {
		digits = s[1:]
	}
	switch rule {
	case ErrSyntax:
		if s == "" {
			return "empty"
		}
		if digits == "" {
			return "no digits after " + s
		}
		for i, r := range digits {
			if r < '0' || r > '9' {
				if r == utf8.RuneError {
					return fmt.Sprintf("unexpected byte %#x", digits[i])
				}
				return fmt.Sprintf("unexpected %q", r)
			}
		}
	case ErrFirstDigit:
		return "starts with 0"
	case ErrTooManyDigits:
		return strconv.Itoa(len(digits)) + " digits"
	case ErrPrefixedTooLow:
		return "lowest is " + s[:1] + "101"
	}
	return ""
}

// prefixString returns the prefix as text: "", "*" or "#".
func prefixString(p byte) string {
	switch p {
	case '*':
		return "*"
	case '#':
		return "#"
	}
	return ""
}

// key orders numbers for binary search: prefix first, then width, then
// value. Numbers of different prefix or width land in disjoint bands, so
// sorted ranges that do not overlap are sorted by both their ends.
func (n number) key() uint64 {
	var class uint64
	switch n.prefix {
	case '*':
		class = 1
	case '#':
		class = 2
	}
	return class<<40 | uint64(n.width)<<32 | uint64(n.value)
}
