package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel/attribute"
)

// liveness bounds every wait in these tests. It is a bound on hangs, not a timing assertion.
const liveness = 10 * time.Second

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), liveness)
	t.Cleanup(cancel)
	return ctx
}

// newProvider returns a Provider shut down when the test ends.
func newProvider(t *testing.T, o Options) *Provider {
	t.Helper()
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), liveness)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return p
}

// urlOf returns the receiver's URL for protocol "http" or "grpc".
func urlOf(r *otlptest.Receiver, protocol string) string {
	if protocol == "grpc" {
		return r.GRPCURL()
	}
	return r.HTTPURL()
}

// emit starts and ends one span.
func emit(p *Provider, name string, attrs ...attribute.KeyValue) {
	_, s := p.Tracer("test").Start(context.Background(), name)
	s.SetAttributes(attrs...)
	s.End()
}

func flush(t *testing.T, p *Provider) {
	t.Helper()
	if err := p.ForceFlush(waitCtx(t)); err != nil {
		t.Fatalf("ForceFlush: %v", err)
	}
}

func names(spans []otlptest.Span) map[string]int {
	m := map[string]int{}
	for _, s := range spans {
		m[s.Name]++
	}
	return m
}

func byName(t *testing.T, spans []otlptest.Span, name string) otlptest.Span {
	t.Helper()
	for _, s := range spans {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no span %q among %v", name, names(spans))
	return otlptest.Span{}
}

// waitGoroutines waits until at most max goroutines run. Goroutines that end on their own
// (a server's connection goroutines after the client hung up) announce nothing, so this polls.
func waitGoroutines(t *testing.T, max int) {
	t.Helper()
	deadline := time.Now().Add(liveness)
	for runtime.NumGoroutine() > max {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, want at most %d:\n%s", runtime.NumGoroutine(), max, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}
