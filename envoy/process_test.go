package envoy_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startUnconfigured runs Envoy against an xDS address where nothing
// listens: it starts, serves admin, and never becomes LIVE.
func startUnconfigured(t *testing.T, ctx context.Context) (*envoy.Process, string, *lockedBuffer) {
	t.Helper()
	bin := envoyBin(t)
	admin := freeAddr(t)
	b, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: freeAddr(t), AdminAddr: admin, NodeID: "n", Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	p, err := envoy.Start(ctx, bin, b, t.TempDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("envoy output:\n%s", out.String())
		}
	})
	return p, admin, out
}

func TestStartStop(t *testing.T) {
	p, admin, _ := startUnconfigured(t, context.Background())

	// Not LIVE without a control plane: WaitReady must honour its ctx.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := envoy.WaitReady(ctx, admin); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitReady without xDS: %v, want DeadlineExceeded", err)
	}
	select {
	case <-p.Done():
		t.Fatalf("envoy exited early: %v", p.Wait())
	default:
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before the child exited")
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestStartKilledWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p, _, _ := startUnconfigured(t, ctx)
	cancel()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("envoy still running after ctx cancel")
	}
}

func TestStartWritesBootstrap(t *testing.T) {
	dir := t.TempDir()
	// /bin/true stands in for Envoy: only the file and the exit matter.
	p, err := envoy.Start(context.Background(), "/bin/true", []byte("node: {}\n"), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, envoy.BootstrapFile))
	if err != nil || string(b) != "node: {}\n" {
		t.Errorf("bootstrap file = %q, %v", b, err)
	}
}
