package store

import (
	"bufio"
	"context"
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

// redisServer is one redis-server for the package's tests, started on first use.
var redisServer struct {
	once sync.Once
	addr string
	err  error
	cmd  *exec.Cmd
}

func TestMain(m *testing.M) {
	code := m.Run()
	if c := redisServer.cmd; c != nil {
		c.Process.Kill()
		c.Wait()
	}
	os.Exit(code)
}

// redisAddr starts redis-server on a free loopback port (no persistence) or skips the test
// when it isn't installed, unless SLUICE_E2E_REQUIRED is set.
func redisAddr(t *testing.T) string {
	t.Helper()
	redisServer.once.Do(func() {
		path, err := exec.LookPath("redis-server")
		if err != nil {
			redisServer.err = fmt.Errorf("redis-server is not on PATH: %w", err)
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			redisServer.err = err
			return
		}
		addr := l.Addr().String()
		l.Close()
		_, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", os.TempDir(), "--loglevel", "warning")
		stderr, _ := cmd.StderrPipe()
		cmd.Stdout = cmd.Stderr
		if err := cmd.Start(); err != nil {
			redisServer.err = err
			return
		}
		redisServer.cmd = cmd
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
				redisServer.err = fmt.Errorf("redis-server did not listen on %s within 10s", addr)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		redisServer.addr = addr
	})
	if redisServer.err != nil {
		if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
			t.Fatalf("redis: %v", redisServer.err)
		}
		t.Skipf("redis: %v", redisServer.err)
	}
	return redisServer.addr
}

var prefixSeq atomic.Int64

func redisBackend(t *testing.T) func() (Store, error) {
	addr := redisAddr(t)
	prefix := fmt.Sprintf("test%d-%d", time.Now().UnixNano(), prefixSeq.Add(1))
	return func() (Store, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return OpenRedis(ctx, "redis://"+addr+"/0", prefix)
	}
}

func TestRedisStoreContract(t *testing.T) { contractTest(t, redisBackend) }

func TestRedisKeysShareOneSlot(t *testing.T) {
	open := redisBackend(t)
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	rs := s.(*RedisStore)
	rs.PutIndexed(ctx, vk, "vk_1", []byte("x"), CreateOnly, map[string]string{"vk_hash": "h"}, nil)
	keys, err := rs.rdb.Keys(ctx, rs.prefix+"*").Result()
	if err != nil || len(keys) < 5 {
		t.Fatalf("keys = %v, %v", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, rs.prefix+":") {
			t.Errorf("key %q lacks the hash tag", k)
		}
	}
	for _, k := range rs.docKeys(vk, "vk_1") {
		if !strings.HasPrefix(k, rs.prefix+":") {
			t.Errorf("script key %q lacks the hash tag", k)
		}
	}
}

func TestRedisWatchResyncsAfterReconnect(t *testing.T) {
	addr := redisAddr(t)
	open := redisBackend(t)
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := s.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A second store writes while this one's subscription is down.
	writer, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	// Keep writing until the watcher has reconnected and reported the loss.
	for i := 0; ; i++ {
		if _, err := writer.Put(ctx, vk, fmt.Sprintf("vk_%d", i), nil, CreateOnly); err != nil {
			t.Fatal(err)
		}
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("watch closed")
			}
			if ev.Resync {
				return
			}
			// The writer's own events may arrive after our reconnect without a gap only if
			// nothing was lost; keep going until the kill shows.
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("no Resync after the subscription was killed")
		}
	}
}

func TestOpenRedisErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := OpenRedis(ctx, "redis://user:s3cret-canary@127.0.0.1:1/0", "p"); err == nil ||
		strings.Contains(err.Error(), "s3cret-canary") {
		t.Fatalf("unreachable redis: %v", err)
	}
	if _, err := OpenRedis(ctx, "::not a url s3cret-canary", "p"); err == nil || strings.Contains(err.Error(), "s3cret-canary") {
		t.Fatalf("bad url: %v", err)
	}
	addr := redisAddr(t)
	for _, p := range []string{"", "a{b", "a b"} {
		if _, err := OpenRedis(ctx, "redis://"+addr, p); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}
