package telemetry

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestRouting(t *testing.T) {
	for _, protocol := range []string{"http", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			a, b := otlptest.NewReceiver(t), otlptest.NewReceiver(t)
			p := newProvider(t, Options{Service: "sluice-dispatcher", Default: Endpoint{URL: urlOf(b, protocol)}})
			p.SetRoutes(map[string]Endpoint{"p1": {URL: urlOf(a, protocol)}})

			emit(p, "p1-span", ProjectID("p1"))
			emit(p, "p2-span", ProjectID("p2"))
			emit(p, "untagged")
			flush(t, p)

			if got := names(a.Spans()); len(got) != 1 || got["p1-span"] != 1 {
				t.Errorf("route receiver got %v, want only p1-span", got)
			}
			if got := names(b.Spans()); len(got) != 2 || got["p2-span"] != 1 || got["untagged"] != 1 {
				t.Errorf("default receiver got %v, want p2-span and untagged", got)
			}
			s := byName(t, a.Spans(), "p1-span")
			if s.Endpoint != protocol || s.Service() != "sluice-dispatcher" || s.Attributes["sluice.project_id"] != "p1" {
				t.Errorf("route span endpoint %q service %q attrs %v", s.Endpoint, s.Service(), s.Attributes)
			}

			// The change takes effect at once: p1 now goes to the default, p2 to a.
			a.Reset()
			b.Reset()
			p.SetRoutes(map[string]Endpoint{"p2": {URL: urlOf(a, protocol)}})
			emit(p, "p1-span", ProjectID("p1"))
			emit(p, "p2-span", ProjectID("p2"))
			flush(t, p)
			if got := names(a.Spans()); len(got) != 1 || got["p2-span"] != 1 {
				t.Errorf("after SetRoutes, route receiver got %v, want only p2-span", got)
			}
			if got := names(b.Spans()); len(got) != 1 || got["p1-span"] != 1 {
				t.Errorf("after SetRoutes, default receiver got %v, want only p1-span", got)
			}
			if got, want := p.Stats(), (Stats{Exported: 5}); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}
		})
	}
}

func TestSetRoutesKeepsUnchangedQueues(t *testing.T) {
	a := otlptest.NewReceiver(t)
	p := newProvider(t, Options{})
	ep := Endpoint{URL: a.HTTPURL(), Headers: map[string]string{"authorization": "Bearer x"}}
	p.SetRoutes(map[string]Endpoint{"p1": ep, "p2": ep})
	before := *p.routes.Load()

	changed := Endpoint{URL: a.HTTPURL(), Headers: map[string]string{"authorization": "Bearer y"}}
	p.SetRoutes(map[string]Endpoint{
		"p1": {URL: ep.URL, Headers: map[string]string{"authorization": "Bearer x"}}, // equal, new map
		"p2": changed,
	})
	after := *p.routes.Load()
	if after["p1"] != before["p1"] {
		t.Error("an unchanged route got a new queue")
	}
	if after["p2"] == before["p2"] {
		t.Error("a route whose headers changed kept its queue")
	}
	p.mu.Lock()
	p.retiring.Wait()
	p.mu.Unlock()
	select {
	case <-before["p2"].done:
	default:
		t.Error("the replaced queue's goroutine still runs")
	}
}

func TestInvalidRouteFallsBackToDefault(t *testing.T) {
	b := otlptest.NewReceiver(t)
	log, logs := newLogger()
	p := newProvider(t, Options{Default: Endpoint{URL: b.HTTPURL()}, Logger: log})
	p.SetRoutes(map[string]Endpoint{"p1": {URL: "ftp://collector:21", Headers: map[string]string{"x-key": "canary-secret"}}})
	emit(p, "p1-span", ProjectID("p1"))
	flush(t, p)
	if got := names(b.Spans()); got["p1-span"] != 1 {
		t.Errorf("default receiver got %v, want p1-span", got)
	}
	if out := logs.String(); !strings.Contains(out, "route ignored") || !strings.Contains(out, "project=p1") {
		t.Errorf("log = %q, want the ignored route", out)
	} else if strings.Contains(out, "canary-secret") {
		t.Errorf("log leaks a header value: %q", out)
	}
}

