package parkhttp

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/callpark/callpark/park"
)

// appendEvent appends e as the stream's JSON (docs/OPERATOR.md), the
// document encoding/json writes for it (hub_test.go checks), at a tenth
// of its cost: at a
// thousand parks a second every event is encoded, and reflection made the
// encoding most of what the operator's view cost the server.
func appendEvent(b []byte, e park.Event, node string) []byte {
	b = append(b, `{"kind":`...)
	b = appendString(b, e.Kind.String())
	b = append(b, `,"time":`...)
	b = appendTime(b, e.Time)
	b = append(b, `,"call":`...)
	b = appendCall(b, e.Call, node)
	if e.Kind == park.EventRinging || e.Kind == park.EventRingFailed {
		b = append(b, `,"purpose":`...)
		b = appendString(b, e.Purpose.String())
		if e.Target != "" {
			b = append(b, `,"target":`...)
			b = appendString(b, e.Target)
		}
		if e.Attempt != 0 {
			b = append(b, `,"attempt":`...)
			b = strconv.AppendInt(b, int64(e.Attempt), 10)
		}
	}
	if e.Kind == park.EventEnded {
		b = append(b, `,"outcome":`...)
		b = appendString(b, e.Outcome.String())
	}
	if e.Err != nil {
		b = append(b, `,"error":`...)
		b = appendString(b, e.Err.Error())
	}
	return append(b, '}')
}

// appendCall appends c as callJSON marshals.
func appendCall(b []byte, c park.CallInfo, node string) []byte {
	if c.Node != "" {
		node = c.Node
	}
	b = append(b, `{"orbit":`...)
	b = appendString(b, string(c.Orbit))
	b = append(b, `,"park_id":`...)
	b = appendString(b, c.ParkID)
	b = append(b, `,"party":`...)
	b = appendString(b, c.Party)
	b = append(b, `,"parker":`...)
	b = appendString(b, c.Parker)
	b = append(b, `,"node":`...)
	b = appendString(b, node)
	b = append(b, `,"since":`...)
	b = appendTime(b, c.Since)
	if !c.RecallAt.IsZero() {
		b = append(b, `,"recall_at":`...)
		b = appendTime(b, c.RecallAt)
	}
	b = append(b, `,"state":`...)
	b = appendString(b, c.State.String())
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(c.Attempts), 10)
	return append(b, '}')
}

// appendTime appends t in UTC as time.Time's MarshalJSON does.
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as encoding/json
// escapes it (HTML characters included, invalid UTF-8 as U+FFFD): parties
// and targets come from SIP headers, which anyone can write.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
