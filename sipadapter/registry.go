package sipadapter

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/callpark/callpark/media"
)

// newLeg builds a leg of the server's and files it under its dialog key;
// it forgets itself and frees its RTP port when it closes.
func (e *Engine) newLeg(cfg legConfig) *callLeg {
	cfg.ParkedOneWay = true // the contract: a parked leg only hears music
	cfg.Clips = e.music
	cfg.Ports = e.ports
	cfg.OnClose = e.forget
	cfg.Logger = e.log
	l, err := newCallLeg(cfg)
	if err != nil {
		panic(err) // the server always fills sipDialog, Endpoint and SDP
	}
	e.remember(l)
	return l
}

// bridge joins two legs (bridgeLegs) and gives two-way audio back to a leg
// that was answered one-way while parked: a re-INVITE offering sendrecv
// (RFC 3264 §8). If either leg hung up meanwhile nothing is bridged and
// errLegGone returned; the caller hangs up the other.
func (e *Engine) bridge(a, b *callLeg) error {
	if err := bridgeLegs(a, b); err != nil {
		return err
	}
	for _, l := range []*callLeg{a, b} {
		if l.Direction() != media.SendRecv {
			e.tasks.Go(func() {
				ctx, cancel := context.WithTimeout(e.tasksCtx, 10*time.Second)
				defer cancel()
				switch err := l.Reoffer(ctx, media.SendRecv); {
				case err == nil:
				case errors.Is(err, errLegGone) || l.Closed():
					// Hung up meanwhile, as a retriever that leaves at
					// once does: the call's end, not a failure.
					e.log.Debug("re-INVITE for two-way audio overtaken by the call's end", "who", l.Party(), "err", err)
				default:
					e.log.Info("re-INVITE for two-way audio failed", "who", l.Party(), "err", err)
				}
			})
		}
	}
	return nil
}

// remember registers a leg under its dialog key.
func (e *Engine) remember(l *callLeg) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.legs[l.Key()] = l
	if k, ok := inviteKey(l); ok {
		e.invites[k] = l
	}
}

func (e *Engine) forget(l *callLeg) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.legs[l.Key()] == l {
		delete(e.legs, l.Key())
	}
	if k, ok := inviteKey(l); ok && e.invites[k] == l {
		delete(e.invites, k)
	}
	if src, ok := e.legSources[l]; ok {
		delete(e.legSources, l)
		e.guard.releaseDialog(src)
	}
}

// countAgainst makes l's dialog the one admitDialog counted for src, to be
// released when l closes. A leg closed already releases at once.
func (e *Engine) countAgainst(l *callLeg, src netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.legs[l.Key()] != l {
		e.guard.releaseDialog(src)
		return
	}
	e.legSources[l] = src
}

// inviteKey names the INVITE a leg the server answered came from: Call-ID,
// From tag and CSeq, what RFC 3261 §8.2.2.2 compares to detect a merged
// request. False for a leg the server placed.
func inviteKey(l *callLeg) (string, bool) {
	uas := l.Dialog().ServerSession()
	if uas == nil {
		return "", false
	}
	return requestInviteKey(uas.InviteRequest)
}

func requestInviteKey(req *sip.Request) (string, bool) {
	callID, from, cseq := req.CallID(), req.From(), req.CSeq()
	if callID == nil || from == nil || cseq == nil {
		return "", false
	}
	tag, _ := from.Params.Get("tag")
	return callID.Value() + "\x00" + tag + "\x00" + strconv.FormatUint(uint64(cseq.SeqNo), 10), true
}

// isMerged reports whether req, an INVITE outside any dialog, is a copy of
// one that already made a leg.
func (e *Engine) isMerged(req *sip.Request) bool {
	k, ok := requestInviteKey(req)
	if !ok {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	_, found := e.invites[k]
	return found
}

// lookup finds the leg an in-dialog request belongs to: To carries our tag,
// From theirs, whichever side began the dialog.
func (e *Engine) lookup(req *sip.Request) *callLeg {
	key, ok := requestKey(req)
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.legs[key]
}