func TestUnrouted(t *testing.T) {
	a := otlptest.NewReceiver(t)
	p := newProvider(t, Options{})
	p.SetRoutes(map[string]Endpoint{"p1": {URL: a.GRPCURL()}})
	emit(p, "p1-span", ProjectID("p1"))
	emit(p, "p2-span", ProjectID("p2"))
	emit(p, "untagged")
	flush(t, p)
	if got, want := p.Stats(), (Stats{Exported: 1, Unrouted: 2}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
}

func TestIntervalExportsPartialBatch(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	p := newProvider(t, Options{Default: Endpoint{URL: rcv.HTTPURL()}, Interval: 10 * time.Millisecond})
	emit(p, "lonely")
	if _, err := rcv.WaitFor(waitCtx(t), func(s []otlptest.Span) bool { return len(s) == 1 }); err != nil {
		t.Fatalf("partial batch never exported: %v", err)
	}
}

func TestHeadersAndPaths(t *testing.T) {
	// The exporters read OTEL_EXPORTER_OTLP_* themselves: an operator's headers must not
	// reach a tenant's endpoint.
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-operator-secret=leak")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-operator-secret=leak")
	headers := map[string]string{"Authorization": "Bearer tenant-token", "X-Scope-OrgID": "p1"}
	tests := []struct {
		name, url, wantPath, wantEndpoint string
	}{
		{"http default path", "", "/v1/traces", "http"},
		{"http root path", "/", "/v1/traces", "http"},
		{"http custom path", "/otlp/v1/traces", "/otlp/v1/traces", "http"},
		{"grpc", "", "", "grpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := otlptest.NewReceiver(t)
			p := newProvider(t, Options{Default: Endpoint{URL: urlOf(rcv, tt.wantEndpoint) + tt.url, Headers: headers}})
			emit(p, "s")
			flush(t, p)
			spans := rcv.Spans()
			if len(spans) != 1 {
				t.Fatalf("got %d spans, want 1", len(spans))
			}
			s := spans[0]
			if s.Endpoint != tt.wantEndpoint || s.Path != tt.wantPath {
				t.Errorf("endpoint %q path %q, want %q %q", s.Endpoint, s.Path, tt.wantEndpoint, tt.wantPath)
			}
			for k, v := range headers {
				if got := s.Headers.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if got := s.Headers.Get("x-operator-secret"); got != "" {
				t.Errorf("environment header reached the endpoint: %q", got)
			}
		})
	}
}

func TestRouteRemovalReleasesGoroutines(t *testing.T) {
	for _, protocol := range []string{"http", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			base := runtime.NumGoroutine()
			a, err := otlptest.Start()
			if err != nil {
				t.Fatal(err)
			}
			b, err := otlptest.Start()
			if err != nil {
				t.Fatal(err)
			}
			p, err := New(Options{Default: Endpoint{URL: urlOf(b, protocol)}})
			if err != nil {
				t.Fatal(err)
			}
			emit(p, "warm")
			flush(t, p)
			withDefault := runtime.NumGoroutine()

			p.SetRoutes(map[string]Endpoint{"p1": {URL: urlOf(a, protocol)}})
			emit(p, "p1-span", ProjectID("p1"))
			flush(t, p)
			if got := names(a.Spans()); got["p1-span"] != 1 {
				t.Fatalf("route receiver got %v", got)
			}
			if n := runtime.NumGoroutine(); n <= withDefault {
				t.Fatalf("a route added no goroutines (%d, was %d): the check below would prove nothing", n, withDefault)
			}
			p.SetRoutes(nil)
			p.mu.Lock()
			p.retiring.Wait()
			p.mu.Unlock()
			// The route's queue goroutine, its exporter's connection and the receiver's side of
			// it are gone.
			waitGoroutines(t, withDefault)

			ctx, cancel := context.WithTimeout(context.Background(), liveness)
			defer cancel()
			if err := p.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			a.Close()
			b.Close()
			waitGoroutines(t, base)
		})
	}
}

func TestRouteAllocations(t *testing.T) {
	// A Provider without goroutines: the queues are never drained, so AllocsPerRun sees only
	// the caller's allocations.
	p := &Provider{}
	q := &queue{p: p, ch: make(chan sdktrace.ReadOnlySpan, 4)}
	p.def = q
	p.routes.Store(&map[string]*queue{"p1": q})
	tagged := tracetest.SpanStub{Name: "s", Attributes: []attribute.KeyValue{ProjectID("p1")}}.Snapshot()
	untagged := tracetest.SpanStub{Name: "s"}.Snapshot()
	if n := testing.AllocsPerRun(100, func() {
		p.route(tagged)
		p.route(untagged)
	}); n != 0 {
		t.Errorf("route allocates %v times per span pair, want 0", n)
	}
	if got := p.Stats(); got.Dropped == 0 {
		t.Errorf("full queue dropped nothing: %+v", got)
	}
}
