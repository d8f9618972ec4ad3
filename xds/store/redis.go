package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluice-gateway/sluice/internal/config"
)

// RedisStore is the Store for a replicated control plane. Every write is one Lua script
// that checks the revision, maintains the indexes, increments the global revision and
// publishes the event, so writers in several processes stay consistent. Every key carries
// the hash tag {prefix}, so the scripts are Redis Cluster slot-safe:
//
//	{p}:rev                  string  global revision (INCR)
//	{p}:val:<kind>           hash    id → value
//	{p}:drev:<kind>          hash    id → revision
//	{p}:idx                  hash    name "\x00" key → kind "\n" id (the owner)
//	{p}:own:<kind>:<id>      set     the idx fields the document owns
//	{p}:events               channel "rev\nkind\nid\nput|del"
//
// Watch is fed by one subscription per RedisStore. Events carry consecutive revisions, so
// a gap (a lost connection, a dropped message) is detected and turned into a Resync.
type RedisStore struct {
	rdb    redis.UniversalClient
	prefix string // "{p}"
	hub    *hub
	cancel context.CancelFunc
	ps     *redis.PubSub
	wg     sync.WaitGroup

	closeOnce sync.Once
}

var _ Store = (*RedisStore)(nil)

const (
	redisPing       = 15 * time.Second
	redisMaxBackoff = 2 * time.Second
)

// OpenRedis connects to url (redis://[user:pass@]host:port/db or rediss://…) and uses the
// keys under prefix, which must be 1-64 characters without braces or whitespace.
func OpenRedis(ctx context.Context, url, prefix string) (*RedisStore, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, errors.New("store: invalid redis url") // the url may hold a password
	}
	rdb := redis.NewClient(opt)
	s, err := NewRedis(ctx, rdb, prefix)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return s, nil
}

// NewRedis is OpenRedis with a client the caller configured (a cluster client, say). The
// store closes rdb on Close.
func NewRedis(ctx context.Context, rdb redis.UniversalClient, prefix string) (_ *RedisStore, err error) {
	if prefix == "" || len(prefix) > 64 || strings.ContainsAny(prefix, "{}") || strings.ContainsFunc(prefix, badRune) {
		return nil, fmt.Errorf("store: invalid redis prefix %q", prefix)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s := &RedisStore{rdb: rdb, prefix: "{" + prefix + "}", hub: newHub(), cancel: cancel}
	defer func() {
		if err != nil {
			s.shutdown(false)
		}
	}()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	s.ps = rdb.Subscribe(ctx, s.key("events"))
	// Wait for the subscription so Watch misses nothing written after it returns.
	msg, err := s.ps.Receive(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: redis subscribe: %w", err)
	}
	if _, ok := msg.(*redis.Subscription); !ok {
		return nil, fmt.Errorf("store: redis subscribe: unexpected %T", msg)
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		return nil, err
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.receive(runCtx, rev)
	}()
	return s, nil
}

func (s *RedisStore) key(parts ...string) string {
	return s.prefix + ":" + strings.Join(parts, ":")
}

func owner(kind config.Kind, id string) string { return string(kind) + "\n" + id }

func idxField(name, key string) string { return name + "\x00" + key }

// Get implements [Store.Get].
func (s *RedisStore) Get(ctx context.Context, kind config.Kind, id string) (Doc, error) {
	if err := checkKey(kind, id); err != nil {
		return Doc{}, err
	}
	var val, rev *redis.StringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		val = p.HGet(ctx, s.key("val", string(kind)), id)
		rev = p.HGet(ctx, s.key("drev", string(kind)), id)
		return nil
	})
	if errors.Is(err, redis.Nil) || errors.Is(rev.Err(), redis.Nil) {
		return Doc{}, fmt.Errorf("%w: %s %s", ErrNotFound, kind, id)
	}
	if err != nil {
		return Doc{}, s.wrap(err)
	}
	r, err := rev.Int64()
	if err != nil {
		return Doc{}, s.wrap(err)
	}
	b, err := val.Bytes()
	if err != nil {
		return Doc{}, s.wrap(err)
	}
	return Doc{Kind: kind, ID: id, Revision: r, Value: b}, nil
}

