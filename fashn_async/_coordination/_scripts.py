"""The Lua scripts: each runs atomically on the Redis server, on the server's clock.

Times are integer microseconds from Redis ``TIME``; they stay exact in Lua's doubles (2**53
us is 285 years) and are written back with ``%d`` so no digit is lost. Windows are
half-open like the local limiter's: a grant at ``t`` stops counting at ``t + window``. A
log and the leases never expire: each holds its epoch (``epoch_of``), which must live
and die with the data.
Scripts that read ``TIME`` and then write need effect replication (Redis >= 5).
"""

from __future__ import annotations

__all__ = [
    "EPOCH",
    "HEARTBEAT",
    "LEASE_ACQUIRE",
    "PAUSE",
    "REPLAY",
    "RESTAMP",
    "WINDOW_ACQUIRE",
]

#: Every script's first ARGV is the clock: ``""`` for the server's ``TIME`` (always, in
#: use), or a time in microseconds (tests that drive the scripts on fake loop time). It is
#: taken off ARGV, so each script's own arguments start at ARGV[1].
_NOW = """
local clock = table.remove(ARGV, 1)
local now
if clock == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(clock)
end
local function int(x) return string.format('%d', x) end
-- The epoch of key, a sorted set: its member scored +inf ("epoch@<token>@<start, us>"),
-- begun with token if it has none (the set then never expires: the epoch lives and dies
-- with the data, evicted, deleted or flushed together), and its version, the grants it
-- has taken (a member "version@<n>", also scored +inf; see bump). A version below the
-- one the caller knew (known_version) of the same epoch is an older copy of the data (a
-- restart from a snapshot, a failover to a replica that lagged, a backup restored): the
-- grants since are lost, as in a flush, so a new epoch begins. Also whether the caller
-- knew another (the data was lost since): then hold_key (a time, us) is set to the new
-- epoch's start + hold, by when every live process has written its own back. (marks:
-- the epoch member and the version of key, nil and 0 if none.)
local function marks(key)
  local epoch, version = nil, 0
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', key, '+inf', '+inf')) do
    local n = string.match(member, '^version@(%d+)$')
    if n then version = tonumber(n) elseif not epoch then epoch = member end
  end
  return epoch, version
end
local function epoch_of(key, known, token, hold_key, hold, known_version)
  local epoch, version = marks(key)
  if epoch and epoch == known and version < tonumber(known_version) then
    redis.call('ZREM', key, epoch)
    epoch = nil
  end
  if not epoch then
    redis.call('ZREM', key, 'version@' .. int(version))
    epoch, version = 'epoch@' .. token .. '@' .. int(now), 0
    redis.call('ZADD', key, '+inf', epoch)
  end
  redis.call('PERSIST', key)
  if known == '' or known == epoch then return epoch, false, version end
  local held = tonumber(string.match(epoch, '@(%d+)$')) + hold
  if held > now and held > tonumber(redis.call('GET', hold_key) or '0') then
    redis.call('SET', hold_key, int(held), 'PX', math.ceil((held - now) / 1000) + 1000)
  end
  return epoch, true, version
end
-- Sets key's expiry to ms unless it already lasts longer: clients whose lease_ttl differ
-- share the members, queue and holds keys, and the shortest must not cut the others'.
local function extend(key, ms)
  if redis.call('PTTL', key) < ms then redis.call('PEXPIRE', key, ms) end
end
-- A grant taken from key, or grants written back to it: its version one up (returned).
local function bump(key, version)
  redis.call('ZREM', key, 'version@' .. int(version))
  redis.call('ZADD', key, '+inf', 'version@' .. int(version + 1))
  return version + 1
end
-- The amount of a grant in a log ("<grant id>:<amount>"; nil for the epoch).
local function amount_of(member)
  local amount = string.match(member, ':(%d+)$')
  return amount and tonumber(amount)
end
"""

