package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// testServer is a fleet server on its own gRPC server and listener.
type testServer struct {
	*Server
	addr string
	stop func()
}

// startServer serves st on network/addr ("tcp" "127.0.0.1:0", or "unix" path); stop (also
// run at cleanup) stops Run and the gRPC server and waits for both.
func startServer(t *testing.T, st store.Store, network, addr, token string, logger *slog.Logger, opts ...func(*Server)) *testServer {
	t.Helper()
	lis, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(ServerConfig{Store: st, Token: token, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(s)
	}
	g := grpc.NewServer(ServerOptions()...)
	s.Register(g)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.Serve(lis) }()
	go func() {
		defer wg.Done()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Server.Run: %v", err)
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			g.Stop()
			wg.Wait()
		})
	}
	t.Cleanup(stop)
	target := lis.Addr().String()
	if network == "unix" {
		target = "unix:" + addr
	}
	return &testServer{Server: s, addr: target, stop: stop}
}

// replica records the snapshots a client delivers, with their arrival times.
type replica struct {
	mu      sync.Mutex // guards the fields below
	snap    *config.Snapshot
	at      time.Time
	n       int
	changed chan struct{} // closed and replaced on every snapshot
}

func newReplica() *replica { return &replica{changed: make(chan struct{})} }

func (r *replica) onSnapshot(s *config.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snap, r.at, r.n = s, time.Now(), r.n+1
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor waits until the latest snapshot satisfies cond and returns when it arrived.
func (r *replica) waitFor(t *testing.T, what string, cond func(*config.Snapshot) bool) time.Time {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		snap, at, ch := r.snap, r.at, r.changed
		r.mu.Unlock()
		if snap != nil && cond(snap) {
			return at
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; last snapshot: %+v", what, snap)
		}
	}
}

func (r *replica) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// startClient runs a client until the test ends.
func startClient(t *testing.T, cfg ClientConfig) (*Client, *replica) {
	t.Helper()
	r := newReplica()
	cfg.OnSnapshot = r.onSnapshot
	if cfg.MaxBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := c.Run(ctx); err != nil {
			t.Errorf("Client.Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return c, r
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// keyDoc is a valid virtual key document with the given hash and status.
func keyDoc(t *testing.T, id, hash string, status config.KeyStatus) []byte {
	t.Helper()
	b, err := json.Marshal(&config.VirtualKey{ID: id, Name: "dev", Scope: config.MustParseScope("ORG:acme"),
		Hash: hash, DisplayPrefix: "sk-sluice-AbCd", Status: status})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// putKey writes a key document indexed by its hash under "vk_hash".
func putKey(t *testing.T, st store.Store, id, hash string, status config.KeyStatus) store.Doc {
	t.Helper()
	d, err := st.PutIndexed(context.Background(), config.KindVirtualKey, id, keyDoc(t, id, hash, status),
		store.Unconditional, map[string]string{"vk_hash": hash}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func put(t *testing.T, st store.Store, kind config.Kind, id, doc string) store.Doc {
	t.Helper()
	d, err := st.Put(context.Background(), kind, id, []byte(doc), store.Unconditional)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// keyStatus decodes the key id from a snapshot ("" if absent or invalid).
func keyStatus(s *config.Snapshot, id string) config.KeyStatus {
	r, _ := s.Decode()
	if k, ok := r.Keys[id]; ok {
		return k.Status
	}
	return ""
}

func has(kind config.Kind, id string) func(*config.Snapshot) bool {
	return func(s *config.Snapshot) bool { _, ok := s.Resources[kind][id]; return ok }
}

// logBuffer is a concurrency-safe log sink that signals every write.
type logBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{} // cap 1
}

func newLogBuffer() *logBuffer { return &logBuffer{wrote: make(chan struct{}, 1)} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.wrote <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitCount waits until s occurs at least n times in the log.
func (b *logBuffer) waitCount(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for strings.Count(b.String(), s) < n {
		select {
		case <-b.wrote:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %d × %q in the log:\n%s", n, s, b.String())
		}
	}
}

// checkGoroutines fails if, after the test's cleanups, more goroutines run than before it.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		// Cleanups run last-registered first, so this runs after every cleanup registered
		// later (servers, clients). Stream receivers exit just after their handler returns.
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<20)
			t.Errorf("goroutines: %d before, %d after\n%s", before, n, buf[:runtime.Stack(buf, true)])
		}
	})
}

// waitUntil waits (briefly re-checking) for a condition nothing signals, such as a counter.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func slogText(w *logBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// dataKinds is what a data-plane replica subscribes to: every kind but the admin API's
// tokens, which the server never serves.
var dataKinds = func() []config.Kind {
	var out []config.Kind
	for _, k := range config.Kinds() {
		if k != config.KindAPIToken {
			out = append(out, k)
		}
	}
	return out
}()
