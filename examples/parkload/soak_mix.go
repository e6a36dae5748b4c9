package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// soakKind is a scenario of the mix.
type soakKind int

const (
	// park → retrieve → one side hangs up; the server passes the BYE on.
	soakRetrieve soakKind = iota
	// park → the parked party hangs up while parked.
	soakHangup
	// park → retrieve → REFER the parked party back to the park extension
	// → the final NOTIFY → the referrer hangs up → retrieve the new orbit
	// → hang up.
	soakRepark
	// as soakRepark, but the referrer hangs up right after the 202, before
	// the NOTIFYs (the contract calls that normal; many phones do it).
	soakReparkBye
	// as soakRepark, but nobody retrieves the new orbit: it times out and
	// the server recalls the referrer (its Referred-By).
	soakReparkTimeout
	// park naming a parker (Referred-By) → nobody retrieves → the server
	// recalls the parker, which answers, refuses (486), lets it ring out,
	// or retrieves the orbit while it rings.
	soakTimeout
	numSoakKinds
)

var soakKindNames = [numSoakKinds]string{"retrieve", "hangup", "repark", "repark-bye", "repark-timeout", "timeout"}

const defaultSoakMix = "retrieve=35,hangup=20,repark=15,repark-bye=5,repark-timeout=5,timeout=20"

// soakMix holds the weight of each scenario.
type soakMix [numSoakKinds]int

func (m soakMix) total() int {
	n := 0
	for _, w := range m {
		n += w
	}
	return n
}

// pick chooses a scenario by weight.
func (m soakMix) pick(rng *rand.Rand) soakKind {
	x := rng.IntN(m.total())
	for k, w := range m {
		if x < w {
			return soakKind(k)
		}
		x -= w
	}
	return soakRetrieve
}

// first is the scenario of worker id's first call: the scenarios of the
// mix in turn by worker, weights aside, so that a short run with as many
// workers as scenarios tries each of them at least once (a test's two
// seconds would otherwise miss a light one now and then: one in five
// calls in about twenty). Later calls are picked by weight.
func (m soakMix) first(id int) soakKind {
	var kinds []soakKind
	for k, w := range m {
		if w > 0 {
			kinds = append(kinds, soakKind(k))
		}
	}
	if len(kinds) == 0 {
		return soakRetrieve
	}
	return kinds[id%len(kinds)]
}

func (m soakMix) String() string {
	parts := make([]string, 0, numSoakKinds)
	for k, w := range m {
		if w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", soakKindNames[k], w))
		}
	}
	return strings.Join(parts, ",")
}

// parseSoakMix reads name=weight pairs; a scenario not named has weight 0.
func parseSoakMix(s string) (soakMix, error) {
	var m soakMix
	bad := func(why string) (soakMix, error) {
		return m, flagErr("-mix %q: %s; want name=weight pairs such as %s", s, why, defaultSoakMix)
	}
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if !ok || err != nil || n < 0 || n > 1000 {
			return bad(fmt.Sprintf("bad pair %q", part))
		}
		k := slices.Index(soakKindNames[:], strings.TrimSpace(name))
		if k < 0 {
			return bad(fmt.Sprintf("no scenario %q", name))
		}
		m[k] = n
	}
	if m.total() == 0 {
		return bad("every weight is 0")
	}
	return m, nil
}
