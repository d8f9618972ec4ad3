package telemetry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
)

// TestHangingCollector proves a collector that never answers slows nothing: ending spans
// never blocks, the overflow is counted, and Shutdown returns when its context ends even
// though the export in flight would wait a minute.
func TestHangingCollector(t *testing.T) {
	const spans = 10000
	for _, protocol := range []string{"http", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			rcv := otlptest.NewReceiver(t)
			rcv.SetBehaviour(otlptest.Hang)
			p, err := New(Options{Default: Endpoint{URL: urlOf(rcv, protocol)}, Timeout: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			tr := p.Tracer("test")

			done := make(chan struct{})
			go func() {
				defer close(done)
				for range spans {
					_, s := tr.Start(context.Background(), "s")
					s.End()
				}
			}()
			select {
			case <-done:
			case <-time.After(liveness):
				t.Fatal("ending spans blocked on a hanging collector")
			}
			// The first batch is stuck at the collector, so the queue overflowed.
			if err := rcv.WaitRequests(waitCtx(t), 1); err != nil {
				t.Fatal(err)
			}
			if st := p.Stats(); st.Dropped == 0 || st.Exported != 0 {
				t.Errorf("Stats() = %+v, want drops and nothing exported", st)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			shutdown := make(chan error, 1)
			go func() { shutdown <- p.Shutdown(ctx) }()
			select {
			case err := <-shutdown:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Shutdown() = %v, want it to wrap context.DeadlineExceeded", err)
				}
			case <-time.After(liveness):
				t.Fatal("Shutdown did not return when its context ended")
			}
			st := p.Stats()
			if st.Exported != 0 || st.Failed == 0 || st.Exported+st.Dropped+st.Failed != spans {
				t.Errorf("Stats() = %+v, want every one of %d spans dropped or failed, some failed", st, spans)
			}
		})
	}
}

// TestFailingCollector counts failed exports and logs them rate-limited, without header values.
func TestFailingCollector(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	rcv.SetBehaviour(otlptest.Fail)
	log, logs := newLogger()
	p := newProvider(t, Options{
		Default: Endpoint{URL: rcv.HTTPURL(), Headers: map[string]string{"authorization": "Bearer canary-secret"}},
		Logger:  log,
	})
	for range 3 {
		emit(p, "s")
		flush(t, p)
	}
	if got, want := p.Stats(), (Stats{Failed: 3}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	out := logs.String()
	if n := strings.Count(out, "span export failed"); n != 1 {
		t.Errorf("%d failure lines in 3 failures within 10s, want 1:\n%s", n, out)
	}
	if strings.Contains(out, "canary-secret") {
		t.Errorf("log leaks a header value:\n%s", out)
	}

	// A collector that recovers gets the next spans.
	rcv.SetBehaviour(otlptest.OK)
	emit(p, "after")
	flush(t, p)
	if got := p.Stats().Exported; got != 1 {
		t.Errorf("Exported = %d after recovery, want 1", got)
	}
}

// TestShutdownFlushes exports what is queued; later spans are neither exported nor counted.
func TestShutdownFlushes(t *testing.T) {
	a, b := otlptest.NewReceiver(t), otlptest.NewReceiver(t)
	p, err := New(Options{Default: Endpoint{URL: b.GRPCURL()}, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	p.SetRoutes(map[string]Endpoint{"p1": {URL: a.HTTPURL()}})
	for range 10 {
		emit(p, "default")
		emit(p, "routed", ProjectID("p1"))
	}
	if err := p.Shutdown(waitCtx(t)); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := len(a.Spans()); got != 10 {
		t.Errorf("route receiver got %d spans, want 10", got)
	}
	if got := len(b.Spans()); got != 10 {
		t.Errorf("default receiver got %d spans, want 10", got)
	}
	emit(p, "late")
	p.SetRoutes(map[string]Endpoint{"p2": {URL: a.HTTPURL()}}) // ignored
	if got, want := p.Stats(), (Stats{Exported: 20}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	if err := p.Shutdown(waitCtx(t)); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
