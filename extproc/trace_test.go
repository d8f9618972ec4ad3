package extproc

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/telemetry"
	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// traceFixture is newFixture with a real tracer exporting to an in-process collector.
func traceFixture(t *testing.T) (*fixture, *telemetry.Provider, *otlptest.Receiver) {
	t.Helper()
	rcv := otlptest.NewReceiver(t)
	tp, err := telemetry.New(telemetry.Options{Service: "sluice-extproc", Default: telemetry.Endpoint{URL: rcv.HTTPURL()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hasher, _ := vkey.NewHasher(testPepper)
	signer, _ := ctxtoken.NewSigner(testSignKey)
	verifier, _ := ctxtoken.NewVerifier(testSignKey)
	srv, err := New(Config{Logger: slog.New(slog.DiscardHandler), Signer: signer, Hasher: hasher,
		MaxRequestBytes: testMaxBytes, Tracer: tp.Tracer("extproc")})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, hasher: hasher, verifier: verifier, secret: map[string]string{}}
	if err := srv.Load(testConfig(f.hash)); err != nil {
		t.Fatal(err)
	}
	return f, tp, rcv
}

func TestTraceAdmittedRequest(t *testing.T) {
	f, tp, rcv := traceFixture(t)
	const client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main"), "traceparent", client),
		bodyMsg(`{"model":"gpt-4o","messages":[]}`))
	c := mustToken(t, f, sent[1])
	if c.Trace == nil || c.Trace.TraceID != "4bf92f3577b34da6a3ce929d0e0e4736" || c.Trace.ParentID != "00f067aa0ba902b7" || c.Trace.Unsampled {
		t.Fatalf("trace claims = %+v, want the client's trace and span as parent", c.Trace)
	}
	if err := tp.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlptest.Span) bool { return len(s) >= 1 })
	if err != nil {
		t.Fatal(err)
	}
	sp := spans[0]
	if sp.Name != "sluice.policy" || sp.TraceID != c.Trace.TraceID || sp.ParentSpanID != c.Trace.SpanID {
		t.Errorf("policy span = %s trace %s parent %s; want a child of gateway span %s", sp.Name, sp.TraceID, sp.ParentSpanID, c.Trace.SpanID)
	}
	for k, v := range map[string]any{"sluice.virtual_key_id": "vk_main", "sluice.project_id": "proj1", "sluice.organization_id": "org1"} {
		if sp.Attributes[k] != v {
			t.Errorf("policy span %s = %v, want %v", k, sp.Attributes[k], v)
		}
	}
}

func TestTraceRejectedRequest(t *testing.T) {
	f, tp, rcv := traceFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", "Bearer sk-sluice-nope"))
	ir := mustImmediate(t, sent[0])
	traceID, ok1 := setValue(ir.GetHeaders(), wire.HeaderTraceID)
	spanID, ok2 := setValue(ir.GetHeaders(), wire.HeaderSpanID)
	if !ok1 || !ok2 || len(traceID) != 32 || len(spanID) != 16 {
		t.Fatalf("refusal lacks trace headers: %q %q", traceID, spanID)
	}
	_ = tp.ForceFlush(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlptest.Span) bool { return len(s) >= 1 })
	if err != nil {
		t.Fatal(err)
	}
	sp := spans[0]
	if sp.SpanID != spanID || sp.TraceID != traceID || sp.ParentSpanID != "" {
		t.Errorf("gateway span %s/%s parent %q, want the ids the response named and no parent", sp.TraceID, sp.SpanID, sp.ParentSpanID)
	}
	if sp.Attributes["error.type"] != "invalid_api_key" || sp.Attributes["http.response.status_code"] != int64(401) {
		t.Errorf("rejection attributes = %v", sp.Attributes)
	}
}
