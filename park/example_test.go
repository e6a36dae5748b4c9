package park_test

import (
	"context"
	"fmt"

	"github.com/callpark/callpark/media"
	"github.com/callpark/callpark/park"
)

// printLeg is a parked call that only says what happens to it. A real host
// starts and stops RTP here.
type printLeg struct{ name string }

func (l printLeg) Hold(_ context.Context, music park.Music) error {
	fmt.Printf("%s hears %s\n", l.name, music.Name())
	return nil
}

func (l printLeg) Hangup(context.Context) error {
	fmt.Printf("%s is hung up\n", l.name)
	return nil
}

func ExampleLot() {
	ctx := context.Background()
	music, _ := media.Tone("a soft tone", 440, media.FrameDuration)
	lot, err := park.NewLot(park.Config{MusicOnHold: music})
	if err != nil {
		panic(err)
	}
	// Events arrive on the lot's own goroutine; keep them to print at the end.
	var events []string
	lot.Observe(park.ObserverFunc(func(e park.Event) {
		events = append(events, fmt.Sprint("event: ", e.Kind, " ", e.Call.Orbit, " ", e.Outcome))
	}))

	call, err := lot.Park(ctx, park.ParkRequest{Leg: printLeg{"alice"}, Parker: "sip:bob@example.com"})
	if err != nil {
		panic(err)
	}
	fmt.Println("parked at", call.Orbit())

	// Carol dials the orbit; safe retrieve names the park ID she was told.
	got, err := lot.Retrieve(ctx, park.RetrieveRequest{Orbit: call.Orbit(), ParkID: call.ID()})
	if err != nil {
		panic(err)
	}
	fmt.Println("carol connects to", got.Leg().(printLeg).name, "-", got.Outcome())

	_ = lot.Shutdown(ctx) // waits until every event is delivered
	for _, e := range events {
		fmt.Println(e)
	}
	// Output:
	// alice hears a soft tone
	// parked at 701
	// carol connects to alice - retrieved
	// event: parked 701 none
	// event: ended 701 retrieved
}
