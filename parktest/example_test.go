package parktest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/callpark/callpark/parktest"
	"github.com/emiago/sipgo/sip"
)

// A park and a retrieval against a running park server (go run
// ./examples/parkserver, listening on 127.0.0.1:5060 with park extension
// 700): carol is parked on alice's behalf, alice is told the orbit, and bob
// picks the call up by dialling it. In a test, use NewPhone instead of
// StartPhone and require instead of printing.
func Example_parkAndRetrieve() {
	const server = "127.0.0.1:5060"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var phones [3]*parktest.Phone
	for i, user := range []string{"alice", "bob", "carol"} {
		p, err := parktest.StartPhone(parktest.PhoneOptions{User: user})
		if err != nil {
			fmt.Println(err)
			return
		}
		defer p.Close()
		phones[i] = p
	}
	alice, bob, carol := phones[0], phones[1], phones[2]

	// Park: carol calls the park extension, alice named as the parker.
	parked, err := carol.Call(ctx, "sip:700@"+server, parktest.CallOptions{
		Headers: []sip.Header{sip.NewHeader("Referred-By", "<"+alice.URI()+">")},
	})
	if err != nil {
		fmt.Println("park:", err)
		return
	}
	orbit := parked.Orbit()
	fmt.Println("parked at", orbit)
	if msgs, err := alice.Inbox().WaitMessages(ctx, 1); err == nil {
		fmt.Println("alice was told:", msgs[0].Body)
	}
	// Music on hold reaches carol.
	if err := parked.WaitReceived(ctx, 10); err != nil {
		fmt.Println("no music:", err)
	}

	// Retrieve: bob dials the orbit; bob and carol then hear each other.
	picked, err := bob.Call(ctx, "sip:"+orbit+"@"+server, parktest.CallOptions{})
	if err != nil {
		fmt.Println("retrieve:", err)
		return
	}
	if err := picked.WaitReceived(ctx, 25); err != nil {
		fmt.Println("bob hears nothing:", err)
	}
	if err := parked.WaitReceived(ctx, parked.Received()+25); err != nil {
		fmt.Println("carol hears nothing:", err)
	}
	// A second retrieval of the same orbit finds it empty.
	_, err = alice.Call(ctx, "sip:"+orbit+"@"+server, parktest.CallOptions{})
	var notFound *parktest.StatusError
	if errors.As(err, &notFound) {
		fmt.Println("orbit now:", notFound.Code)
	}
	_ = picked.Hangup(ctx)
	<-parked.Done()
}

// Two phones, no server: bob rejects the first call and answers the second.
func ExamplePhone_Call() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, err := parktest.StartPhone(parktest.PhoneOptions{User: "alice"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer alice.Close()
	bob, err := parktest.StartPhone(parktest.PhoneOptions{User: "bob", Transport: "udp"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer bob.Close()

	_ = bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.Reject, Code: 486})
	_, err = alice.Call(ctx, bob.URI(), parktest.CallOptions{})
	var busy *parktest.StatusError
	if errors.As(err, &busy) {
		fmt.Println(busy.Code, busy.Reason)
	}

	_ = bob.SetAnswer(parktest.AnswerPolicy{Mode: parktest.AutoAnswer})
	call, err := alice.Call(ctx, bob.URI(), parktest.CallOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	in := <-bob.Incoming()
	if err := call.WaitReceived(ctx, 25); err == nil {
		fmt.Println("alice hears bob in", call.Negotiated().Codec)
	}
	_ = call.Hangup(ctx)
	<-in.Done()
	fmt.Println("bob saw the BYE:", in.EndedByRemote())
	// Output:
	// 486 Busy Here
	// alice hears bob in PCMU
	// bob saw the BYE: true
}

// A re-park by REFER, with bob scripting the park server's NOTIFYs.
func ExampleCall_Refer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, _ := parktest.StartPhone(parktest.PhoneOptions{User: "alice"})
	defer alice.Close()
	bob, _ := parktest.StartPhone(parktest.PhoneOptions{
		User: "bob",
		OnRefer: func(_ *parktest.Call, referTo string) parktest.ReferReply {
			return parktest.ReferReply{Notify: []string{
				"SIP/2.0 100 Trying\r\n",
				"SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n",
			}}
		},
	})
	defer bob.Close()
	call, err := alice.Call(ctx, bob.URI(), parktest.CallOptions{Mute: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := call.Refer(ctx, "sip:700@127.0.0.1")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Accepted, len(res.Notifies), res.FinalStatus, res.Orbit)
	// Output:
	// 202 2 200 701
}

// A BLF subscription, bob serving the dialog package as a park server does.
func ExamplePhone_Subscribe() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	alice, _ := parktest.StartPhone(parktest.PhoneOptions{User: "alice"})
	defer alice.Close()
	empty := parktest.DialogInfo{Version: 0, State: "full", Entity: "sip:701@127.0.0.1"}
	body, _ := empty.Marshal()
	lamp := &parktest.Notifier{
		Event:       "dialog",
		ContentType: "application/dialog-info+xml",
		State:       func() []byte { return body },
	}
	bob, _ := parktest.StartPhone(parktest.PhoneOptions{User: "bob", Serve: []*parktest.Notifier{lamp}})
	defer bob.Close()

	sub, err := alice.Subscribe(ctx, bob.URI(), "dialog", time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	n := <-sub.Notifies()
	info, err := parktest.ParseDialogInfo(n.Body)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(n.State, info.State, info.Version, len(info.Dialogs))
	_ = sub.Unsubscribe(ctx)
	fmt.Println((<-sub.Notifies()).State)
	// Output:
	// active;expires=3600 full 0 0
	// terminated;reason=timeout
}

func ExampleParseSipfrag() {
	frag, err := parktest.ParseSipfrag([]byte("SIP/2.0 200 OK\r\nX-Park-Orbit: 701\r\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(frag.Code, frag.Reason, frag.Header("X-Park-Orbit"))
	_, err = parktest.ParseSipfrag([]byte("HTTP/1.1 200 OK"))
	fmt.Println(errors.Is(err, parktest.ErrBadSipfrag))
	// Output:
	// 200 OK 701
	// true
}

func ExampleParseDialogInfo() {
	info, err := parktest.ParseDialogInfo([]byte(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
		version="4" state="full" entity="sip:701@10.0.0.1">
		<dialog id="p1"><state>confirmed</state></dialog></dialog-info>`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Entity, info.Version, info.Dialogs[0].State)
	// Output:
	// sip:701@10.0.0.1 4 confirmed
}
