import { LuaScript } from "./lua-script.js";
import { FENCED_STATES, LAUNCH_STATES, TRANSITIONS } from "./states.js";

// Every change to a task runs as one of these scripts, so it is atomic: two controllers
// (or a controller and a late event) cannot both move a task, and an event is applied
// and marked as seen in the same step. Values travel as strings: Lua numbers would be
// printed as "1.7e+12".

function luaSet(values: readonly string[]): string {
  return `{${values.map((v) => `[${JSON.stringify(v)}]=true`).join(",")}}`;
}

const ALLOWED_LUA = `{${Object.entries(TRANSITIONS)
  .map(([from, tos]) => `[${JSON.stringify(from)}]=${luaSet(tos)}`)
  .join(",")}}`;

// Lease value is "<token>:<owner>"; returns the token when `owner` (or anyone, if nil) holds it.
const LEASE_TOKEN_LUA = `
local function lease_token(key)
  local cur = redis.call("GET", key)
  if not cur then return nil, nil end
  local token, owner = string.match(cur, "^(%d+):(.*)$")
  return token, owner
end
`;

// KEYS: task, transitions, events, lease, instances. ARGV[1]: JSON payload
// { moves, at, reason?, eventId?, instanceId?, fencingToken?, set, incr, max, snapshot? }.
// Returns a JSON result { status, from?, to?, version? }.
export const applyScript = new LuaScript(`
local ALLOWED = ${ALLOWED_LUA}
local FENCED = ${luaSet(FENCED_STATES)}
local LAUNCH = ${luaSet(LAUNCH_STATES)}
${LEASE_TOKEN_LUA}
local p = cjson.decode(ARGV[1])
local function result(t) return cjson.encode(t) end

if p.eventId and redis.call("SISMEMBER", KEYS[3], p.eventId) == 1 then
  return result({status = "duplicate"})
end
local state = redis.call("HGET", KEYS[1], "state")
if not state then return result({status = "missing"}) end

if p.instanceId then
  local current = redis.call("HGET", KEYS[1], "instanceId")
  if current ~= p.instanceId then
    if redis.call("SISMEMBER", KEYS[5], p.instanceId) == 1 then
      if p.eventId then redis.call("SADD", KEYS[3], p.eventId) end
      return result({status = "stale-instance", from = state})
    end
    return result({status = "unknown-instance", from = state})
  end
end

local to = p.moves[state]
if not to then return result({status = "illegal", from = state}) end
local moving = to ~= state
if moving and not ALLOWED[state][to] then return result({status = "illegal", from = state}) end

if p.fencingToken or (moving and FENCED[to]) then
  local token = lease_token(KEYS[4])
  if not p.fencingToken or token ~= p.fencingToken then
    return result({status = "stale-token", from = state, current = token})
  end
end

for k, v in pairs(p.set) do redis.call("HSET", KEYS[1], k, v) end
for k, v in pairs(p.incr) do redis.call("HINCRBY", KEYS[1], k, v) end
if p.snapshot then
  local last = tonumber(redis.call("HGET", KEYS[1], "lastSnapshotAt") or "-1") or -1
  if tonumber(p.snapshot.at) >= last then
    for k, v in pairs(p.snapshot.fields) do redis.call("HSET", KEYS[1], k, v) end
  end
end
for k, v in pairs(p.max) do
  local old = tonumber(redis.call("HGET", KEYS[1], k) or "-1")
  if tonumber(v) > old then redis.call("HSET", KEYS[1], k, v) end
end

if moving then
  redis.call("HSET", KEYS[1], "state", to, "stateSince", p.at, "reason", p.reason or "")
  if to == "interrupted" then redis.call("HINCRBY", KEYS[1], "interruptions", 1) end
  if state == "restoring" and to == "running" then
    redis.call("HINCRBY", KEYS[1], "restores", 1)
    redis.call("HINCRBY", KEYS[1], "savedMs", redis.call("HGET", KEYS[1], "progressMsAtLastSnapshot") or "0")
  end
  if to == "pending" and state ~= "pending" then
    -- A re-run from scratch: the snapshot is not used, so its progress is not kept.
    redis.call("HINCRBY", KEYS[1], "reruns", 1)
    redis.call("HSET", KEYS[1], "progressMsAtLastSnapshot", "0", "lastSnapshotId", "")
  end
  if LAUNCH[to] then
    -- The old instance is gone: its late events must not move the task any more.
    redis.call("HSET", KEYS[1], "instanceId", "", "launch", "needed")
  end
  if to == "succeeded" or to == "failed" then redis.call("HSET", KEYS[1], "finishedAt", p.at) end
  redis.call("XADD", KEYS[2], "*", "from", state, "to", to, "at", p.at, "reason", p.reason or "", "eventId", p.eventId or "")
end
redis.call("HSET", KEYS[1], "updatedAt", p.at)
local version = redis.call("HINCRBY", KEYS[1], "version", 1)
if p.eventId then redis.call("SADD", KEYS[3], p.eventId) end
return result({status = "ok", from = state, to = to, version = version})
`);

