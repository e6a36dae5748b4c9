package orbit

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseTableAccepts(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		str     string
		entries []Entry
		pools   []string
	}{
		{
			name: "contract example, all local",
			spec: "*7000-*7099,#1000-#1999,7000-7999",
			str:  "*7000-*7099,#1000-#1999,7000-7999",
			entries: []Entry{
				{Name: "*7000-*7099", Range: mustRange(t, "*7000-*7099")},
				{Name: "#1000-#1999", Range: mustRange(t, "#1000-#1999")},
				{Name: "7000-7999", Range: mustRange(t, "7000-7999")},
			},
			pools: []string{""},
		},
		{
			name: "pools, spaces and a single orbit",
			spec: " nodeA = 701-799 , nodeB=801-899,950",
			str:  "nodeA=701-799,nodeB=801-899,950-950",
			entries: []Entry{
				{Name: "701-799", Range: mustRange(t, "701-799"), Pool: "nodeA"},
				{Name: "801-899", Range: mustRange(t, "801-899"), Pool: "nodeB"},
				{Name: "950-950", Range: mustRange(t, "950"), Pool: ""},
			},
			pools: []string{"nodeA", "nodeB", ""},
		},
		{
			name: "same numbers, different prefixes and widths",
			spec: "a=701-799,b=*701-*799,c=#701-#799,d=7010-7990",
			str:  "a=701-799,b=*701-*799,c=#701-#799,d=7010-7990",
			entries: []Entry{
				{Name: "701-799", Range: mustRange(t, "701-799"), Pool: "a"},
				{Name: "*701-*799", Range: mustRange(t, "*701-*799"), Pool: "b"},
				{Name: "#701-#799", Range: mustRange(t, "#701-#799"), Pool: "c"},
				{Name: "7010-7990", Range: mustRange(t, "7010-7990"), Pool: "d"},
			},
			pools: []string{"a", "b", "c", "d"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table, err := ParseTable(tc.spec)
			require.NoError(t, err)
			require.Equal(t, tc.entries, table.Entries())
			require.Equal(t, tc.pools, table.Pools())
			require.Equal(t, tc.str, table.String())
			again, err := ParseTable(table.String())
			require.NoError(t, err)
			require.Equal(t, table.Entries(), again.Entries())
		})
	}
}

func TestParseTableRejects(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		rule    error
		mention string
	}{
		{"empty spec", "", ErrSyntax, `orbit table "": invalid syntax (item 1 of 1 is empty)`},
		{"spaces only", "  ", ErrSyntax, "item 1 of 1 is empty"},
		{"empty item in the middle", "701-799,,801-899", ErrSyntax, "item 2 of 3 is empty"},
		{"trailing comma", "701-799,", ErrSyntax, "item 2 of 2 is empty"},
		{"empty pool", "=701-799", ErrSyntax, "item 1 has an empty pool before '='"},
		{"empty range after pool", "nodeA=", ErrSyntax, `orbit table item 1: orbit range "": invalid syntax`},
		{"two equals signs", "a=b=701-799", ErrSyntax, `orbit table item 1: orbit range "b=701-799"`},
		{"bad range names its item", "701-799,*99-*100", ErrPrefixedTooLow, `orbit table item 2: orbit range "*99-*100"`},
		{"reversed", "nodeA=799-701", ErrReversed, `"799-701"`},
		{"overlap names both ranges", "701-799,nodeB=801-899,nodeC=750-850", ErrOverlap,
			`orbit range "750-850": ranges overlap (with 701-799)`},
		{"overlap with an earlier entry given later in number order", "750-850,701-799", ErrOverlap,
			`orbit range "701-799": ranges overlap (with 750-850)`},
		{"duplicate range", "701-799,701-799", ErrDuplicateName, `orbit range name "701-799": duplicate range name (entries 1 and 2)`},
		{"overlapping prefixed", "*7000-*7099,*7050-*7150", ErrOverlap, "*7000-*7099"},
		{"pool too large", "big=10000-19999,big=20000-29999,big=30000-39999,big=40000-49999,big=50000-59999,big=60000",
			ErrPoolTooLarge, `orbit pool "big": more than 50000 orbits in one pool (50001 orbits)`},
		{"local pool too large", "10000-19999,20000-29999,30000-39999,40000-49999,50000-59999,60000",
			ErrPoolTooLarge, "50001 orbits in the local pool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table, err := ParseTable(tc.spec)
			requireRule(t, err, tc.rule, tc.mention)
			require.Nil(t, table)
		})
	}
}

