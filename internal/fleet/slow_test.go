package fleet

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// A replica that stops reading does not delay the others; its queue overflows into a
// resync, after which it converges.
func TestSlowReplica(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	org := config.KindOrganization
	srv := startServer(t, st, "tcp", "127.0.0.1:0", "", nil, func(s *Server) { s.maxPending = 32 })
	_, fast := startClient(t, ClientConfig{Addr: srv.addr, Kinds: []config.Kind{org}})
	fast.waitFor(t, "initial", func(*config.Snapshot) bool { return true })

	// The slow replica: small flow-control windows (no BDP growth), and it stops reading
	// after the initial state.
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(1<<16), grpc.WithInitialConnWindowSize(1<<16))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	slow, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(org), ResourceNamesSubscribe: []string{Wildcard}}); err != nil {
		t.Fatal(err)
	}
	recv(t, slow)

	const n = 200
	pad := strings.Repeat("x", 8<<10)
	var t0 time.Time
	for i := range n {
		t0 = time.Now()
		put(t, st, org, fmt.Sprintf("o%03d", i), `{"pad":"`+pad+`"}`)
	}
	last := fmt.Sprintf("o%03d", n-1)
	d := fast.waitFor(t, "last write on the fast replica", has(org, last)).Sub(t0)
	t.Logf("with a stalled replica, the last of %d writes reached the fast one in %v", n, d)
	if d >= time.Second {
		t.Errorf("fast replica delayed %v by the slow one", d)
	}
	waitUntil(t, "overflow", func() bool { return srv.Stats().Overflows >= 1 })

	// The slow replica reads again and converges through the resync.
	seen := map[string]bool{}
	for len(seen) < n {
		resp, err := slow.Recv()
		if err != nil {
			t.Fatalf("slow replica: %v after %d documents", err, len(seen))
		}
		for _, r := range resp.GetResources() {
			seen[r.GetName()] = true
		}
	}
	if s := srv.Stats(); s.Resyncs < 1 {
		t.Errorf("server stats = %+v", s)
	}
}

// The same live push over the Redis store (skipped without redis-server).
func TestRedisStorePush(t *testing.T) {
	checkGoroutines(t)
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(path, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--loglevel", "warning")
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for sc := bufio.NewScanner(out); sc.Scan(); {
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); <-drained })
	var rs *store.RedisStore
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rs, err = store.OpenRedis(ctx, "redis://"+addr+"/0", "fleettest")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { rs.Close() })

	vk := config.NewID(config.KindVirtualKey)
	putKey(t, rs, vk, hashA, config.KeyActive)
	srv := startServer(t, rs, "tcp", "127.0.0.1:0", "", nil)
	var reps []*replica
	for range 2 {
		_, r := startClient(t, ClientConfig{Addr: srv.addr, Kinds: dataKinds})
		r.waitFor(t, "initial", func(s *config.Snapshot) bool { return keyStatus(s, vk) == config.KeyActive })
		reps = append(reps, r)
	}
	t0 := time.Now()
	putKey(t, rs, vk, hashA, config.KeyRevoked)
	for i, r := range reps {
		d := r.waitFor(t, "revocation", func(s *config.Snapshot) bool { return keyStatus(s, vk) == config.KeyRevoked }).Sub(t0)
		t.Logf("redis: revocation reached replica %d in %v", i, d)
		if d >= time.Second {
			t.Errorf("revocation took %v", d)
		}
	}
}
