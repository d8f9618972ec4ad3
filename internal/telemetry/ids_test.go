package telemetry

import (
	"context"
	"testing"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
	"go.opentelemetry.io/otel/trace"
)

func TestGatewaySpanUnderClientParent(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	p := newProvider(t, Options{Service: "sluice-extproc", Default: Endpoint{URL: rcv.HTTPURL()}})
	tr := p.Tracer("test")

	client, ok := ParseTraceparent("00-" + testTraceHex + "-" + testSpanHex + "-01")
	if !ok {
		t.Fatal("client traceparent did not parse")
	}
	gw := NewSpanID()
	reqCtx := WithSpanID(WithRemoteParent(context.Background(), client), gw)

	ctx, gateway := tr.Start(reqCtx, "gateway", trace.WithSpanKind(trace.SpanKindServer))
	sc := gateway.SpanContext()
	if sc.TraceID() != client.TraceID || sc.SpanID() != gw || !sc.IsSampled() {
		t.Fatalf("gateway span = %s/%s sampled=%v, want %s/%s sampled", sc.TraceID(), sc.SpanID(), sc.IsSampled(), client.TraceID, gw)
	}
	_, policy := tr.Start(ctx, "policy")
	if id := policy.SpanContext().SpanID(); id == gw {
		t.Fatal("child span reused the gateway span id")
	}
	// The id is taken once: a second span from the same context gets its own.
	_, again := tr.Start(reqCtx, "again")
	if id := again.SpanContext().SpanID(); id == gw {
		t.Fatal("second span started from the WithSpanID context reused its id")
	}
	policy.End()
	again.End()
	gateway.End()
	flush(t, p)

	spans := rcv.Spans()
	g := byName(t, spans, "gateway")
	if g.TraceID != testTraceHex || g.SpanID != gw.String() || g.ParentSpanID != testSpanHex {
		t.Errorf("exported gateway = trace %s span %s parent %s, want %s %s %s", g.TraceID, g.SpanID, g.ParentSpanID, testTraceHex, gw, testSpanHex)
	}
	if g.Kind != "server" || g.Service() != "sluice-extproc" {
		t.Errorf("exported gateway kind %q service %q, want server sluice-extproc", g.Kind, g.Service())
	}
	pol := byName(t, spans, "policy")
	if pol.TraceID != testTraceHex || pol.ParentSpanID != gw.String() {
		t.Errorf("exported policy = trace %s parent %s, want %s %s", pol.TraceID, pol.ParentSpanID, testTraceHex, gw)
	}
}

func TestRootSpanInGivenTrace(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	p := newProvider(t, Options{Default: Endpoint{URL: rcv.GRPCURL()}})
	tr := p.Tracer("test")

	// Even with a span already in the context, a zero SpanID means a root in tc's trace.
	outer, outerSpan := tr.Start(context.Background(), "unrelated")
	tc := TraceContext{TraceID: NewTraceID(), Sampled: true}
	gw := NewSpanID()
	ctx, gateway := tr.Start(WithSpanID(WithRemoteParent(outer, tc), gw), "gateway")
	_, child := tr.Start(ctx, "child")
	child.End()
	gateway.End()
	outerSpan.End()
	flush(t, p)

	spans := rcv.Spans()
	g := byName(t, spans, "gateway")
	if g.TraceID != tc.TraceID.String() || g.SpanID != gw.String() || g.ParentSpanID != "" {
		t.Errorf("exported gateway = trace %s span %s parent %q, want %s %s no parent", g.TraceID, g.SpanID, g.ParentSpanID, tc.TraceID, gw)
	}
	c := byName(t, spans, "child")
	if c.TraceID != tc.TraceID.String() || c.ParentSpanID != gw.String() {
		t.Errorf("exported child = trace %s parent %s, want %s %s", c.TraceID, c.ParentSpanID, tc.TraceID, gw)
	}
}

func TestSampling(t *testing.T) {
	client, _ := ParseTraceparent("00-" + testTraceHex + "-" + testSpanHex + "-00")
	tests := []struct {
		name    string
		ctx     context.Context
		sampled bool
	}{
		{"no traceparent", context.Background(), true},
		{"client sampled", WithRemoteParent(context.Background(), TraceContext{TraceID: client.TraceID, SpanID: client.SpanID, Sampled: true}), true},
		{"client not sampled", WithRemoteParent(context.Background(), client), false},
		{"root in trace, not sampled", WithRemoteParent(context.Background(), TraceContext{TraceID: client.TraceID}), false},
		{"root in trace, sampled", WithRemoteParent(context.Background(), TraceContext{TraceID: client.TraceID, Sampled: true}), true},
	}
	p := newProvider(t, Options{}) // no endpoint: sampled spans are counted unrouted
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := p.Stats().Unrouted
			gw := NewSpanID()
			_, s := p.Tracer("test").Start(WithSpanID(tt.ctx, gw), "gateway")
			s.End()
			// Unsampled spans still get the imposed id: it is in the response headers.
			if got := s.SpanContext().SpanID(); got != gw {
				t.Errorf("span id %s, want %s", got, gw)
			}
			if got := s.SpanContext().IsSampled(); got != tt.sampled {
				t.Errorf("sampled = %v, want %v", got, tt.sampled)
			}
			recorded := p.Stats().Unrouted - before
			if want := map[bool]uint64{true: 1, false: 0}[tt.sampled]; recorded != want {
				t.Errorf("%d spans reached the router, want %d", recorded, want)
			}
		})
	}
}

func TestWithSpanIDZeroIsIgnored(t *testing.T) {
	ctx := context.Background()
	if WithSpanID(ctx, trace.SpanID{}) != ctx {
		t.Error("WithSpanID with a zero id changed the context")
	}
	if WithRemoteParent(ctx, TraceContext{SpanID: NewSpanID()}) != ctx {
		t.Error("WithRemoteParent with a zero trace id changed the context")
	}
}

// BenchmarkGatewaySpan measures what a request pays to record its gateway span and one
// child, the SDK included. No endpoint is configured, so no export runs beside it.
//
//	go test -run '^$' -bench GatewaySpan -count 10 ./internal/telemetry/ | tee new.txt; benchstat old.txt new.txt
func BenchmarkGatewaySpan(b *testing.B) {
	p, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	tr := p.Tracer("bench")
	client, _ := ParseTraceparent("00-" + testTraceHex + "-" + testSpanHex + "-01")
	b.ReportAllocs()
	for b.Loop() {
		ctx := WithSpanID(WithRemoteParent(context.Background(), client), NewSpanID())
		ctx, gw := tr.Start(ctx, "gateway", trace.WithAttributes(ProjectID("p1")))
		_, child := tr.Start(ctx, "policy")
		child.End()
		gw.End()
	}
}
