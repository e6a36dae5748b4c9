package orbit_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/callpark/callpark/orbit"
)

// A table read from a flag tells any node which pool parks a given orbit,
// and which ranges its own allocator hands out.
func ExampleParseTable() {
	table, err := orbit.ParseTable("nodeA=701-799,nodeB=*7000-*7099,#101-#199")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, o := range []orbit.Orbit{"712", "*7012", "#150", "800"} {
		pool, ok := table.Owner(o)
		fmt.Printf("%s: pool %q, configured %v\n", o, pool, ok)
	}
	fmt.Println(table.Ranges("nodeA"), table.Len("nodeB"))
	fmt.Println(table)

	_, err = orbit.ParseTable("701-799,*99-*100")
	fmt.Println(err, errors.Is(err, orbit.ErrPrefixedTooLow))
	// Output:
	// 712: pool "nodeA", configured true
	// *7012: pool "nodeB", configured true
	// #150: pool "", configured true
	// 800: pool "", configured false
	// [701-799] 100
	// nodeA=701-799,nodeB=*7000-*7099,#101-#199
	// orbit table item 2: orbit range "*99-*100": a prefixed orbit must be above 100 (start "*99": lowest is *101) true
}

// The default policy hands out never-used orbits first, then the one freed
// longest ago, so a number just freed is not reused at once.
func ExampleMemoryAllocator() {
	ctx := context.Background()
	lot, err := orbit.ParseRange("701-703")
	if err != nil {
		fmt.Println(err)
		return
	}
	alloc, err := orbit.NewMemoryAllocator([]orbit.Range{lot}, orbit.MemoryOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	first, _ := alloc.Allocate(ctx)
	second, _ := alloc.Allocate(ctx)
	fmt.Println("parked at", first, "and", second)

	_ = alloc.Release(ctx, first) // the call on 701 was retrieved
	third, _ := alloc.Allocate(ctx)
	fourth, _ := alloc.Allocate(ctx)
	fmt.Println("then at", third, "and", fourth)

	_, err = alloc.Allocate(ctx)
	fmt.Println(err, errors.Is(err, orbit.ErrFull))
	err = alloc.Reserve(ctx, "702") // a directed park on a busy orbit
	fmt.Println(err, errors.Is(err, orbit.ErrInUse))
	fmt.Println(alloc.InUse(), "of", alloc.Len(), "in use")
	// Output:
	// parked at 701 and 702
	// then at 703 and 701
	// parking lot full: all 3 orbits are in use true
	// orbit "702": already in use true
	// 3 of 3 in use
}

// A directed park takes exactly the orbit dialed.
func ExampleMemoryAllocator_Reserve() {
	ctx := context.Background()
	lot, _ := orbit.ParseRange("#101-#199")
	alloc, _ := orbit.NewMemoryAllocator([]orbit.Range{lot}, orbit.MemoryOptions{Policy: orbit.Lowest})
	fmt.Println(alloc.Reserve(ctx, "#101"))
	next, _ := alloc.Allocate(ctx)
	fmt.Println(next)
	err := alloc.Reserve(ctx, "#200")
	fmt.Println(err, errors.Is(err, orbit.ErrUnknownOrbit))
	// Output:
	// <nil>
	// #102
	// orbit "#200": not in any range of this allocator true
}

func ExampleParseRange() {
	r, err := orbit.ParseRange("*7000-*7099")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r, r.Prefix(), r.Len(), r.First(), r.At(12), r.Contains("7012"))
	_, err = orbit.ParseRange("799-701")
	fmt.Println(err)
	// Output:
	// *7000-*7099 * 100 *7000 *7012 false
	// orbit range "799-701": start must not be above end (799 > 701)
}

func ExampleParseOrbit() {
	for _, s := range []string{"712", "#101", "#100", "0712"} {
		o, err := orbit.ParseOrbit(s)
		fmt.Printf("%q %v\n", o, err)
	}
	// Output:
	// "712" <nil>
	// "#101" <nil>
	// "" orbit "#100": a prefixed orbit must be above 100 (lowest is #101)
	// "" orbit "0712": the first digit must be 1-9 (starts with 0)
}