// List implements [Store.List].
func (s *RedisStore) List(ctx context.Context, kind config.Kind) ([]Doc, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("store: unknown kind %q", kind)
	}
	var vals, revs *redis.MapStringStringCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		vals = p.HGetAll(ctx, s.key("val", string(kind)))
		revs = p.HGetAll(ctx, s.key("drev", string(kind)))
		return nil
	})
	if err != nil {
		return nil, s.wrap(err)
	}
	v, r := vals.Val(), revs.Val()
	out := make([]Doc, 0, len(r))
	for _, id := range slices.Sorted(maps.Keys(r)) {
		rev, err := strconv.ParseInt(r[id], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: redis: %s %s has a bad revision", kind, id)
		}
		out = append(out, Doc{Kind: kind, ID: id, Revision: rev, Value: []byte(v[id])})
	}
	return out, nil
}

// Index implements [Store.Index].
func (s *RedisStore) Index(ctx context.Context, name, key string) (string, error) {
	o, err := s.rdb.HGet(ctx, s.key("idx"), idxField(name, key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", ErrNotFound
	}
	if err != nil {
		return "", s.wrap(err)
	}
	_, id, _ := strings.Cut(o, "\n")
	return id, nil
}

// Revision implements [Store.Revision].
func (s *RedisStore) Revision(ctx context.Context) (int64, error) {
	r, err := s.rdb.Get(ctx, s.key("rev")).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, s.wrap(err)
	}
	return r, nil
}

// putScript: KEYS rev, val, drev, idx, own. ARGV id, value, ifRevision, channel, owner,
// kind, nset, nset index fields to set, then index fields to remove.
// Returns {0, rev} | {1} exists | {2} not found | {3, cur} conflict | {4, owner} index taken.
var putScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[3], ARGV[1])
local ifrev = tonumber(ARGV[3])
if ifrev == 0 and cur then return {1} end
if ifrev > 0 then
  if not cur then return {2} end
  if tonumber(cur) ~= ifrev then return {3, tonumber(cur)} end
end
local nset = tonumber(ARGV[7])
for i = 1, nset do
  local o = redis.call('HGET', KEYS[4], ARGV[7 + i])
  if o and o ~= ARGV[5] then return {4, o} end
end
local rev = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], rev)
for i = 1, nset do
  redis.call('HSET', KEYS[4], ARGV[7 + i], ARGV[5])
  redis.call('SADD', KEYS[5], ARGV[7 + i])
end
for i = 8 + nset, #ARGV do
  if redis.call('HGET', KEYS[4], ARGV[i]) == ARGV[5] then
    redis.call('HDEL', KEYS[4], ARGV[i])
    redis.call('SREM', KEYS[5], ARGV[i])
  end
end
redis.call('PUBLISH', ARGV[4], rev .. '\n' .. ARGV[6] .. '\n' .. ARGV[1] .. '\nput')
return {0, rev}
`)

// deleteScript: KEYS rev, val, drev, idx, own. ARGV id, ifRevision, channel, owner, kind.
var deleteScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[3], ARGV[1])
if not cur then return {2} end
local ifrev = tonumber(ARGV[2])
if ifrev > 0 and tonumber(cur) ~= ifrev then return {3, tonumber(cur)} end
for _, f in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if redis.call('HGET', KEYS[4], f) == ARGV[4] then redis.call('HDEL', KEYS[4], f) end
end
redis.call('DEL', KEYS[5])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local rev = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[3], rev .. '\n' .. ARGV[5] .. '\n' .. ARGV[1] .. '\ndel')
return {0, rev}
`)

func (s *RedisStore) docKeys(kind config.Kind, id string) []string {
	return []string{s.key("rev"), s.key("val", string(kind)), s.key("drev", string(kind)), s.key("idx"),
		s.key("own", string(kind), id)}
}

// Put implements [Store.Put].
func (s *RedisStore) Put(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64) (Doc, error) {
	return s.PutIndexed(ctx, kind, id, value, ifRevision, nil, nil)
}

// PutIndexed implements [Store.PutIndexed].
func (s *RedisStore) PutIndexed(ctx context.Context, kind config.Kind, id string, value []byte, ifRevision int64,
	index, unindex map[string]string) (Doc, error) {
	if err := errors.Join(checkKey(kind, id), checkIndex(index, unindex)); err != nil {
		return Doc{}, err
	}
	if ifRevision < Unconditional {
		return Doc{}, fmt.Errorf("store: invalid ifRevision %d", ifRevision)
	}
	args := []any{id, value, ifRevision, s.key("events"), owner(kind, id), string(kind), len(index)}
	for _, name := range slices.Sorted(maps.Keys(index)) {
		args = append(args, idxField(name, index[name]))
	}
	for _, name := range slices.Sorted(maps.Keys(unindex)) {
		args = append(args, idxField(name, unindex[name]))
	}
	res, err := putScript.Run(ctx, s.rdb, s.docKeys(kind, id), args...).Slice()
	if err != nil {
		return Doc{}, s.wrap(err)
	}
	rev, err := s.scriptResult(res, kind, id)
	if err != nil {
		return Doc{}, err
	}
	return Doc{Kind: kind, ID: id, Revision: rev, Value: slices.Clone(value)}, nil
}

