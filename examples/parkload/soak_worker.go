package main

import (
	"context"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// soakWorker runs one call at a time. Its three RTP sockets serve every
// call: the parked party's, the retriever's and the parker's (a recall).
type soakWorker struct {
	r      *soakRun
	a      *agent
	id     int
	rng    *rand.Rand
	open   map[*sipgo.DialogClientSession]bool // the call's dialogs not yet ended
	rtp    [3]*net.UDPConn
	offers [3][]byte
}

const (
	rtpParked = iota
	rtpRetriever
	rtpParker
)

func newSoakWorker(r *soakRun, id int, ports *rtpPorts) (*soakWorker, error) {
	w := &soakWorker{r: r, a: r.a, id: id, rng: rand.New(rand.NewPCG(uint64(id), rand.Uint64())), open: make(map[*sipgo.DialogClientSession]bool)}
	if err := openLegMedia(ports, r.cfg.local, w.rtp[:], w.offers[:]); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *soakWorker) startReaders() {
	for _, c := range w.rtp {
		go countPackets(c, &w.r.pkts)
	}
}

func (w *soakWorker) close() { closeLegMedia(w.rtp[:]) }

// run places calls until stop ends; the call under way is finished.
func (w *soakWorker) run(stop context.Context, pace *pacer) {
	for calls := 0; stop.Err() == nil; calls++ {
		if pace != nil && !pace.wait(stop) {
			return
		}
		r := w.r
		r.started.Add(1)
		r.inFlight.Add(1)
		kind := r.cfg.mix.first(w.id)
		if calls > 0 {
			kind = r.cfg.mix.pick(w.rng)
		}
		res := w.call(kind)
		for d := range w.open { // the tool's own slip: no path may leave one
			r.anomalies.add("tool left a dialog open")
			w.hangup(d)
		}
		if res.anomaly != "" {
			r.failed.Add(1)
			r.anomalies.add(res.anomaly)
		} else {
			r.outcomes.add(res.outcome)
		}
		r.inFlight.Add(-1)
	}
}

// call runs one scenario to its end.
func (w *soakWorker) call(kind soakKind) result {
	switch kind {
	case soakHangup:
		return w.hangupWhileParked()
	case soakRetrieve:
		return w.parkRetrieve()
	case soakRepark, soakReparkBye, soakReparkTimeout:
		return w.repark(kind == soakReparkTimeout, kind == soakReparkBye)
	default:
		return w.timeout()
	}
}

// soakCall is one call's dialogs; every one opened is ended or closed by
// the time the call's result is in.
type soakCall struct {
	parked *sipgo.DialogClientSession
	orbit  string
	at     time.Time // when the park was answered
}

// opened counts an established dialog, ended its end (once, however many
// paths of a scenario reach it).
func (w *soakWorker) opened(d *sipgo.DialogClientSession) {
	w.open[d] = true
	w.r.dialogs.Add(1)
}

func (w *soakWorker) ended(d *sipgo.DialogClientSession) {
	d.Close()
	if w.open[d] {
		delete(w.open, d)
		w.r.dialogs.Add(-1)
	}
}

// pause sleeps a random time below max: how long a party waits, talks or
// holds.
func (w *soakWorker) pause(max time.Duration) {
	if max > 0 {
		time.Sleep(time.Duration(w.rng.Int64N(int64(max))))
	}
}

// park parks the worker's caller on the park extension, naming parker
// (Referred-By) when it is not empty.
func (w *soakWorker) park(parker string) (*soakCall, result) {
	a := w.a
	var headers []sip.Header
	if parker != "" {
		headers = append(headers, sip.NewHeader("Referred-By", "<"+a.userURI(parker)+">"))
	}
	t0 := time.Now()
	d, res, err := a.invite(context.Background(), a.cfg.parkExt, w.offers[rtpParked], headers...)
	if err != nil {
		return nil, failErr("park", err)
	}
	w.r.park.Record(time.Since(t0))
	w.opened(d)
	c := &soakCall{parked: d, at: time.Now()}
	if h := res.GetHeader("X-Park-Orbit"); h != nil {
		c.orbit = h.Value()
	}
	if err := d.Ack(context.Background()); err != nil {
		w.ended(d)
		return nil, fail("park-ack", "transport")
	}
	if c.orbit == "" {
		w.hangup(d)
		return nil, fail("park", "no X-Park-Orbit")
	}
	return c, result{}
}

// retrieve calls orbit from the retriever's socket.
func (w *soakWorker) retrieve(orbit string) (*sipgo.DialogClientSession, error) {
	t0 := time.Now()
	d, _, err := w.a.invite(context.Background(), orbit, w.offers[rtpRetriever])
	if err != nil {
		return nil, err
	}
	w.r.retrieve.Record(time.Since(t0))
	w.opened(d)
	if err := d.Ack(context.Background()); err != nil {
		w.ended(d)
		return nil, err
	}
	return d, nil
}

// bye hangs up d from our side; the dialog is ended either way.
func (w *soakWorker) bye(d *sipgo.DialogClientSession) error {
	err := w.a.bye(context.Background(), d)
	w.ended(d)
	return err
}

// hangup ends a call the scenario gave up on; its failure is not counted
// again.
func (w *soakWorker) hangup(d *sipgo.DialogClientSession) {
	if d.Context().Err() != nil {
		w.ended(d)
		return
	}
	_ = w.bye(d)
}

// waitEnded waits for the server's BYE on d, at most -timeout.
func (w *soakWorker) waitEnded(d *sipgo.DialogClientSession) bool {
	t := time.NewTimer(w.a.cfg.timeout)
	defer t.Stop()
	select {
	case <-d.Context().Done():
		w.ended(d)
		return true
	case <-t.C:
		return false
	}
}

// stillUp reports whether d has not been ended by the server.
func stillUp(d *sipgo.DialogClientSession) bool { return d.Context().Err() == nil }

// hangupWhileParked: park, wait, the parked party hangs up.
func (w *soakWorker) hangupWhileParked() result {
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(2 * time.Second)
	if !stillUp(c.parked) {
		w.ended(c.parked)
		return fail("parked", "hung up by the server")
	}
	if err := w.bye(c.parked); err != nil {
		return failErr("parked-bye", err)
	}
	return done("abandoned (the parked party hung up)")
}

// parkRetrieve: park, retrieve, talk, one side hangs up and the server
// passes the BYE on.
func (w *soakWorker) parkRetrieve() result {
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(time.Second)
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve", err)
	}
	w.pause(time.Second)
	return w.endBridged(got, c.parked, "retrieved")
}

