package counters

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is one redis-server per mode (standalone, single-node cluster) for the
// package's tests, started on first use.
type redisServer struct {
	once sync.Once
	addr string
	err  error
	cmd  *exec.Cmd
	dir  string
}

var standalone, cluster redisServer

func TestMain(m *testing.M) {
	code := m.Run()
	for _, s := range []*redisServer{&standalone, &cluster} {
		if c := s.cmd; c != nil {
			c.Process.Kill()
			c.Wait()
		}
		if s.dir != "" {
			os.RemoveAll(s.dir)
		}
	}
	os.Exit(code)
}

// start runs redis-server on a free loopback port (no persistence) or skips the test when
// it isn't installed, unless SLUICE_E2E_REQUIRED is set.
func (rs *redisServer) start(t *testing.T, clusterMode bool) string {
	t.Helper()
	rs.once.Do(func() { rs.addr, rs.err = rs.run(clusterMode) })
	if rs.err != nil {
		if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
			t.Fatalf("redis: %v", rs.err)
		}
		t.Skipf("redis: %v", rs.err)
	}
	return rs.addr
}

func (rs *redisServer) run(clusterMode bool) (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server is not on PATH: %w", err)
	}
	if rs.dir, err = os.MkdirTemp("", "sluice-counters-redis"); err != nil {
		return "", err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", rs.dir, "--loglevel", "warning"}
	if clusterMode {
		args = append(args, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	}
	cmd := exec.Command(path, args...)
	stderr, _ := cmd.StderrPipe()
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return "", err
	}
	rs.cmd = cmd
	go func() { // drain
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("redis-server did not listen on %s within 10s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !clusterMode {
		return addr, nil
	}
	// One node owning every slot: enough for Redis to enforce the cluster rules
	// (CROSSSLOT, keys a script may touch).
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if err := rdb.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", 0, 16383).Err(); err != nil {
		return "", fmt.Errorf("cluster addslots: %w", err)
	}
	for {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return addr, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("redis cluster not ok within 10s: %v %v", info, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var prefixSeq atomic.Int64

func testPrefix() string {
	return fmt.Sprintf("test%d-%d", time.Now().UnixNano(), prefixSeq.Add(1))
}

func redisStore(t *testing.T, now func() time.Time) Store {
	addr := standalone.start(t, false)
	s, err := NewRedis(redis.NewClient(&redis.Options{Addr: addr}), Options{Now: now, Prefix: testPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func redisClusterStore(t *testing.T, now func() time.Time) Store {
	addr := cluster.start(t, true)
	s, err := NewRedis(redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{addr}}), Options{Now: now, Prefix: testPrefix()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRedisContract(t *testing.T)           { contractTest(t, redisStore) }
func TestRedisConcurrency(t *testing.T)        { concurrencyTest(t, redisStore) }
func TestRedisClusterContract(t *testing.T)    { contractTest(t, redisClusterStore) }
func TestRedisClusterConcurrency(t *testing.T) { concurrencyTest(t, redisClusterStore) }

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster maps keys to slots with.
func crc16(b string) uint16 {
	var crc uint16
	for i := 0; i < len(b); i++ {
		crc ^= uint16(b[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// keySlot is Redis Cluster's HASH_SLOT: the CRC of the first non-empty {…} hash tag, or of
// the whole key.
func keySlot(key string) uint16 {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return crc16(key) % 16384
}

func TestKeySlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31c3 {
		t.Fatalf("crc16 = %#x, want 0x31c3", got)
	}
	if got := keySlot("foo"); got != 12182 {
		t.Fatalf("keySlot(foo) = %d, want 12182", got)
	}
	// Cross-check with the server's own CLUSTER KEYSLOT.
	rdb := redis.NewClient(&redis.Options{Addr: cluster.start(t, true)})
	defer rdb.Close()
	for _, key := range []string{"foo", "{user1000}.following", "foo{}{bar}", "{}x", "a{b}c{d}", "sluice:{org_1}:c:rl:x:minute:60"} {
		want, err := rdb.ClusterKeySlot(context.Background(), key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := keySlot(key); int64(got) != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestRedisKeysShareOneSlot(t *testing.T) {
	clk := newClock(t0)
	s := redisStore(t, clk.Now).(*RedisStore)
	defer s.Close()
	ctx := context.Background()
	cs := []Counter{
		ctr("rl:vk_1:rpm", WindowMinute, UnitRequests, 10, 1, true),
		ctr("rl:vk_1:tpd", WindowDay, UnitTokens, 1000, 100, true),
		ctr("b:bg_{odd}", WindowWeek, UnitNanoUSD, 1e9, 5, false),
		ctr("b:bg_2", WindowTotal, UnitNanoUSD, 1e9, 5, true),
	}
	adm := reserve(t, s, "req_1", cs...)
	adm2 := reserve(t, s, "req_2", cs...) // left holding
	settle(t, s, "req_1", adm.Counters, map[Unit]int64{UnitTokens: 50})

	want := keySlot("{org_1}")
	var keys []string
	iter := s.rdb.Scan(ctx, 0, s.prefix+":*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	keys = append(keys, s.keys("org_1", "req_2", adm2.Counters)...)
	if len(keys) < 9 {
		t.Fatalf("keys = %v", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, s.prefix+":{org_1}:") || keySlot(k) != want {
			t.Errorf("key %q is in slot %d, want %d", k, keySlot(k), want)
		}
	}
}

func TestRedisUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	s, err := OpenRedis("redis://"+addr+"/0?dial_timeout=100ms", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := ctr("rl:rpm", WindowMinute, UnitRequests, 10, 1, true)
	c.Start = time.Now().Truncate(time.Minute).Unix()
	begin := time.Now()
	_, err1 := s.Reserve(ctx, slot, "r1", []Counter{c})
	err2 := s.Settle(ctx, slot, "r1", []Counter{c}, nil)
	err3 := s.Release(ctx, slot, "r1", []Counter{c})
	_, _, err4 := s.Usage(ctx, slot, c, time.Now())
	for i, err := range []error{err1, err2, err3, err4} {
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid) {
			t.Errorf("call %d: err = %v, want ErrUnavailable", i, err)
		}
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("four calls to an unreachable redis took %v", d)
	}
	if _, err := OpenRedis("redis://user:s3cret-canary@[::1", Options{}); !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("bad url: %v", err)
	}
	for _, p := range []string{"a{b", "a b", strings.Repeat("p", 65)} {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		if _, err := NewRedis(rdb, Options{Prefix: p}); !errors.Is(err, ErrInvalid) {
			t.Errorf("prefix %q: %v", p, err)
		}
		rdb.Close()
	}
}

// The single-node cluster does enforce the cluster rules, so the cluster contract run
// would catch a script whose keys span slots.
func TestRedisClusterRejectsCrossSlotScripts(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: cluster.start(t, true)})
	defer rdb.Close()
	err := settleScript.Run(context.Background(), rdb, []string{"p:{a}:c", "p:{a}:c:x", "p:{b}:done:r1"}, 0, "r1", 1000, 1, 0).Err()
	if err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Fatalf("cross-slot script: err = %v, want CROSSSLOT", err)
	}
}
