-- takeover: ARGV node, epoch, generation, orbit. Claims an orphan (a call
-- whose node died or stopped) for this node, fenced: of the nodes that
-- try, one gets it. Returns {from, record}: the node it came from and the
-- record of its call as that node last wrote it; nil when it is no orphan
-- (another node was first, or it was freed).
local node, epoch, generation, o = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now = now_ms()
local bad = check(node, epoch, generation, now)
if bad then return redis.error_reply(bad) end
local v = redis.call('HGET', K_ORPHANS, o)
if not v then return nil end
redis.call('HDEL', K_ORPHANS, o)
claim(o, node, epoch)
local from = string.sub(v, 1, string.find(v, '|', 1, true) - 1)
redis.call('PUBLISH', K_EVENTS, cjson.encode({ kind = 'taken', node = node, from = from, orbits = { o } }))
return { from, redis.call('HGET', K_CALLS, o) or '' }
