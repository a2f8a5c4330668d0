//! The Lua scripts the cluster runs in Redis, each a single step (Redis runs a script alone), so
//! what several nodes do at once never interleaves inside one: numbering and publishing a
//! message, loading a room, telling and forgetting presence, restoring history, and putting back
//! what Redis lost. `link.rs` loads them (`SCRIPT LOAD`) on every connection and calls them by
//! hash.

/// A Lua function the two scripts that keep messages start with (`conn.rs` puts it in front):
/// adds `msg` to a room's history stream and forgets the oldest while the stream holds more
/// than `most` messages or `most_bytes` bytes (the newest always stays), as a room's history
/// does on one node; the stream's size in bytes is kept beside it.
pub const KEEP_LUA: &str = r#"
local function keep(stream, size_key, msg, most, most_bytes, ttl)
  -- A stream that is gone (expired, evicted) starts its count again.
  if redis.call('EXISTS', stream) == 0 then redis.call('SET', size_key, 0) end
  redis.call('XADD', stream, '*', 'm', msg)
  local bytes = redis.call('INCRBY', size_key, #msg)
  local n = redis.call('XLEN', stream)
  while n > 1 and (n > most or bytes > most_bytes) do
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', stream, first[1])
    bytes = redis.call('DECRBY', size_key, #first[2][2])
    n = n - 1
  end
  if bytes < 0 then redis.call('SET', size_key, 0) end
  redis.call('EXPIRE', stream, ttl)
  redis.call('EXPIRE', size_key, ttl)
end
"#;

/// Numbers a message, keeps it in the room's stream and publishes it, as one step (after
/// `KEEP_LUA`).
/// KEYS: the room's sequence, its history stream, the stream's size. ARGV: the message without
/// its id (a JSON object), the channel, how many messages and bytes the stream keeps, the keys'
/// time to live (s).
pub const POST_LUA: &str = r#"
local id = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local msg = '{"id":' .. id .. ',' .. string.sub(ARGV[1], 2)
if tonumber(ARGV[3]) > 0 then
  keep(KEYS[2], KEYS[3], msg, tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
end
redis.call('PUBLISH', ARGV[2], msg)
return id
"#;

/// Puts a message the host restores into a room's history, if its id is above the last kept
/// one (else nothing: restored oldest first, and by several nodes at once, it is kept once), and
/// raises the room's sequence to it (after `KEEP_LUA`). Returns 1 if kept, 0 if not.
/// KEYS: the room's sequence, its history stream, the stream's size. ARGV: the message (JSON,
/// with its id), its id, how many messages and bytes the stream keeps, the keys' time to live
/// (s).
pub const RESTORE_LUA: &str = r#"
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 and cjson.decode(last[1][2][2])['id'] >= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  keep(KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5])
end
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[5])
end
return 1
"#;

/// A room's last id, its user count, its newest messages (oldest first) and its users per node:
/// `{seq, users, n, msg × n, user × …}`.
/// KEYS: the room's sequence, history stream, presence hash, users hash. ARGV: how many messages.
pub const LOAD_LUA: &str = r#"
local out = {redis.call('GET', KEYS[1]) or '0', tostring(redis.call('HLEN', KEYS[4]))}
local entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[1])
out[3] = tostring(#entries)
for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
local users = redis.call('HVALS', KEYS[3])
for i = 1, #users do out[#out + 1] = users[i] end
return out
"#;

/// Sets (tabs > 0) or removes (tabs = 0) a user's entry for this node in a room, counts on how
/// many nodes the user is there, and announces it on the room's channel: "came" when its first
/// node arrived, "went" when its last one left, with the room's user count. Idempotent: telling
/// the same again changes nothing and announces no coming or going.
/// KEYS: presence hash, users hash, this node's rooms, the nodes with users, the rooms with
/// users. ARGV: field
/// (`<node>:<user>`), user, value (JSON), tabs, channel, room, node.
pub const PRESENCE_LUA: &str = r#"
local edge = ''
if tonumber(ARGV[4]) > 0 then
  if redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) == 1 then
    if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then edge = 'came' end
    redis.call('SADD', KEYS[3], ARGV[6])
    redis.call('SADD', KEYS[4], ARGV[7])
  end
elseif redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[2], ARGV[2])
    edge = 'went'
  end
end
local users = redis.call('HLEN', KEYS[2])
if users > 0 then redis.call('SADD', KEYS[5], ARGV[6]) else redis.call('SREM', KEYS[5], ARGV[6]) end
redis.call('PUBLISH', ARGV[5], '{"p":"' .. edge .. '","users":' .. users .. ',' .. string.sub(ARGV[3], 2))
return users
"#;

/// Forgets users of nodes, announcing each one that is then gone from a room:
/// - mode `sweep`: every user of every node whose `alive` key expired (it died, or lost Redis
///   for longer than that), and that node's lists;
/// - mode `sync`: this node's users that are not in the rest of ARGV (`<room>\n<field>` each),
///   after this node lost Redis for a while (users who left meanwhile); its names stay;
/// - mode `leave`: every user and name of this node, which stops.
///
/// ARGV: the prefix, this node's number, the mode, then the fields to keep. Returns how many
/// entries it removed.
pub const FORGET_LUA: &str = r#"
local prefix, me, mode, swept = ARGV[1], ARGV[2], ARGV[3], 0
local keep = {}
for i = 4, #ARGV do keep[ARGV[i]] = true end
local nodes = {}
if mode == 'sync' or mode == 'leave' then
  nodes = {me}
