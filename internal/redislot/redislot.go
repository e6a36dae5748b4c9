// Package redislot is the layout of one call park lot in Redis, shared by
// orbit/redisorbit (who holds which orbit, the nodes and their leases) and
// park/redispark (the record of each parked call, the events): both read
// and write the same keys, so their scripts start from one prelude that
// names every key and holds the rules both need (Redis' clock, freeing an
// orbit, dropping a dead node, fencing).
//
// Every key of a lot is under the hash tag {callpark:<cluster>}:
//
//	:config   hash   orbits, policy, generation, created, settle_until, heartbeat
//	:ordinal  hash   orbit -> its place in the table
//	:free     zset   free orbits, scored for the policy
//	:held     hash   orbit -> "node|epoch" of the incarnation holding it
//	:calls    hash   orbit -> the JSON record of the call parked there
//	:orphans  hash   orbit -> "node|ms": a call whose node died or stopped, for another to take over
//	:nodes    zset   node -> lease deadline (ms, Redis TIME)
//	:node:N   hash   epoch, advertise, joined, lease
//	:orbits:N set    the orbits node N holds
//	:epoch    string the last epoch handed out
//	:events   channel the lot's events and node-down notices, as JSON
package redislot

import (
	_ "embed"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

//go:embed prelude.lua
var prelude string

// Script returns a script of the lot: the prelude, then src.
func Script(src string) *redis.Script { return redis.NewScript(prelude + "\n" + src) }

// Prefix returns the key prefix of the named lot; it is KEYS[1] of every
// script.
func Prefix(cluster string) string { return "{callpark:" + cluster + "}" }

// Events returns the channel the lot's events are published on.
func Events(cluster string) string { return Prefix(cluster) + ":events" }

// Error codes the scripts reply with.
const (
	CodeNoTable  = "CALLPARK_NOTABLE"  // the lot is not in Redis (never created, or Redis lost it)
	CodeReset    = "CALLPARK_RESET"    // the lot was re-created since the node joined
	CodeFenced   = "CALLPARK_FENCED"   // the node's incarnation is over: its lease ran out or it rejoined
	CodeSettling = "CALLPARK_SETTLING" // the lot was re-created and refuses claims for one lease
	CodeFull     = "CALLPARK_FULL"
	CodeInUse    = "CALLPARK_INUSE"
	CodeAhead    = "CALLPARK_AHEAD" // another node claimed the orbit ahead, for its next park: asked to give it back
	CodeUnknown  = "CALLPARK_UNKNOWN"
	CodeNotInUse = "CALLPARK_NOTINUSE"
	CodeMoving   = "CALLPARK_MOVING" // the orbit's call is being taken over by another node
)

// ReplyCode returns the CALLPARK_ code of a script's error reply, "" for
// any other error (the network, a timeout) and for nil.
func ReplyCode(err error) string {
	var re redis.Error
	if err == nil || !errors.As(err, &re) {
		return ""
	}
	msg := re.Error()
	i := strings.Index(msg, "CALLPARK_")
	if i < 0 {
		return ""
	}
	code := msg[i:]
	if j := strings.IndexAny(code, " \r\n"); j >= 0 {
		code = code[:j]
	}
	return code
}