func TestNewTableRejects(t *testing.T) {
	r701, r801 := mustRange(t, "701-799"), mustRange(t, "801-899")
	tests := []struct {
		name    string
		entries []Entry
		rule    error
		mention string
	}{
		{"no entries", nil, ErrNoRanges, `orbit table "": no orbit ranges`},
		{"zero range", []Entry{{Range: r701}, {Name: "blank"}}, ErrSyntax, "orbit table entry 2: orbit range \"\""},
		{"duplicate explicit name", []Entry{{Name: "sales", Range: r701}, {Name: "sales", Range: r801}},
			ErrDuplicateName, `"sales": duplicate range name (entries 1 and 2)`},
		{"explicit name clashes with a default", []Entry{{Range: r701}, {Name: "701-799", Range: r801}},
			ErrDuplicateName, `"701-799"`},
		{"pool with a comma", []Entry{{Range: r701, Pool: "a,b"}}, ErrSyntax, `orbit table entry 1: orbit pool "a,b"`},
		{"pool with an equals sign", []Entry{{Range: r701, Pool: "a=b"}}, ErrSyntax, `"a=b"`},
		{"pool with a trailing space", []Entry{{Range: r701, Pool: "nodeA "}}, ErrSyntax, `"nodeA "`},
		{"pool with a newline", []Entry{{Range: r701, Pool: "node\nA"}}, ErrSyntax, `"node\nA"`},
		{"overlap across pools", []Entry{{Range: r701, Pool: "a"}, {Range: mustRange(t, "799-801"), Pool: "b"}},
			ErrOverlap, `"799-801": ranges overlap (with 701-799)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table, err := NewTable(tc.entries...)
			requireRule(t, err, tc.rule, tc.mention)
			require.Nil(t, table)
		})
	}
}

func TestNewTablePoolLimit(t *testing.T) {
	fiveRanges := func(pool string) []Entry {
		var entries []Entry
		for _, spec := range []string{"10000-19999", "20000-29999", "30000-39999", "40000-49999", "50000-59999"} {
			entries = append(entries, Entry{Range: mustRange(t, spec), Pool: pool})
		}
		return entries
	}
	// 50,000 orbits in each of two pools is fine: the limit is per pool.
	entries := append(fiveRanges("a"), Entry{Range: mustRange(t, "*10000-*19999"), Pool: "b"})
	table, err := NewTable(entries...)
	require.NoError(t, err)
	require.Equal(t, 50000, table.Len("a"))
	require.Equal(t, 10000, table.Len("b"))
	require.Equal(t, 0, table.Len("nobody"))

	_, err = NewTable(append(fiveRanges("a"), Entry{Range: mustRange(t, "60000"), Pool: "a"})...)
	requireRule(t, err, ErrPoolTooLarge, `"a": more than 50000 orbits in one pool (50001 orbits)`)
}

func TestTableLookup(t *testing.T) {
	table, err := NewTable(
		Entry{Name: "sales", Range: mustRange(t, "701-799"), Pool: "nodeA"},
		Entry{Range: mustRange(t, "*7000-*7099"), Pool: "nodeB"},
		Entry{Range: mustRange(t, "#101-#199")},
		Entry{Range: mustRange(t, "7000-7099"), Pool: "nodeA"},
	)
	require.NoError(t, err)
	tests := []struct {
		orbit Orbit
		name  string
		pool  string
		found bool
	}{
		{"701", "sales", "nodeA", true},
		{"799", "sales", "nodeA", true},
		{"700", "", "", false},
		{"800", "", "", false},
		{"*7012", "*7000-*7099", "nodeB", true},
		{"7012", "7000-7099", "nodeA", true},
		{"#7012", "", "", false},
		{"#101", "#101-#199", "", true},
		{"#200", "", "", false},
		{"70000", "", "", false},
		{"", "", "", false},
		{"not an orbit", "", "", false},
	}
	for _, tc := range tests {
		t.Run(string(tc.orbit), func(t *testing.T) {
			e, ok := table.Lookup(tc.orbit)
			require.Equal(t, tc.found, ok)
			require.Equal(t, tc.name, e.Name)
			pool, ok := table.Owner(tc.orbit)
			require.Equal(t, tc.found, ok)
			require.Equal(t, tc.pool, pool)
			if ok {
				require.True(t, e.Range.Contains(tc.orbit))
			}
		})
	}
	require.Equal(t, []Range{mustRange(t, "701-799"), mustRange(t, "7000-7099")}, table.Ranges("nodeA"))
	require.Equal(t, []Range{mustRange(t, "#101-#199")}, table.Ranges(""))
	require.Nil(t, table.Ranges("nodeC"))
	require.Equal(t, []string{"nodeA", "nodeB", ""}, table.Pools())
	require.Equal(t, 199, table.Len("nodeA"))
	require.Equal(t, "nodeA=701-799,nodeB=*7000-*7099,#101-#199,nodeA=7000-7099", table.String())
}

// TestTableLookupEveryOrbit checks the binary search against the ranges
// themselves for every orbit of a table with many small ranges in shuffled
// number order.
func TestTableLookupEveryOrbit(t *testing.T) {
	specs := []string{"900-909", "100-109", "*500-*509", "500-509", "#500-#509", "1000-1009", "300-309"}
	table, err := ParseTable(strings.Join(specs, ","))
	require.NoError(t, err)
	for _, e := range table.Entries() {
		for i := range e.Range.Len() {
			got, ok := table.Lookup(e.Range.At(i))
			require.True(t, ok, "orbit %s", e.Range.At(i))
			require.Equal(t, e, got)
		}
		for _, outside := range []int{-1, e.Range.Len()} {
			o := Orbit(e.Range.Prefix() + strconv.Itoa(int(e.Range.first)+outside))
			_, ok := table.Lookup(o)
			require.False(t, ok, "orbit %s", o)
		}
	}
}
