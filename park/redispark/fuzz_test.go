package redispark

import "testing"

// Messages on the lot's channel come from any node, any version, or anyone
// with access to Redis: reading them must never panic.
func FuzzParseMessage(f *testing.F) {
	for _, s := range []string{
		`{"kind":"event","node":"a","event":{"kind":1,"time":1,"call":{"orbit":"701","park_id":"x","since":1,"state":1,"node":"a"}}}`,
		`{"kind":"node-down","node":"a","epoch":"3","why":"lease expired","orbits":["701","702"]}`,
		`{"kind":"node-down","node":"a","orbits":{}}`,
		`{"kind":"sync","node":"b"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := parseMessage(payload)
		if err == nil && m.Kind == "event" {
			_ = m.Event.event()
		}
	})
}