// endBridged hangs up one of two bridged calls at random and checks the
// server's BYE reaches the other.
func (w *soakWorker) endBridged(ours, parked *sipgo.DialogClientSession, what string) result {
	first, other, who := ours, parked, "the retriever"
	if w.rng.IntN(2) == 0 {
		first, other, who = parked, ours, "the parked party"
	}
	if !stillUp(first) || !stillUp(other) {
		w.hangup(first)
		w.hangup(other)
		return fail(what, "call ended by the server before either side hung up")
	}
	if err := w.bye(first); err != nil {
		w.hangup(other)
		return failErr(what+"-bye", err)
	}
	if !w.waitEnded(other) {
		w.hangup(other)
		return fail(what, "the server's BYE to the other side never came")
	}
	return done(what + ", " + who + " hung up")
}

// repark: park, retrieve, REFER the parked party to the park extension,
// the referrer hangs up (right after the 202, or after the final NOTIFY);
// then the new orbit is retrieved, or left to time out.
func (w *soakWorker) repark(timeout, byeAtOnce bool) result {
	box := w.expectRecalls()
	defer box.close()
	c, res := w.park("")
	if c == nil {
		return res
	}
	w.pause(500 * time.Millisecond)
	got, err := w.retrieve(c.orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve", err)
	}
	w.pause(500 * time.Millisecond)

	orbit, res := w.referToPark(got, box.parker, byeAtOnce)
	if orbit == "" {
		w.hangup(got)
		w.hangup(c.parked)
		return res
	}
	c.orbit, c.at = orbit, time.Now()
	if !byeAtOnce {
		if err := w.bye(got); err != nil {
			w.hangup(c.parked)
			return failErr("referrer-bye", err)
		}
	}
	prefix := "re-parked (referrer hung up after the final NOTIFY), "
	if byeAtOnce {
		prefix = "re-parked (referrer hung up right after the 202), "
	}
	// The re-parked party stays: the referrer's BYE must not reach it.
	time.Sleep(50 * time.Millisecond)
	if !stillUp(c.parked) {
		w.ended(c.parked)
		return fail(strings.TrimSuffix(prefix, ", "), "the parked party was hung up by the server")
	}
	if timeout {
		return w.awaitRecalls(c, box, prefix)
	}
	w.pause(time.Second)
	again, err := w.retrieve(orbit)
	if err != nil {
		w.hangup(c.parked)
		return failErr("retrieve-reparked", err)
	}
	w.pause(500 * time.Millisecond)
	return w.endBridged(again, c.parked, prefix+"retrieved")
}

