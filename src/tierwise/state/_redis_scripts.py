"""The Lua scripts of the Redis backend: each check-and-book is one server-side step.

Why scripts: Redis runs a script atomically, so "count what is in the window, then
book" cannot interleave with another process doing the same (read-then-write
from the client would let every process see the same free slot). Times are the
calling client's wall clock (``ARGV``), so a test can drive them with a fake
clock; hosts are assumed NTP-synced (a skew of ``d`` seconds widens a window by
at most ``d``).

Leases: concurrency slots and budget reservations are booked per *owner* (one id
per process), and an owner's entries count only while its lease in the
``owners`` sorted set (score: expiry) is in the future. Every script that books
refreshes the caller's lease, and a heartbeat refreshes it while idle, so a
process killed with ``kill -9`` stops counting once its lease runs out.
"""

from __future__ import annotations

__all__ = [
    "BUDGET_ADD",
    "BUDGET_READ",
    "BUDGET_RELEASE",
    "BUDGET_RESERVE",
    "BUDGET_SETTLE",
    "BUDGET_SYNC",
    "CACHE_CLAIM",
    "CACHE_GET",
    "CACHE_RELEASE",
    "CACHE_SET",
    "CACHE_SIZE",
    "HEALTH_FAIL",
    "HEALTH_READ",
    "HEALTH_SUCCESS",
    "LIMIT_ACQUIRE",
    "LIMIT_HOLD",
    "LIMIT_OBSERVE",
    "LIMIT_READ",
    "LIMIT_RELEASE",
    "STICKY_CLAIM",
    "STICKY_GET",
]

# Concurrency slots: a hash of permit id -> owner. Only slots whose owner's lease
# is live count; the others are deleted on the way, which is how a crashed
# process's slots are freed. Per-permit fields make a release idempotent, so a
# release can safely be sent for an admission whose reply was lost.
_LIVE_SUM = """
local function live_sum(hkey, owners, now)
  local total = 0
  local rows = redis.call('HGETALL', hkey)
  local alive = {}
  for i = 1, #rows, 2 do
    local who = rows[i + 1]
    local ok = alive[who]
    if ok == nil then
      local exp = redis.call('ZSCORE', owners, who)
      ok = exp and tonumber(exp) > now
      alive[who] = ok
    end
    if ok then total = total + 1 else redis.call('HDEL', hkey, rows[i]) end
  end
  return total
end
"""

# KEYS: req zset, tok zset, tok amounts hash, conc hash, owners zset, meta hash
# ARGV: now, owner, id, tokens, req_cap, req_window, tpm, max_conc, lease
# -> {1} admitted | {0, wait seconds} | {-1} blocked on concurrency
LIMIT_ACQUIRE = (
    _LIVE_SUM
    + """
local now = tonumber(ARGV[1])
local owner = ARGV[2]
local id = ARGV[3]
local tokens = tonumber(ARGV[4])
local cap = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local tpm = tonumber(ARGV[7])
local maxc = tonumber(ARGV[8])
local lease = tonumber(ARGV[9])
redis.call('ZADD', KEYS[5], now + lease, owner)
local wait = 0
local m = redis.call('HMGET', KEYS[6], 'hold', 'rq_left', 'rq_reset', 'tk_left', 'tk_reset')
local hold = tonumber(m[1]) or 0
if hold > now then wait = hold - now end
local rq_reset = tonumber(m[3]) or 0
if rq_reset > now and (tonumber(m[2]) or 0) <= 0 then wait = math.max(wait, rq_reset - now) end
local tk_reset = tonumber(m[5]) or 0
if tk_reset > now and tokens > (tonumber(m[4]) or 0) then wait = math.max(wait, tk_reset - now) end
if maxc > 0 and live_sum(KEYS[4], KEYS[5], now) >= maxc then return {-1} end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= cap then
    local row = redis.call('ZRANGE', KEYS[1], n - cap, n - cap, 'WITHSCORES')
    wait = math.max(wait, tonumber(row[2]) + window - now)
  end
end
local sum = 0
if tpm > 0 then
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - 60)
  for i = 1, #old do
    local t = tonumber(redis.call('HGET', KEYS[3], old[i])) or 0
    redis.call('HINCRBY', KEYS[3], '_sum', -t)
    redis.call('HDEL', KEYS[3], old[i])
  end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60) end
  sum = tonumber(redis.call('HGET', KEYS[3], '_sum')) or 0
  if sum > 0 and sum + tokens > tpm then
    local need = sum + tokens - tpm
    if tokens > tpm then need = sum end
    local rows = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local freed = 0
    for i = 1, #rows, 2 do
      freed = freed + (tonumber(redis.call('HGET', KEYS[3], rows[i])) or 0)
      if freed >= need then
        wait = math.max(wait, tonumber(rows[i + 1]) + 60 - now)
        break
      end
    end
  end
end
if wait > 0 then return {0, tostring(wait)} end
local ttl = math.ceil(math.max(window, 60) + lease) + 60
if cap > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('EXPIRE', KEYS[1], ttl)
end
if tpm > 0 then
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, tokens)
  redis.call('HINCRBY', KEYS[3], '_sum', tokens)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
end
if rq_reset > now then redis.call('HINCRBY', KEYS[6], 'rq_left', -1) end
if tk_reset > now then redis.call('HINCRBY', KEYS[6], 'tk_left', -tokens) end
if maxc > 0 then
  redis.call('HSET', KEYS[4], id, owner)
  redis.call('EXPIRE', KEYS[4], ttl)
end
return {1}
"""
)

