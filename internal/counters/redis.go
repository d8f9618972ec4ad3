package counters

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore is the Store for a fleet. Every call is one Lua script (EVALSHA, loaded on
// demand), so it is atomic across its counters. Keys, with p the prefix and s the slot:
//
//	p:{s}:c:<key>:<window>:<start>     hash   spent, reserved, h:<id> = held amount
//	p:{s}:c:<key>:<window>:<start>:x   zset   hold ids scored by expiry (Unix ms)
//	p:{s}:done:<id>                    string a settled id (TTL Options.SettledTTL)
//
// All keys of a call are passed in KEYS and share the hash tag {s}, so the scripts are
// Redis Cluster safe. Counter keys expire a day after their window ends (never for
// total). Times come from Options.Now, never Redis TIME, and TTLs are relative to it.
// Each script first purges the expired holds of the counters it touches.
type RedisStore struct {
	rdb        redis.UniversalClient
	prefix     string
	now        func() time.Time
	holdTTL    int64 // ms
	settledTTL int64 // ms
}

var _ Store = (*RedisStore)(nil)

// OpenRedis connects lazily to url (redis://[user:pass@]host:port/db or rediss://…).
// Unless the url sets them, it fails fast as admission needs: one dial attempt with a 1 s
// timeout, 1 s read and write timeouts, one retry (go-redis defaults take seconds to give
// up on a dead server).
func OpenRedis(url string, opts Options) (*RedisStore, error) {
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, invalid("redis url") // the url may hold a password
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	if o.DialerRetries == 0 {
		o.DialerRetries = 1
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = time.Second
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 1
	}
	rdb := redis.NewClient(o)
	s, err := NewRedis(rdb, opts)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return s, nil
}

// NewRedis returns a store on a client the caller configured (a cluster client, timeouts,
// retries). The store closes rdb on Close; on error the caller still owns it.
func NewRedis(rdb redis.UniversalClient, opts Options) (*RedisStore, error) {
	opts = opts.withDefaults()
	if len(opts.Prefix) > 64 || strings.ContainsAny(opts.Prefix, "{} \t\r\n") {
		return nil, invalid("redis prefix %q", opts.Prefix)
	}
	return &RedisStore{
		rdb:        rdb,
		prefix:     opts.Prefix,
		now:        opts.Now,
		holdTTL:    max(opts.HoldTTL.Milliseconds(), 1),
		settledTTL: max(opts.SettledTTL.Milliseconds(), 1),
	}, nil
}

// purgeLua drops the expired holds of hash c (expiry zset x) from reserved. Amounts are
// decimal strings handed to HINCRBY, so they stay exact int64.
const purgeLua = `
local function purge(c, x, now)
  local ids = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  if #ids == 0 then return end
  for _, id in ipairs(ids) do
    local f = 'h:' .. id
    local amt = redis.call('HGET', c, f)
    if amt then
      if amt ~= '0' then redis.call('HINCRBY', c, 'reserved', '-' .. amt) end
      redis.call('HDEL', c, f)
    end
  end
  redis.call('ZREMRANGEBYSCORE', x, '-inf', now)
end
`

// reserveScript: KEYS c1, x1, …, cn, xn, done. ARGV now_ms, expiry_ms, id, then per
// counter limit, amount, block (1/0), ttl_ms (0: none). Returns {1, -1, …} when admitted,
// {0, denied index (0-based), …} when denied, {-1} when id was already settled, where …
// is spent, reserved (before this call) and held (1 when id already held it) per counter.
//
// Lua numbers are doubles, exact only to 2^53, so the limit check splits each decimal
// into a high part and the low 9 digits: exact over the whole int64 range.
var reserveScript = redis.NewScript(purgeLua + `
local function split(s)
  if string.byte(s, 1) == 45 then return 0, 0 end
  local n = #s
  if n <= 9 then return 0, tonumber(s) end
  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))
end
local function fits(spent, reserved, amount, limit)
  local ah, al = split(spent)
  local bh, bl = split(reserved)
  local ch, cl = split(amount)
  local lh, ll = split(limit)
  local h, l = ah + bh + ch, al + bl + cl
  h = h + math.floor(l / 1e9)
  l = l % 1e9
  return h < lh or (h == lh and l <= ll)
end
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return {-1} end
local now, field = ARGV[1], 'h:' .. ARGV[3]
local n = (#KEYS - 1) / 2
local out = {1, -1}
local held = {}
for i = 1, n do
  local c, a = KEYS[2*i-1], 4*i
  purge(c, KEYS[2*i], now)
  local v = redis.call('HMGET', c, 'spent', 'reserved', field)
  local spent, reserved = v[1] or '0', v[2] or '0'
  held[i] = v[3] and true or false
  out[3*i], out[3*i+1], out[3*i+2] = spent, reserved, held[i] and 1 or 0
  if out[1] == 1 and not held[i] and ARGV[a+2] == '1' and not fits(spent, reserved, ARGV[a+1], ARGV[a]) then
    out[1], out[2] = 0, i - 1
  end
end
if out[1] == 0 then return out end
for i = 1, n do
  if not held[i] then
    local c, x, a = KEYS[2*i-1], KEYS[2*i], 4*i
    redis.call('HINCRBY', c, 'reserved', ARGV[a+1])
    redis.call('HSET', c, field, ARGV[a+1])
    redis.call('ZADD', x, ARGV[2], ARGV[3])
    local ttl = ARGV[a+3]
    if ttl ~= '0' then
      redis.call('PEXPIRE', c, ttl)
      redis.call('PEXPIRE', x, ttl)
    end
  end
end
return out
`)

// settleScript: KEYS c1, x1, …, cn, xn, done. ARGV now_ms, id, settled_ttl_ms, then per
// counter amount, ttl_ms (0: none). Returns 1, or 0 when id was already settled.
var settleScript = redis.NewScript(purgeLua + `
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return 0 end
local now, id = ARGV[1], ARGV[2]
local field = 'h:' .. id
for i = 1, (#KEYS - 1) / 2 do
  local c, x, a = KEYS[2*i-1], KEYS[2*i], 2*i + 2
  purge(c, x, now)
  local held = redis.call('HGET', c, field)
  if held then
    if held ~= '0' then redis.call('HINCRBY', c, 'reserved', '-' .. held) end
    redis.call('HDEL', c, field)
    redis.call('ZREM', x, id)
  end
  if ARGV[a] ~= '0' then
    redis.call('HINCRBY', c, 'spent', ARGV[a])
    local ttl = ARGV[a+1]
    if ttl ~= '0' then redis.call('PEXPIRE', c, ttl) end
  end
end
redis.call('SET', KEYS[#KEYS], '1', 'PX', ARGV[3])
return 1
`)

// usageScript: KEYS c, x. ARGV now_ms. Returns {spent, reserved, expired hold amounts…}
// without writing.
var usageScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local out = {v[1] or '0', v[2] or '0'}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  local amt = redis.call('HGET', KEYS[1], 'h:' .. id)
  if amt then out[#out+1] = amt end
end
return out
`)

func (s *RedisStore) counterKey(slot string, c *Counter, start int64) string {
	return s.prefix + ":{" + slot + "}:c:" + c.Key + ":" + string(c.Window) + ":" + strconv.FormatInt(start, 10)
}

func (s *RedisStore) doneKey(slot, id string) string {
	return s.prefix + ":{" + slot + "}:done:" + id
}

// ttlArg is the TTL (ms, relative to nowMs) of a counter window ending at end (Unix s):
// a day past its end, at least 1 ms; "0" (none) for total.
func ttlArg(end, nowMs int64) string {
	if end == 0 {
		return "0"
	}
	return strconv.FormatInt(max(end*1000+dayMs-nowMs, 1), 10)
}

// keys lists the KEYS of a reserve or settle call: each counter's hash and expiry zset,
// then the settled-id key.
func (s *RedisStore) keys(slot, id string, cs []Counter) []string {
	keys := make([]string, 0, 2*len(cs)+1)
	for i := range cs {
		k := s.counterKey(slot, &cs[i], cs[i].Start)
		keys = append(keys, k, k+":x")
	}
	return append(keys, s.doneKey(slot, id))
}

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: redis %s: %w", ErrUnavailable, op, err)
}

// Reserve implements [Store.Reserve].
func (s *RedisStore) Reserve(ctx context.Context, slot, id string, cs []Counter) (Admission, error) {
	if err := checkCall(slot, id, cs, nil, false); err != nil {
		return Admission{}, err
	}
	now := s.now()
	sec, nowMs := now.Unix(), now.UnixMilli()
	adm := Admission{Denied: -1, Committed: make([]int64, len(cs)), Counters: make([]Counter, len(cs))}
	ends := make([]int64, len(cs))
	args := make([]any, 0, 3+4*len(cs))
	args = append(args, nowMs, nowMs+s.holdTTL, id)
	for i, c := range cs {
		c.Start, ends[i] = c.Window.bounds(sec)
		adm.Counters[i] = c
		block := "0"
		if c.Block {
			block = "1"
		}
		args = append(args, c.Limit, c.Amount, block, ttlArg(ends[i], nowMs))
	}
	res, err := reserveScript.Run(ctx, s.rdb, s.keys(slot, id, adm.Counters), args...).Slice()
	if err != nil {
		return Admission{}, unavailable("reserve", err)
	}
	code, err := replyInt(res, 0)
	if err != nil {
		return Admission{}, unavailable("reserve", err)
	}
	if code == -1 {
		return Admission{}, ErrIDReused
	}
	denied, err := replyInt(res, 1)
	if err != nil || len(res) != 2+3*len(cs) || denied < -1 || denied >= int64(len(cs)) {
		return Admission{}, unavailable("reserve", fmt.Errorf("unexpected reply %v", res))
	}
	for i := range cs {
		spent, err1 := replyInt(res, 2+3*i)
		reserved, err2 := replyInt(res, 3+3*i)
		held, err3 := replyInt(res, 4+3*i)
		if err := errors.Join(err1, err2, err3); err != nil {
			return Admission{}, unavailable("reserve", err)
		}
		adm.Committed[i] = spent + reserved
		if code == 1 && held == 0 {
			adm.Committed[i] += cs[i].Amount
		}
	}
	if code == 0 {
		adm.Denied = int(denied)
		if end := ends[denied]; end != 0 {
			adm.RetryAfter = time.Unix(end, 0).Sub(now)
		}
		return adm, nil
	}
	adm.OK = true
	return adm, nil
}

// replyInt reads element i of a script reply: an integer, or a decimal string (Redis
// hash values).
func replyInt(res []any, i int) (int64, error) {
	if i >= len(res) {
		return 0, fmt.Errorf("short reply %v", res)
	}
	switch v := res[i].(type) {
	case int64:
		return v, nil
	case string:
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, fmt.Errorf("unexpected reply element %T", res[i])
}

// Settle implements [Store.Settle].
func (s *RedisStore) Settle(ctx context.Context, slot, id string, cs []Counter, actual map[Unit]int64) error {
	if err := checkCall(slot, id, cs, actual, true); err != nil {
		return err
	}
	nowMs := s.now().UnixMilli()
	args := make([]any, 0, 3+2*len(cs))
	args = append(args, nowMs, id, s.settledTTL)
	for i := range cs {
		_, end := cs[i].Window.bounds(cs[i].Start)
		args = append(args, settleAmount(&cs[i], actual), ttlArg(end, nowMs))
	}
	if err := settleScript.Run(ctx, s.rdb, s.keys(slot, id, cs), args...).Err(); err != nil {
		return unavailable("settle", err)
	}
	return nil
}

// Release implements [Store.Release].
func (s *RedisStore) Release(ctx context.Context, slot, id string, cs []Counter) error {
	return s.Settle(ctx, slot, id, cs, releaseActual)
}

// Usage implements [Store.Usage].
func (s *RedisStore) Usage(ctx context.Context, slot string, c Counter, at time.Time) (spent, reserved int64, err error) {
	if !validName(slot, maxSlotLen, true) {
		return 0, 0, invalid("slot %q", slot)
	}
	if err := checkCounter(&c); err != nil {
		return 0, 0, err
	}
	start, _ := c.Window.bounds(at.Unix())
	k := s.counterKey(slot, &c, start)
	res, err := usageScript.Run(ctx, s.rdb, []string{k, k + ":x"}, s.now().UnixMilli()).Slice()
	if err != nil {
		return 0, 0, unavailable("usage", err)
	}
	vals := make([]int64, len(res))
	for i := range res {
		if vals[i], err = replyInt(res, i); err != nil {
			return 0, 0, unavailable("usage", err)
		}
	}
	if len(vals) < 2 {
		return 0, 0, unavailable("usage", fmt.Errorf("short reply %v", res))
	}
	spent, reserved = vals[0], vals[1]
	for _, expired := range vals[2:] {
		reserved -= expired
	}
	return spent, reserved, nil
}

// Close closes the Redis client.
func (s *RedisStore) Close() error { return s.rdb.Close() }