#: KEYS: grant log (zset of "<grant id>:<amount>" scored by grant time, and its epoch),
#: pause-until, members (the heartbeat's zset of live clients, scored by expiry).
#: ARGV: limit, window (us), amount, grant id, the epoch the caller knows ("" if none), a
#: token for a new epoch, hold (us), the epoch's version the caller knows (0 if none),
#: horizon (us). A grant is dated ``horizon`` ahead while its request is out (re-dated
#: by ``RESTAMP`` when it ends): should its process die, the server may still act on the
#: request that long.
#: Returns {1, now, epoch, live clients, version} when granted, {0, microseconds until
#: it could be, epoch, live clients, version}, or {2, microseconds, epoch, live clients,
#: version} when the epoch the caller knew is gone (Redis lost the log since: a restart,
#: a FLUSHALL, an eviction, a DEL, an older copy put back): nothing granted, and no
#: process is granted anything until ``hold`` after the new epoch began, by when every
#: live process has written its own grants of the last window back (its heartbeat, in
#: ``_coordinator``).
WINDOW_ACQUIRE = (
    _NOW
    + """
local limit, window, amount = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local epoch, forgot, version = epoch_of(
  KEYS[1], ARGV[5], ARGV[6], KEYS[2], tonumber(ARGV[7]), ARGV[8]
)
local live = redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if forgot then
  return {2, math.max(paused - now, 0), epoch, live, version}
end
if paused > now then
  return {0, paused - now, epoch, live, version}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now - window))
local log = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local used = 0
for i = 1, #log, 2 do
  used = used + (amount_of(log[i]) or 0)
end
local horizon = tonumber(ARGV[9])
if used + amount <= limit then
  redis.call('ZADD', KEYS[1], int(now + horizon), ARGV[4] .. ':' .. ARGV[3])
  return {1, now, epoch, live, bump(KEYS[1], version)}
end
local excess = used + amount - limit
for i = 1, #log, 2 do
  excess = excess - (amount_of(log[i]) or 0)
  if excess <= 0 then  -- (one dated ahead, its request out, may end any time: ask again)
    return {0, math.min(tonumber(log[i + 1]), now) + window - now, epoch, live, version}
  end
end
return {0, window, epoch, live, version}
"""
)

#: KEYS: a log or the leases, its pause- or hold-until. ARGV: the epoch the caller knows
#: ("" if none), a token for a new epoch, hold (us), the epoch's version the caller knows
#: (0 if none). Returns {epoch, 1 if the caller knew another (then the hold is set, as
#: WINDOW_ACQUIRE and LEASE_ACQUIRE do) or 0, version}: how a process that asks for
#: nothing learns at its heartbeat that Redis lost the data.
EPOCH = (
    _NOW
    + """
local epoch, forgot, version = epoch_of(
  KEYS[1], ARGV[1], ARGV[2], KEYS[2], tonumber(ARGV[3]), ARGV[4]
)
return {epoch, forgot and 1 or 0, version}
"""
)

#: KEYS: pause-until. ARGV: microseconds. Extends the pause, never shortens it.
#: Returns the pause's end (us, server time).
PAUSE = (
    _NOW
    + """
local length = tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + length > current then
  redis.call('SET', KEYS[1], int(now + length), 'PX', math.ceil(length / 1000) + 1000)
  return now + length
end
return current
"""
)

#: KEYS: grant log. ARGV: window (us), then pairs of (age in us, member).
#: Puts back grants made while Redis was away (or lost with it), dated by their age,
#: and bumps the log's version if any was missing (an older copy then shows).
REPLAY = (
    _NOW
    + """
local window, added = tonumber(ARGV[1]), 0
for i = 2, #ARGV, 2 do
  local age = tonumber(ARGV[i])  -- (below 0: dated ahead, its request out)
  if age < window then
    added = added + redis.call('ZADD', KEYS[1], 'NX', int(now - age), ARGV[i + 1])
  end
end
if added > 0 then  -- (a copy from before these were written back is older)
  bump(KEYS[1], select(2, marks(KEYS[1])))
end
return #ARGV
"""
)

#: KEYS: grant log. ARGV: window (us), then pairs of (us after now, member) for grants
#: whose requests ended. Dates each grant that long after now: 0 for an answer (the
#: server counted the request before it), more when none came (``counted_by`` in
#: ``fashn_async._window``). Puts back one that outlived the window unanswered, so a
#: window counted from here never ends before the server's.
RESTAMP = (
    _NOW
    + """
for i = 2, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[i])), ARGV[i + 1])
end
return (#ARGV - 1) / 2
"""
)