// KEYS: task, transitions, index. ARGV: id, createdAt(ms), then field/value pairs.
export const createScript = new LuaScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then return 0 end
local fields = {}
for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call("HSET", KEYS[1], unpack(fields))
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[1])
redis.call("XADD", KEYS[2], "*", "from", "", "to", "pending", "at", ARGV[2], "reason", "created", "eventId", "")
return 1
`);

// KEYS: task, lease, instances. ARGV: token, at, instanceId, zone, arch, instanceType, market.
// Records the instance launched for a pending or restoring task, once per launch.
export const recordLaunchScript = new LuaScript(`
local LAUNCH = ${luaSet(LAUNCH_STATES)}
${LEASE_TOKEN_LUA}
local state = redis.call("HGET", KEYS[1], "state")
if not state then return cjson.encode({status = "missing"}) end
local token = lease_token(KEYS[2])
if token ~= ARGV[1] then return cjson.encode({status = "stale-token", from = state, current = token}) end
if not LAUNCH[state] or redis.call("HGET", KEYS[1], "launch") ~= "needed" then
  return cjson.encode({status = "launch-not-needed", from = state})
end
redis.call("HSET", KEYS[1], "instanceId", ARGV[3], "zone", ARGV[4], "arch", ARGV[5], "instanceType", ARGV[6],
  "market", ARGV[7], "launch", "launched", "launchedAt", ARGV[2], "updatedAt", ARGV[2])
redis.call("HINCRBY", KEYS[1], "attempts", 1)
redis.call("SADD", KEYS[3], ARGV[3])
local version = redis.call("HINCRBY", KEYS[1], "version", 1)
return cjson.encode({status = "ok", from = state, version = version})
`);

// KEYS: lease, fence. ARGV: owner, ttlMs. Returns the token, or false when another owner holds it.
// The same owner acquiring again keeps its token and extends the lease.
export const acquireLeaseScript = new LuaScript(`
${LEASE_TOKEN_LUA}
local token, owner = lease_token(KEYS[1])
if token then
  if owner == ARGV[1] then
    redis.call("PEXPIRE", KEYS[1], ARGV[2])
    return token
  end
  return false
end
token = tostring(redis.call("INCR", KEYS[2]))
redis.call("SET", KEYS[1], token .. ":" .. ARGV[1], "PX", ARGV[2])
return token
`);

// KEYS: lease. ARGV: owner, token, ttlMs. 1 when renewed, 0 when the lease is lost.
export const renewLeaseScript = new LuaScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[2] .. ":" .. ARGV[1] then return 0 end
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1
`);

// KEYS: lease. ARGV: owner, token. 1 when released, 0 when it was not held.
export const releaseLeaseScript = new LuaScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[2] .. ":" .. ARGV[1] then return 0 end
redis.call("DEL", KEYS[1])
return 1
`);

// KEYS: task, transitions, events, instances, lease, fence, index. ARGV: id, force ("1").
// Deletes a task and everything kept for it; without force only in a final state.
export const deleteScript = new LuaScript(`
local state = redis.call("HGET", KEYS[1], "state")
if not state then return "missing" end
if ARGV[2] ~= "1" and state ~= "succeeded" and state ~= "failed" then return state end
redis.call("DEL", KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call("ZREM", KEYS[7], ARGV[1])
return "ok"
`);
