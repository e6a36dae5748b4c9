-- Shared by every script of redisorbit and redispark. KEYS[1] is the lot's key prefix,
-- "{callpark:<cluster>}"; every other key is built from it, so all keys of
-- one lot share its hash tag and stay in one Redis Cluster slot.
local P = KEYS[1]
local K_CONFIG, K_FREE, K_HELD = P .. ':config', P .. ':free', P .. ':held'
local K_ORDINAL, K_NODES, K_EPOCH = P .. ':ordinal', P .. ':nodes', P .. ':epoch'
local K_EVENTS, K_CALLS = P .. ':events', P .. ':calls'
-- Orbits claimed ahead (held by a node, no call in them yet), and those of
-- them a directed park on another node asked for.
local K_AHEAD, K_WANTED = P .. ':ahead', P .. ':wanted'
-- Orbits whose node died or stopped with a call in them that another node
-- can take over (its record carries a handoff): orbit -> "node|ms", the
-- node it came from and when. Held by nobody until a node claims it.
local K_ORPHANS = P .. ':orphans'
-- An orphan no node claimed within this long is freed, its call lost.
local ORPHAN_TTL = 15000

-- Deadlines are compared with Redis' own clock, never the nodes'.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function node_key(name) return P .. ':node:' .. name end
local function orbits_key(name) return P .. ':orbits:' .. name end

-- free puts o back among the free orbits, scored for the lot's policy:
-- lru by release time (never-used orbits were scored below zero, in
-- order), lowest and random by the orbit's place in the table. The record
-- of the call that sat there goes with it.
local function free(o, now)
  redis.call('HDEL', K_CALLS, o)
  redis.call('SREM', K_AHEAD, o)
  local score
  if redis.call('HGET', K_CONFIG, 'policy') == 'lru' then
    score = now
  else
    score = redis.call('HGET', K_ORDINAL, o)
  end
  redis.call('ZADD', K_FREE, score, o)
end

-- portable reports whether the call parked in o can be taken over by
-- another node: its record carries the leg's handoff.
local function portable(o)
  local rec = redis.call('HGET', K_CALLS, o)
  return rec ~= false and string.find(rec, '"handoff":', 1, true) ~= nil
end

-- orphan leaves o, and the record of its call, for another node to take
-- over (takeover.lua); the caller has checked that name held it.
local function orphan(o, name, now)
  redis.call('HDEL', K_HELD, o)
  redis.call('SREM', orbits_key(name), o)
  redis.call('HSET', K_ORPHANS, o, name .. '|' .. now)
end

-- drop_node frees every orbit the node's current incarnation holds, but
-- leaves those whose call another node can take over as orphans; forgets
-- the node and tells the other nodes.
local function drop_node(name, now, why)
  local epoch = redis.call('HGET', node_key(name), 'epoch')
  local tag = name .. '|' .. tostring(epoch)
  local freed, orphans = {}, {}
  for _, o in ipairs(redis.call('SMEMBERS', orbits_key(name))) do
    if redis.call('HGET', K_HELD, o) == tag then
      if portable(o) then
        orphan(o, name, now)
        orphans[#orphans + 1] = o
      else
        redis.call('HDEL', K_HELD, o)
        free(o, now)
        freed[#freed + 1] = o
      end
    end
  end
  redis.call('DEL', orbits_key(name), node_key(name))
  redis.call('ZREM', K_NODES, name)
  redis.call('PUBLISH', K_EVENTS, cjson.encode({
    kind = 'node-down', node = name, epoch = tostring(epoch), why = why, orbits = freed, orphans = orphans }))
end

-- expire_orphans frees the orphans no node claimed in ORPHAN_TTL: their
-- calls are lost.
local function expire_orphans(now)
  if redis.call('HLEN', K_ORPHANS) == 0 then return end
  local all = redis.call('HGETALL', K_ORPHANS)
  local lost = {}
  for i = 1, #all, 2 do
    local o, v = all[i], all[i + 1]
    local sep = string.find(v, '|', 1, true)
    if now - tonumber(string.sub(v, sep + 1)) > ORPHAN_TTL then
      redis.call('HDEL', K_ORPHANS, o)
      free(o, now)
      lost[#lost + 1] = o
    end
  end
  if #lost > 0 then
    redis.call('PUBLISH', K_EVENTS, cjson.encode({
      kind = 'lost', node = '', why = 'no node took the call over', orbits = lost }))
  end
end

-- grace keeps an outage of Redis itself from counting against the nodes.
-- Every script notes when it ran (the heartbeat); while any node is up
-- its reaper runs every half second. A gap longer than two renewals of
-- the slowest node means nobody could reach Redis (it was down, paused or
-- cut off), not that the nodes died: every deadline moves by the gap, so
-- the nodes renew and keep their orbits instead of being reaped at once.
-- A node that really died is reaped one lease later.
local function grace(now)
  local last = tonumber(redis.call('HGET', K_CONFIG, 'heartbeat'))
  redis.call('HSET', K_CONFIG, 'heartbeat', now)
  if not last then return end
  local gap = now - last
  local nodes = redis.call('ZRANGE', K_NODES, 0, -1, 'WITHSCORES')
  local slowest = 0
  for i = 1, #nodes, 2 do
    local lease = tonumber(redis.call('HGET', node_key(nodes[i]), 'lease')) or 0
    if lease > slowest then slowest = lease end
  end
  if slowest == 0 or gap <= slowest * 2 / 3 then return end
  for i = 1, #nodes, 2 do
    redis.call('ZADD', K_NODES, tonumber(nodes[i + 1]) + gap, nodes[i])
  end
end

-- reap drops every node whose lease ran out, and frees the orphans
-- nobody took.
local function reap(now)
  grace(now)
  local dead = redis.call('ZRANGEBYSCORE', K_NODES, '-inf', '(' .. now)
  for _, name in ipairs(dead) do
    drop_node(name, now, 'lease expired')
  end
  expire_orphans(now)
  return dead
end

-- check fences a node: nil when the node's incarnation (epoch) still owns a
-- live lease in this generation of the lot, else the reason.
local function check(node, epoch, generation, now)
  local g = redis.call('HGET', K_CONFIG, 'generation')
  if not g then return 'CALLPARK_NOTABLE' end
  grace(now)
  if g ~= generation then return 'CALLPARK_RESET' end
  if redis.call('HGET', node_key(node), 'epoch') ~= epoch then return 'CALLPARK_FENCED' end
  local deadline = redis.call('ZSCORE', K_NODES, node)
  if not deadline or tonumber(deadline) < now then return 'CALLPARK_FENCED' end
  return nil
end

local function claim(o, node, epoch)
  redis.call('SREM', K_WANTED, o)
  redis.call('ZREM', K_FREE, o)
  redis.call('HSET', K_HELD, o, node .. '|' .. epoch)
  redis.call('SADD', orbits_key(node), o)
end

local function settling(now)
  local until_ms = redis.call('HGET', K_CONFIG, 'settle_until')
  return until_ms and tonumber(until_ms) > now
end
