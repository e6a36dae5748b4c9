package sipadapter_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/emiago/sipgo"

	"github.com/callpark/callpark/orbit"
	"github.com/callpark/callpark/park"
	"github.com/callpark/callpark/parktest"
	"github.com/callpark/callpark/sipadapter"
)

// A host with a lot of its own and a sipgo user agent of its own: the
// server parks into the lot and serves SIP with the user agent. The lot
// rings recalls through the server (Server.Dial), which does not exist yet
// when the lot is built, so its Dialer reaches it through the variable set
// next. The server answers for the lot's orbits, here 801-899.
func ExampleServer_hostLotAndUserAgent() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	orbits, err := orbit.NewMemoryAllocator([]orbit.Range{mustRange("801-899")}, orbit.MemoryOptions{})
	if err != nil {
		log.Fatal(err)
	}
	var srv *sipadapter.Server
	lot, err := park.NewLot(park.Config{
		Orbits:        orbits,
		PickupTimeout: 2 * time.Minute,
		Dialer: park.DialerFunc(func(ctx context.Context, req park.DialRequest) (park.Answered, error) {
			return srv.Dial(ctx, req) // the server below, once it listens
		}),
	})
	if err != nil {
		log.Fatal(err)
	}
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("my-pbx"))
	if err != nil {
		log.Fatal(err)
	}
	defer ua.Close() // the host's: Shutdown leaves it open
	srv, err = sipadapter.New(sipadapter.Config{Lot: lot, UA: ua, Listen: "127.0.0.1:0", RTPPortMin: 13300, RTPPortMax: 13399})
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Listen(ctx); err != nil {
		log.Fatal(err)
	}

	// Two phones: alice parks, carol retrieves.
	alice, _ := parktest.StartPhone(parktest.PhoneOptions{User: "alice"})
	defer alice.Close()
	carol, _ := parktest.StartPhone(parktest.PhoneOptions{User: "carol"})
	defer carol.Close()
	parked, err := alice.Call(ctx, srv.ParkURI(), parktest.CallOptions{Mute: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("parked at", parked.Orbit())
	got, err := carol.Call(ctx, srv.OrbitURI(orbit.Orbit(parked.Orbit())), parktest.CallOptions{Mute: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retrieved by carol; the lot now holds", lot.Len(), "calls")
	_ = got.Hangup(ctx)
	<-parked.Done()
	fmt.Println("alice hears the BYE carol's hang-up became")
	if err := srv.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// parked at 801
	// retrieved by carol; the lot now holds 0 calls
	// alice hears the BYE carol's hang-up became
}

func mustRange(s string) orbit.Range {
	r, err := orbit.ParseRange(s)
	if err != nil {
		panic(err)
	}
	return r
}
