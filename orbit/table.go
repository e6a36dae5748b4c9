package orbit

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Entry is one row of an orbit [Table]: a named range and the pool (node)
// whose park service holds the calls parked on it.
type Entry struct {
	// Name identifies the range in configuration and logs. It must be unique
	// in a table; empty means the range's own text ("701-799").
	Name string
	// Range is the orbits of this entry.
	Range Range
	// Pool is the node that parks calls on Range; "" is the local pool, the
	// node reading the table.
	Pool string
}

// Table maps every configured orbit to the pool that serves it, like Lync's
// orbit table: a call parked on one site's node can be retrieved by dialing
// its orbit on any other, because every node can answer "who owns orbit X".
// A Table is immutable once built, so it is safe for concurrent use.
type Table struct {
	entries []Entry
	index   rangeIndex
	pools   []string       // in order of first appearance
	counts  map[string]int // orbits per pool
}

// NewTable builds a table from entries, kept in the order given. It rejects
// an empty table, a zero Range, overlapping ranges anywhere in the table
// (naming both), duplicate names (after an empty name defaults to the range
// text), a pool name that cannot be written in the [ParseTable] form, and a
// pool of more than [MaxPoolLen] orbits (naming the pool and its count).
func NewTable(entries ...Entry) (*Table, error) {
	if len(entries) == 0 {
		return nil, &RuleError{Subject: "orbit table", Value: "", Rule: ErrNoRanges}
	}
	t := &Table{entries: slices.Clone(entries), counts: make(map[string]int)}
	ranges := make([]Range, len(t.entries))
	nameAt := make(map[string]int, len(t.entries))
	for i := range t.entries {
		e := &t.entries[i]
		if e.Range.Len() == 0 {
			return nil, fmt.Errorf("orbit table entry %d: %w", i+1,
				&RuleError{Subject: "orbit range", Value: "", Rule: ErrSyntax, Detail: "entry has no range"})
		}
		if err := checkPoolName(e.Pool); err != nil {
			return nil, fmt.Errorf("orbit table entry %d: %w", i+1, err)
		}
		if e.Name == "" {
			e.Name = e.Range.String()
		}
		if j, dup := nameAt[e.Name]; dup {
			return nil, &RuleError{Subject: "orbit range name", Value: e.Name, Rule: ErrDuplicateName,
				Detail: fmt.Sprintf("entries %d and %d", j+1, i+1)}
		}
		nameAt[e.Name] = i
		ranges[i] = e.Range
		if _, seen := t.counts[e.Pool]; !seen {
			t.pools = append(t.pools, e.Pool)
		}
		t.counts[e.Pool] += e.Range.Len()
	}
	index, err := newRangeIndex(ranges)
	if err != nil {
		return nil, err
	}
	t.index = index
	for _, pool := range t.pools {
		if err := checkPoolLen(pool, t.counts[pool]); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// checkPoolName rejects pool names that [Table.String] could not write so
// that [ParseTable] reads them back unchanged.
func checkPoolName(pool string) error {
	bad := pool != strings.TrimSpace(pool) || strings.ContainsAny(pool, ",=") ||
		strings.ContainsFunc(pool, unicode.IsControl)
	if !bad {
		return nil
	}
	return &RuleError{Subject: "orbit pool", Value: pool, Rule: ErrSyntax,
		Detail: "a pool name may not contain ',', '=' or control characters, nor start or end with a space"}
}

// checkPoolLen enforces the Lync limit on orbits served by one pool.
func checkPoolLen(pool string, n int) error {
	if n <= MaxPoolLen {
		return nil
	}
	detail := strconv.Itoa(n) + " orbits"
	if pool == "" {
		detail += " in the local pool"
	}
	return &RuleError{Subject: "orbit pool", Value: pool, Rule: ErrPoolTooLarge, Detail: detail}
}

// ParseTable parses the comma-separated form used by flags and config files:
// "*7000-*7099,#1000-#1999,7000-7999". Each item is a range (see
// [ParseRange]), optionally preceded by its pool and "=" as in
// "nodeA=701-799,nodeB=801-899"; items without a pool belong to the local
// pool "". Spaces around items, pools and ranges are ignored. An empty item,
// including an empty spec, is an error naming its position; the table must
// then pass the checks of [NewTable]. Names default to the range text, since
// the text form carries none.
func ParseTable(spec string) (*Table, error) {
	items := strings.Split(spec, ",")
	entries := make([]Entry, 0, len(items))
	for i, item := range items {
		item = strings.TrimSpace(item)
		if item == "" {
			return nil, &RuleError{Subject: "orbit table", Value: spec, Rule: ErrSyntax,
				Detail: fmt.Sprintf("item %d of %d is empty", i+1, len(items))}
		}
		pool, rangeText, hasPool := strings.Cut(item, "=")
		if hasPool {
			pool = strings.TrimSpace(pool)
			if pool == "" {
				return nil, &RuleError{Subject: "orbit table", Value: spec, Rule: ErrSyntax,
					Detail: fmt.Sprintf("item %d has an empty pool before '='", i+1)}
			}
		} else {
			pool, rangeText = "", item
		}
		r, err := ParseRange(rangeText)
		if err != nil {
			return nil, fmt.Errorf("orbit table item %d: %w", i+1, err)
		}
		entries = append(entries, Entry{Range: r, Pool: pool})
	}
	return NewTable(entries...)
}

// String returns the table in the form [ParseTable] reads, entries in the
// order given. Names are not part of that form: a table whose names are the
// defaults reads back equal, other names come back as the defaults.
func (t *Table) String() string {
	var b strings.Builder
	for i, e := range t.entries {
		if i > 0 {
			b.WriteByte(',')
		}
		if e.Pool != "" {
			b.WriteString(e.Pool)
			b.WriteByte('=')
		}
		b.WriteString(e.Range.String())
	}
	return b.String()
}

// Owner returns the pool that serves o, and false if no range holds o. It
// costs a binary search over the ranges, whatever their size.
func (t *Table) Owner(o Orbit) (pool string, ok bool) {
	e, ok := t.Lookup(o)
	return e.Pool, ok
}

// Lookup returns the entry whose range holds o, and false if none does.
func (t *Table) Lookup(o Orbit) (Entry, bool) {
	span, _, ok := t.index.find(o)
	if !ok {
		return Entry{}, false
	}
	return t.entries[span.pos], true
}

// Entries returns a copy of the table's entries in the order given, with
// default names filled in.
func (t *Table) Entries() []Entry { return slices.Clone(t.entries) }

// Ranges returns the ranges served by pool, in the order given; nil if the
// pool serves none. This is what a node hands to its [Allocator].
func (t *Table) Ranges(pool string) []Range {
	var ranges []Range
	for _, e := range t.entries {
		if e.Pool == pool {
			ranges = append(ranges, e.Range)
		}
	}
	return ranges
}

// Pools returns every pool named in the table, in order of first
// appearance; the local pool is "".
func (t *Table) Pools() []string { return slices.Clone(t.pools) }

// Len returns the number of orbits served by pool.
func (t *Table) Len(pool string) int { return t.counts[pool] }