// referToPark sends REFER to the park extension in d, with the parker as
// Referred-By, and waits for the final NOTIFY: the new orbit, or a failed
// result. With byeAtOnce the referrer hangs up right after the 202.
func (w *soakWorker) referToPark(d *sipgo.DialogClientSession, parker string, byeAtOnce bool) (string, result) {
	a := w.a
	frags := make(chan sipfrag, 4)
	callID := d.InviteRequest.CallID().Value()
	a.notifies.Store(callID, func(req *sip.Request) {
		if ev := req.GetHeader("Event"); ev == nil || !strings.HasPrefix(strings.TrimSpace(ev.Value()), "refer") {
			return
		}
		f := parseSipfrag(req.Body())
		if st := req.GetHeader("Subscription-State"); st != nil && strings.HasPrefix(strings.TrimSpace(st.Value()), "terminated") {
			f.final = true
		}
		select {
		case frags <- f:
		default:
		}
	})
	defer a.notifies.Delete(callID)

	target := d.InviteRequest.Recipient
	if c := d.InviteResponse.Contact(); c != nil {
		target = c.Address
	}
	req := sip.NewRequest(sip.REFER, *target.Clone())
	parkURI := a.uri(a.cfg.parkExt)
	req.AppendHeader(sip.NewHeader("Refer-To", "<"+parkURI.String()+">"))
	req.AppendHeader(sip.NewHeader("Referred-By", "<"+a.userURI(parker)+">"))
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.timeout)
	defer cancel()
	t0 := time.Now()
	res, err := d.Do(ctx, req)
	if err != nil {
		return "", failErr("refer", err)
	}
	if res.StatusCode != sip.StatusAccepted {
		return "", fail("refer", strconv.Itoa(res.StatusCode))
	}
	if byeAtOnce {
		if err := w.bye(d); err != nil {
			return "", failErr("referrer-bye", err)
		}
	}
	for {
		select {
		case f := <-frags:
			if !f.final {
				continue
			}
			w.r.refer.Record(time.Since(t0))
			if f.code != sip.StatusOK {
				return "", fail("refer-notify", strconv.Itoa(f.code))
			}
			if f.orbit == "" {
				return "", fail("refer-notify", "no X-Park-Orbit")
			}
			return f.orbit, result{}
		case <-ctx.Done():
			return "", fail("refer-notify", "timeout")
		}
	}
}

// sipfrag is what soak mode reads of a REFER NOTIFY.
type sipfrag struct {
	code  int
	orbit string
	final bool
}

func parseSipfrag(body []byte) sipfrag {
	var f sipfrag
	lines := strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n")
	if fs := strings.Fields(lines[0]); len(fs) >= 2 {
		f.code, _ = strconv.Atoi(fs[1])
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "X-Park-Orbit") {
			f.orbit = strings.TrimSpace(v)
		}
	}
	return f
}

// timeout: park naming the worker as the parker, let the pickup timeout
// run out, and handle the recalls.
func (w *soakWorker) timeout() result {
	box := w.expectRecalls()
	defer box.close()
	c, res := w.park(box.parker)
	if c == nil {
		return res
	}
	return w.awaitRecalls(c, box, "")
}