#: KEYS: leases (zset of lease ids scored by expiry, and their epoch), queue (zset of
#: owners scored by arrival), members (zset of live owners scored by expiry), hold-until.
#: ARGV: capacity, lease ttl (us), lease id, owner, the epoch the caller knows ("" if
#: none), a token for a new epoch, hold (us), the epoch's version the caller knows.
#: The owners waiting are served in arrival order; one that died leaves the queue when
#: its membership expires. Returns {1, free slots left, epoch, live clients, version,
#: leases}, {0, owners ahead of us, epoch, live clients, version, leases}, or {2, 0,
#: epoch, live clients, version, leases} when the epoch the caller knew is gone (as
#: WINDOW_ACQUIRE); nothing is granted until the hold's end. ``leases``: those live
#: after the call, every client's.
LEASE_ACQUIRE = (
    _NOW
    + """
local capacity, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local owner = ARGV[4]
local epoch, forgot, version = epoch_of(
  KEYS[1], ARGV[5], ARGV[6], KEYS[4], tonumber(ARGV[7]), ARGV[8]
)
local live = redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
local function leases() return redis.call('ZCOUNT', KEYS[1], int(now), '(+inf') end
if forgot then
  return {2, 0, epoch, live, version, leases()}
end
if tonumber(redis.call('GET', KEYS[4]) or '0') > now then
  return {0, 1, epoch, live, version, leases()}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now))
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', int(now))
redis.call('ZADD', KEYS[3], int(now + ttl), owner)
live = redis.call('ZCOUNT', KEYS[3], '(' .. int(now), '+inf')
for _, waiting in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[3], waiting) then
    redis.call('ZREM', KEYS[2], waiting)
  end
end
local free = capacity - redis.call('ZCOUNT', KEYS[1], '-inf', '(+inf')  -- (the epoch aside)
local ahead = redis.call('ZRANK', KEYS[2], owner) or redis.call('ZCARD', KEYS[2])
local keep = math.ceil(ttl / 1000) * 2
if ahead < free then
  redis.call('ZADD', KEYS[1], int(now + ttl), ARGV[3])
  redis.call('ZREM', KEYS[2], owner)
  extend(KEYS[3], keep)
  return {1, free - 1, epoch, live, bump(KEYS[1], version), leases()}
end
redis.call('ZADD', KEYS[2], 'NX', int(now), owner)
extend(KEYS[2], keep)
extend(KEYS[3], keep)
return {0, ahead - math.max(free, 0) + 1, epoch, live, version, leases()}
"""
)

#: KEYS: leases, members, probation-until, holds (a hash: each live owner's hold, us).
#: ARGV: ttl (us), owner, the caller's probation left (us, 0 if none), the caller's hold
#: (us), then the lease ids the owner holds.
#: Renews the owner and its leases (putting back any that were lost), notes its hold,
#: and extends the key's probation mark to the caller's. Returns how many owners are
#: alive, 1 if the owner was still known (0: Redis lost its data), the probation left
#: (us, 0: none), the leases live (every owner's), and the longest hold of a live owner
#: (the caller's included: clients whose heartbeats differ hold as long as the slowest).
HEARTBEAT = (
    _NOW
    + """
local ttl, probation = tonumber(ARGV[1]), tonumber(ARGV[3])
local keep = math.ceil(ttl / 1000) * 2
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', int(now))
local known = redis.call('ZSCORE', KEYS[2], ARGV[2]) and 1 or 0
redis.call('ZADD', KEYS[2], int(now + ttl), ARGV[2])
extend(KEYS[2], keep)
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], int(now + ttl), ARGV[i])
end
local marked = tonumber(redis.call('GET', KEYS[3]) or '0')
if probation > 0 and now + probation > marked then
  marked = now + probation
  redis.call('SET', KEYS[3], int(marked), 'PX', math.ceil(probation / 1000) + 1000)
end
redis.call('HSET', KEYS[4], ARGV[2], ARGV[4])
local longest = tonumber(ARGV[4])
local holds = redis.call('HGETALL', KEYS[4])
for i = 1, #holds, 2 do
  if redis.call('ZSCORE', KEYS[2], holds[i]) then
    longest = math.max(longest, tonumber(holds[i + 1]))
  else
    redis.call('HDEL', KEYS[4], holds[i])
  end
end
extend(KEYS[4], keep)
-- Leases live now, every client's (the epoch and its version, scored +inf, left out).
local leases = redis.call('ZCOUNT', KEYS[1], int(now), '(+inf')
return {redis.call('ZCARD', KEYS[2]), known, math.max(marked - now, 0), leases, longest}
"""
)