// Delete implements [Store.Delete].
func (s *RedisStore) Delete(ctx context.Context, kind config.Kind, id string, ifRevision int64) error {
	if err := checkKey(kind, id); err != nil {
		return err
	}
	res, err := deleteScript.Run(ctx, s.rdb, s.docKeys(kind, id),
		id, max(ifRevision, 0), s.key("events"), owner(kind, id), string(kind)).Slice()
	if err != nil {
		return s.wrap(err)
	}
	_, err = s.scriptResult(res, kind, id)
	return err
}

func (s *RedisStore) scriptResult(res []any, kind config.Kind, id string) (int64, error) {
	code, _ := res[0].(int64)
	switch code {
	case 0:
		rev, _ := res[1].(int64)
		return rev, nil
	case 1:
		return 0, fmt.Errorf("%w: %s %s", ErrExists, kind, id)
	case 2:
		return 0, fmt.Errorf("%w: %s %s", ErrNotFound, kind, id)
	case 3:
		return 0, fmt.Errorf("%w: %s %s is at revision %v", ErrConflict, kind, id, res[1])
	case 4:
		o, _ := res[1].(string)
		return 0, fmt.Errorf("%w: an index entry is owned by %s", ErrExists, strings.ReplaceAll(o, "\n", " "))
	}
	return 0, fmt.Errorf("store: redis: unexpected script result %v", res)
}

func (s *RedisStore) wrap(err error) error {
	if errors.Is(err, redis.ErrClosed) {
		return ErrClosed
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("store: redis: %w", err)
}

// Watch implements [Store.Watch]. Events already in flight when it is called (for writes
// that committed before it) are filtered out by revision.
func (s *RedisStore) Watch(ctx context.Context) (<-chan Event, error) {
	ch, w, err := s.hub.subscribeWatcher(ctx)
	if err != nil {
		return nil, err
	}
	rev, err := s.Revision(ctx)
	if err != nil {
		w.stop() // its goroutine closes ch
		return nil, err
	}
	w.setMinRevision(rev)
	return ch, nil
}

// receive feeds the hub from the subscription until ctx ends. last is the revision the
// subscription is known to be current with.
func (s *RedisStore) receive(ctx context.Context, last int64) {
	lost := false
	backoff := 50 * time.Millisecond
	for {
		msg, err := s.ps.ReceiveTimeout(ctx, redisPing)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && s.ps.Ping(ctx) == nil {
				continue // idle: the ping's pong proves the connection
			}
			// The connection broke; go-redis reconnects and resubscribes on the next
			// receive. Events published meanwhile are lost.
			lost = true
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(2*backoff, redisMaxBackoff)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if !lost {
				continue
			}
			rev, err := s.Revision(ctx)
			if err != nil {
				continue // still lost; the next event or reconnect retries
			}
			lost = false
			if rev != last {
				s.hub.publish(Event{Resync: true})
				last = rev
			}
		case *redis.Message:
			ev, ok := parseEvent(m.Payload)
			if !ok || ev.Revision <= last {
				continue
			}
			if ev.Revision != last+1 {
				s.hub.publish(Event{Resync: true})
			}
			last = ev.Revision
			s.hub.publish(ev)
		}
	}
}

func parseEvent(p string) (Event, bool) {
	f := strings.Split(p, "\n")
	if len(f) != 4 {
		return Event{}, false
	}
	rev, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return Event{}, false
	}
	return Event{Kind: config.Kind(f[1]), ID: f[2], Revision: rev, Deleted: f[3] == "del"}, true
}

// Close implements [Store.Close]: it stops the subscription, closes watch channels and
// closes the client.
func (s *RedisStore) Close() error {
	var err error
	s.closeOnce.Do(func() { err = s.shutdown(true) })
	return err
}

// shutdown tolerates a partly built store (NewRedis's error paths).
func (s *RedisStore) shutdown(closeClient bool) error {
	s.cancel()
	if s.ps != nil {
		s.ps.Close()
	}
	s.wg.Wait()
	s.hub.close()
	if closeClient {
		return s.rdb.Close()
	}
	return nil
}