else
  local known = redis.call('SUNION', prefix .. ':presence-nodes', prefix .. ':name-holder-nodes')
  for _, node in ipairs(known) do
    if node ~= me and redis.call('EXISTS', prefix .. ':alive:' .. node) == 0 then nodes[#nodes + 1] = node end
  end
end
for _, node in ipairs(nodes) do
  local rooms_key = prefix .. ':node-rooms:' .. node
  for _, room in ipairs(redis.call('SMEMBERS', rooms_key)) do
    local pkey, ukey = prefix .. ':presence:' .. room, prefix .. ':users:' .. room
    local fields = redis.call('HGETALL', pkey)
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, #node + 1) == node .. ':' and not keep[room .. '\n' .. fields[i]] then
        local user = string.sub(fields[i], #node + 2)
        redis.call('HDEL', pkey, fields[i])
        local edge = ''
        if redis.call('HINCRBY', ukey, user, -1) <= 0 then
          redis.call('HDEL', ukey, user)
          edge = 'went'
        end
        local value = string.gsub(fields[i + 1], '"tabs":%d+}$', '"tabs":0}')
        local users = redis.call('HLEN', ukey)
        if users == 0 then redis.call('SREM', prefix .. ':rooms', room) end
        redis.call('PUBLISH', prefix .. ':room:' .. room,
          '{"p":"' .. edge .. '","users":' .. users .. ',' .. string.sub(value, 2))
        swept = swept + 1
      end
    end
  end
  if mode ~= 'sync' then
    redis.call('DEL', rooms_key)
    redis.call('SREM', prefix .. ':presence-nodes', node)
    redis.call('SREM', prefix .. ':name-holder-nodes', node)
  end
  -- Names: a dead (or leaving) node's are given up; a node that syncs keeps its own.
  if mode ~= 'sync' then
    local names_key = prefix .. ':node-names:' .. node
    for _, lower in ipairs(redis.call('SMEMBERS', names_key)) do
      local holders = prefix .. ':name-nodes:' .. lower
      redis.call('SREM', holders, node)
      if redis.call('SCARD', holders) == 0 then
        redis.call('HDEL', prefix .. ':names', lower)
        redis.call('DEL', holders)
      end
    end
    redis.call('DEL', names_key)
  end
end
return swept
"#;

/// What a node that followed a room knows survives Redis losing it (a restart without
/// persistence) or expiring it (a quiet room): the room's sequence never goes below the node's
/// last id, and its keys' time to live starts again. KEYS: the room's sequence, its history
/// stream, the stream's size. ARGV: this node's last id of the room, the time to live (s).
pub const HEAL_LUA: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return 1
"#;

/// What the cluster as a whole knows, kept by every node: the epoch (set again if Redis lost it)
/// and the node counter (never below a live node's number, so a node started after Redis lost
/// it does not take a number in use). KEYS: epoch, nodes. ARGV: this node's epoch, its number.
pub const RESEED_LUA: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return redis.call('GET', KEYS[1])
"#;

/// Takes a name for a user of this node, unless another user has it (a logged-in user's claim,
/// `force`, takes it anyway: the login decides). Returns 1 if the user has it now, 0 if not.
/// KEYS: the names, the name's holder nodes, this node's names, the nodes holding names.
/// ARGV: the lower-cased name, the user key, this node's number, force (1/0), the channel every
/// node follows, the name as written.
pub const CLAIM_LUA: &str = r#"
local owner = redis.call('HGET', KEYS[1], ARGV[1])
if owner and owner ~= ARGV[2] and ARGV[4] ~= '1' then return 0 end
if owner and owner ~= ARGV[2] then
  -- A logged-in user takes the name from a guest: the guest's nodes rename it.
  redis.call('PUBLISH', ARGV[5], cjson.encode({node = 0, op = {op = 'rename', user = owner, name = ARGV[6]}}))
end
if owner ~= ARGV[2] then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
"#;

/// Gives up a name on this node: when no node's user has it any more it is free.
/// KEYS: the names, the name's holder nodes, this node's names. ARGV: the lower-cased name, the
/// user key, this node's number.
pub const RELEASE_LUA: &str = r#"
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 1 end
redis.call('SREM', KEYS[2], ARGV[3])
redis.call('SREM', KEYS[3], ARGV[1])
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('DEL', KEYS[2])
end
return 1
"#;

/// Takes the next node number whose `alive` key is free, and sets it: a node that starts while
/// Redis's counter was lost (and the old nodes have not put it back yet) does not take a number
/// in use. KEYS: the node counter. ARGV: the prefix, the `alive` key's life (ms).
pub const JOIN_LUA: &str = r#"
for _ = 1, 100000 do
  local n = redis.call('INCR', KEYS[1])
  if redis.call('SET', ARGV[1] .. ':alive:' .. n, 1, 'NX', 'PX', ARGV[2]) then return n end
end
return redis.error_reply('no free node number')
"#;