# KEYS: tok zset, tok amounts hash, conc hash. ARGV: owner, id, used (-1: no
# correction), conc (1: a concurrency slot was taken)
LIMIT_RELEASE = """
if ARGV[4] == '1' then redis.call('HDEL', KEYS[3], ARGV[2]) end
local used = tonumber(ARGV[3])
if used >= 0 and redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  local old = tonumber(redis.call('HGET', KEYS[2], ARGV[2])) or 0
  redis.call('HSET', KEYS[2], ARGV[2], used)
  redis.call('HINCRBY', KEYS[2], '_sum', used - old)
end
return 1
"""

# KEYS: meta hash. ARGV: now, req_left|'', req_reset_s|'', tok_left|'', tok_reset_s|''
LIMIT_OBSERVE = """
local now = tonumber(ARGV[1])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'rq_left', ARGV[2], 'rq_reset', now + tonumber(ARGV[3]))
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'tk_left', ARGV[4], 'tk_reset', now + tonumber(ARGV[5]))
end
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""

# KEYS: meta hash. ARGV: hold-until (wall); a shorter hold never shortens a longer one.
LIMIT_HOLD = """
local cur = tonumber(redis.call('HGET', KEYS[1], 'hold')) or 0
if tonumber(ARGV[1]) > cur then redis.call('HSET', KEYS[1], 'hold', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""

# KEYS: req zset, tok amounts hash, conc hash, owners zset, meta hash. ARGV: now, req_window
# -> {requests in window, tokens in window, in flight, hold remaining}
LIMIT_READ = (
    _LIVE_SUM
    + """
local now = tonumber(ARGV[1])
local reqs = redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[2]), '+inf')
local toks = tonumber(redis.call('HGET', KEYS[2], '_sum')) or 0
local conc = live_sum(KEYS[3], KEYS[4], now)
local hold = (tonumber(redis.call('HGET', KEYS[5], 'hold')) or 0) - now
return {reqs, toks, conc, tostring(math.max(hold, 0))}
"""
)

# Budget buckets: one hash per "<period>|<scope>" key with field 'spent' and, per
# owner, 'r:<owner>' (reserved dollars) and 'n:<owner>' (count, so the float sum
# snaps back to 0 when the owner's last reservation goes).
_BUDGET_USED = """
local function reserved(hkey, owners, now)
  local total = 0
  local rows = redis.call('HGETALL', hkey)
  for i = 1, #rows, 2 do
    local f = rows[i]
    if string.sub(f, 1, 2) == 'r:' then
      local who = string.sub(f, 3)
      local exp = redis.call('ZSCORE', owners, who)
      if (not exp) or tonumber(exp) <= now then
        redis.call('HDEL', hkey, f, 'n:' .. who)
      else
        total = total + tonumber(rows[i + 1])
      end
    end
  end
  return total
end
"""

# KEYS[1] owners zset, then KEYS[2..1+nchecks] check buckets, then reserve buckets.
# ARGV: now, owner, lease, amount, nchecks, the nchecks limits, then each reserve
# bucket's expiry in seconds (<= 0: none)
# -> {} booked, or a flat list of failing (index, used) pairs
BUDGET_RESERVE = (
    _BUDGET_USED
    + """
local now = tonumber(ARGV[1])
local owner = ARGV[2]
local amount = tonumber(ARGV[4])
local nchecks = tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), owner)
local failed = {}
for i = 1, nchecks do
  local key = KEYS[1 + i]
  local limit = tonumber(ARGV[5 + i])
  local used = (tonumber(redis.call('HGET', key, 'spent')) or 0) + reserved(key, KEYS[1], now)
  if not (used + amount <= limit and used < limit) then
    table.insert(failed, i - 1)
    table.insert(failed, tostring(used))
  end
end
if #failed > 0 then return failed end
for j = 2 + nchecks, #KEYS do
  local key = KEYS[j]
  local n = redis.call('HINCRBY', key, 'n:' .. owner, 1)
  if n == 1 then
    redis.call('HSET', key, 'r:' .. owner, ARGV[4])
  else
    redis.call('HINCRBYFLOAT', key, 'r:' .. owner, ARGV[4])
  end
  local ttl = tonumber(ARGV[4 + j])
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end
return failed
"""
)

# KEYS: reserve buckets. ARGV: owner, amount
BUDGET_RELEASE = """
for i = 1, #KEYS do
  local n = redis.call('HINCRBY', KEYS[i], 'n:' .. ARGV[1], -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[i], 'n:' .. ARGV[1], 'r:' .. ARGV[1])
  else
    redis.call('HINCRBYFLOAT', KEYS[i], 'r:' .. ARGV[1], -tonumber(ARGV[2]))
  end
end
return 1
"""

# KEYS: buckets. ARGV: cost, then each bucket's expiry in seconds (<= 0: none).
BUDGET_ADD = """
for i = 1, #KEYS do
  redis.call('HINCRBYFLOAT', KEYS[i], 'spent', ARGV[1])
  local ttl = tonumber(ARGV[1 + i])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: nrelease reserve buckets, then record buckets.
# ARGV: owner, amount, nrelease, cost, then each record bucket's expiry.
BUDGET_SETTLE = """
local nrel = tonumber(ARGV[3])
for i = 1, nrel do
  local n = redis.call('HINCRBY', KEYS[i], 'n:' .. ARGV[1], -1)
  if n <= 0 then
    redis.call('HDEL', KEYS[i], 'n:' .. ARGV[1], 'r:' .. ARGV[1])
  else
    redis.call('HINCRBYFLOAT', KEYS[i], 'r:' .. ARGV[1], -tonumber(ARGV[2]))
  end
end
for i = nrel + 1, #KEYS do
  redis.call('HINCRBYFLOAT', KEYS[i], 'spent', ARGV[4])
  local ttl = tonumber(ARGV[4 + i - nrel])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# What one owner holds, stated absolutely (after an exchange whose replies were lost:
# a reservation may have been booked unseen, a release applied twice).
# KEYS: buckets. ARGV: owner, then per bucket: reserved dollars, count, expiry (<= 0: none)
BUDGET_SYNC = """
local owner = ARGV[1]
for i = 1, #KEYS do
  local base = 2 + 3 * (i - 1)
  if tonumber(ARGV[base + 1]) <= 0 then
    redis.call('HDEL', KEYS[i], 'r:' .. owner, 'n:' .. owner)
  else
    redis.call('HSET', KEYS[i], 'r:' .. owner, ARGV[base], 'n:' .. owner, ARGV[base + 1])
    local ttl = tonumber(ARGV[base + 2])
    if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
  end
end
return 1
"""

# KEYS[1] owners, then buckets. ARGV: now -> flat {spent, reserved} per bucket
BUDGET_READ = (
    _BUDGET_USED
    + """
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  table.insert(out, tostring(tonumber(redis.call('HGET', KEYS[i], 'spent')) or 0))
  table.insert(out, tostring(reserved(KEYS[i], KEYS[1], now)))
end
return out
"""
)

# Circuit state per deployment: hash {open_until, breaker, cooldown} plus a zset of
# failure times since the last success. The same state machine as HealthTracker.
# KEYS: state hash, failures zset, keys set. ARGV: now, window, threshold,
# cooldown, max_cooldown, retry_after (0: none), name
# -> {open_until, breaker, cooldown, failures}
HEALTH_FAIL = """
local now = tonumber(ARGV[1])
local base = tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'open_until', 'breaker', 'cooldown')
local open_until = tonumber(h[1]) or 0
local breaker = h[2] == '1'
local cooldown = tonumber(h[3]) or base
local status = 'healthy'
if now < open_until then status = 'cooling' elseif breaker then status = 'half_open' end
redis.call('ZADD', KEYS[2], now, now .. ':' .. math.random())
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[2]))
local n = redis.call('ZCARD', KEYS[2])
if status == 'half_open' then
  cooldown = math.min(cooldown * 2, tonumber(ARGV[5]))
  breaker = true
  open_until = math.max(open_until, now + cooldown)
elseif status == 'cooling' and breaker then
  open_until = math.max(open_until, now + cooldown)
elseif n >= tonumber(ARGV[3]) then
  breaker = true
  open_until = math.max(open_until, now + cooldown)
end
local ra = tonumber(ARGV[6])
if ra > 0 then open_until = math.max(open_until, now + math.min(ra, tonumber(ARGV[5]))) end
local b = '0'
if breaker then b = '1' end
redis.call('HSET', KEYS[1], 'open_until', tostring(open_until), 'breaker', b, 'cooldown', tostring(cooldown))
redis.call('SADD', KEYS[3], ARGV[7])
local ttl = math.ceil(tonumber(ARGV[5]) + tonumber(ARGV[2])) + 60
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return {tostring(open_until), b, tostring(cooldown), n}
"""

# KEYS: state hash, failures zset
HEALTH_SUCCESS = """
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""

# KEYS[1]: keys set. ARGV: prefix for state hashes, now, window
# -> flat {name, open_until, breaker, cooldown, failures} per deployment with state
HEALTH_READ = """
local out = {}
local names = redis.call('SMEMBERS', KEYS[1])
local now = tonumber(ARGV[2])
for i = 1, #names do
  local name = names[i]
  local h = redis.call('HMGET', ARGV[1] .. 'h:' .. name, 'open_until', 'breaker', 'cooldown')
  if h[1] then
    local n = redis.call('ZCOUNT', ARGV[1] .. 'hf:' .. name, now - tonumber(ARGV[3]), '+inf')
    table.insert(out, name)
    table.insert(out, h[1])
    table.insert(out, h[2])
    table.insert(out, h[3])
    table.insert(out, n)
  else
    redis.call('SREM', KEYS[1], name)
  end
end
return out
"""

# -- the response cache ---------------------------------------------------------
#
# One string per answer (the JSON body, expiring with Redis's own PX, so keys are
# volatile and ``maxmemory-policy volatile-lru`` may evict them), an index zset of
# entry -> expiry bounding the number of entries, and a short lock per key
# (SET NX PX, the value the holder's token) coalescing identical in-flight calls.
# A lock whose holder gave up without an answer (an error, an answer too big to
# share) is set to '!' for the rest of its time: waiters then call themselves.

# KEYS: value. -> body | nil
CACHE_GET = """
return redis.call('GET', KEYS[1])
"""

# KEYS: value, lock. ARGV: token, lock ms
# -> {1, body} answered | {2} the caller leads | {0} another call is in flight |
#    {3} the call in flight gave up (call yourself)
CACHE_CLAIM = """
local body = redis.call('GET', KEYS[1])
if body then return {1, body} end
local holder = redis.call('GET', KEYS[2])
if holder == '!' then return {3} end
if holder then return {0} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {2}
"""

# KEYS: value, lock, index. ARGV: body, ttl ms, token, max entries, now (s),
# entry name (the index member), value key prefix
CACHE_SET = """
local now = tonumber(ARGV[5])
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('ZADD', KEYS[3], now + ttl / 1000, ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local over = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[4])
if over > 0 then
  local gone = redis.call('ZPOPMIN', KEYS[3], over)
  for i = 1, #gone, 2 do redis.call('DEL', ARGV[7] .. gone[i]) end
end
redis.call('PEXPIRE', KEYS[3], ttl + 60000)
return 1
"""

# KEYS: lock. ARGV: token, mode ('free': a waiter may take over; 'gave_up':
# waiters call themselves)
CACHE_RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'free' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], '!', 'KEEPTTL')
end
return 1
"""

# KEYS: index. ARGV: now (s) -> live entries
CACHE_SIZE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""

# -- sticky conversations -------------------------------------------------------
#
# One string per conversation: the route label of its first routed turn. The
# first process to route a conversation wins (SET NX); each read renews the TTL,
# so a conversation in use stays put however long it runs.

# KEYS: conversation. ARGV: ttl s -> label | nil
STICKY_GET = """
local label = redis.call('GET', KEYS[1])
if label then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return label
"""

# KEYS: conversation. ARGV: label, ttl s -> the conversation's label (this one, or
# the one another process booked first)
STICKY_CLAIM = """
local label = redis.call('GET', KEYS[1])
if label then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return label
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]
"""
