package parktest

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// DialogInfo is an application/dialog-info+xml document (RFC 4235): what a
// BLF NOTIFY says about the calls in an orbit.
type DialogInfo struct {
	// Version counts the documents of one subscription: each NOTIFY raises
	// it by one.
	Version int
	// State is "full" (the document lists every dialog) or "partial" (only
	// the ones that changed).
	State string
	// Entity is the URI watched: the orbit or the park extension.
	Entity string
	// Dialogs are the dialog elements in document order.
	Dialogs []DialogInfoDialog
}

// DialogInfoDialog is one dialog element of a DialogInfo.
type DialogInfoDialog struct {
	ID        string // the id attribute, required
	CallID    string // call-id attribute, empty if absent
	LocalTag  string // local-tag attribute
	RemoteTag string // remote-tag attribute
	Direction string // "initiator", "recipient" or empty
	// State is the dialog's state: trying, proceeding, early, confirmed
	// or terminated. A parked call shows confirmed; an emptied orbit,
	// terminated.
	State string
	// Event is the state element's event attribute (why it terminated:
	// cancelled, rejected, replaced, local-bye, remote-bye, error, timeout).
	Event string
	// Local and Remote are the identities of the two parties, empty if
	// absent.
	Local, Remote string
}

type xmlDialogInfo struct {
	XMLName xml.Name    `xml:"urn:ietf:params:xml:ns:dialog-info dialog-info"`
	Version string      `xml:"version,attr"`
	State   string      `xml:"state,attr"`
	Entity  string      `xml:"entity,attr"`
	Dialogs []xmlDialog `xml:"dialog"`
}

type xmlDialog struct {
	ID        string `xml:"id,attr"`
	CallID    string `xml:"call-id,attr,omitempty"`
	LocalTag  string `xml:"local-tag,attr,omitempty"`
	RemoteTag string `xml:"remote-tag,attr,omitempty"`
	Direction string `xml:"direction,attr,omitempty"`
	State     struct {
		Value string `xml:",chardata"`
		Event string `xml:"event,attr,omitempty"`
	} `xml:"state"`
	Local  *xmlParticipant `xml:"local,omitempty"`
	Remote *xmlParticipant `xml:"remote,omitempty"`
}

type xmlParticipant struct {
	Identity string `xml:"identity"`
}

func (p *xmlParticipant) identity() string {
	if p == nil {
		return ""
	}
	return strings.TrimSpace(p.Identity)
}

func participant(identity string) *xmlParticipant {
	if identity == "" {
		return nil
	}
	return &xmlParticipant{Identity: identity}
}

// dialogStates are the values RFC 4235 §4.1.2 allows for a dialog's state.
var dialogStates = map[string]bool{
	"trying": true, "proceeding": true, "early": true, "confirmed": true, "terminated": true,
}

// ParseDialogInfo parses an application/dialog-info+xml body and checks what
// RFC 4235 requires of it: the dialog-info root in its namespace, a
// non-negative version, a state of full or partial, an entity, and for every
// dialog an id and a known state. Errors wrap ErrBadDialogInfo and name the
// field at fault.
func ParseDialogInfo(body []byte) (DialogInfo, error) {
	var doc xmlDialogInfo
	dec := xml.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return DialogInfo{}, fmt.Errorf("%w: %v", ErrBadDialogInfo, err)
	}
	version, err := strconv.ParseUint(strings.TrimSpace(doc.Version), 10, 31)
	if err != nil {
		return DialogInfo{}, fmt.Errorf("%w: version %q: want a non-negative integer", ErrBadDialogInfo, truncate(doc.Version))
	}
	state := strings.TrimSpace(doc.State)
	if state != "full" && state != "partial" {
		return DialogInfo{}, fmt.Errorf("%w: state %q: want full or partial", ErrBadDialogInfo, truncate(doc.State))
	}
	entity := strings.TrimSpace(doc.Entity)
	if entity == "" {
		return DialogInfo{}, fmt.Errorf("%w: entity is missing", ErrBadDialogInfo)
	}
	info := DialogInfo{Version: int(version), State: state, Entity: entity}
	for i, d := range doc.Dialogs {
		if strings.TrimSpace(d.ID) == "" {
			return DialogInfo{}, fmt.Errorf("%w: dialog %d: id is missing", ErrBadDialogInfo, i)
		}
		st := strings.TrimSpace(d.State.Value)
		if !dialogStates[st] {
			return DialogInfo{}, fmt.Errorf("%w: dialog %q: state %q: want trying, proceeding, early, confirmed or terminated", ErrBadDialogInfo, truncate(d.ID), truncate(st))
		}
		dir := strings.TrimSpace(d.Direction)
		if dir != "" && dir != "initiator" && dir != "recipient" {
			return DialogInfo{}, fmt.Errorf("%w: dialog %q: direction %q: want initiator or recipient", ErrBadDialogInfo, truncate(d.ID), truncate(dir))
		}
		info.Dialogs = append(info.Dialogs, DialogInfoDialog{
			ID: strings.TrimSpace(d.ID), CallID: d.CallID, LocalTag: d.LocalTag, RemoteTag: d.RemoteTag,
			Direction: dir, State: st, Event: strings.TrimSpace(d.State.Event),
			Local: d.Local.identity(), Remote: d.Remote.identity(),
		})
	}
	return info, nil
}

// Marshal writes info as an application/dialog-info+xml document, for a test
// phone that serves BLF (a Notifier) the way a park server does.
// Errors come from encoding/xml.
func (info DialogInfo) Marshal() ([]byte, error) {
	doc := xmlDialogInfo{
		Version: strconv.Itoa(info.Version), State: info.State, Entity: info.Entity,
	}
	for _, d := range info.Dialogs {
		x := xmlDialog{
			ID: d.ID, CallID: d.CallID, LocalTag: d.LocalTag, RemoteTag: d.RemoteTag, Direction: d.Direction,
			Local: participant(d.Local), Remote: participant(d.Remote),
		}
		x.State.Value, x.State.Event = d.State, d.Event
		doc.Dialogs = append(doc.Dialogs, x)
	}
	out, err := xml.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("parktest: marshal dialog-info: %w", err)
	}
	return append([]byte(xml.Header), out...), nil
}
