package redisorbit

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/callpark/callpark/internal/redislot"
)

//go:embed lua/*.lua
var luaFiles embed.FS

// scripts are the allocator's atomic operations, each a Lua script run by
// EVALSHA (go-redis falls back to EVAL after Redis restarts and forgets
// them). Every claim, release and lease change happens inside one script,
// never as a read followed by a write.
type scripts struct {
	init, join, renew, allocate, ahead, reserve, release, reassert, leave, holder, advertise, reap, peers *redis.Script

	takeover, handover, orphans *redis.Script // takeover.go
}

func loadScripts() scripts {
	s := func(name string) *redis.Script {
		b, err := luaFiles.ReadFile("lua/" + name + ".lua")
		if err != nil {
			panic("redisorbit: missing embedded script " + name) // a build without the lua files
		}
		return redislot.Script(strings.TrimSpace(string(b)))
	}
	return scripts{
		init:      s("init"),
		join:      s("join"),
		renew:     s("renew"),
		allocate:  s("allocate"),
		ahead:     s("ahead"),
		reserve:   s("reserve"),
		release:   s("release"),
		reassert:  s("reassert"),
		leave:     s("leave"),
		holder:    s("holder"),
		advertise: s("advertise"),
		reap:      s("reap"),
		peers:     s("peers"),
		takeover:  s("takeover"),
		handover:  s("handover"),
		orphans:   s("orphans"),
	}
}
