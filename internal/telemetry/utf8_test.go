package telemetry

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
)

// TestInvalidUTF8Exported: a span carrying invalid UTF-8 (a client's model name, captured
// content) is exported with replacement characters and does not take its batch down.
func TestInvalidUTF8Exported(t *testing.T) {
	rcv := otlptest.NewReceiver(t)
	p, err := New(Options{Default: Endpoint{URL: rcv.HTTPURL()}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.Tracer("t")
	_, good := tr.Start(context.Background(), "good")
	good.End()
	_, bad := tr.Start(context.Background(), "chat a\xffb")
	bad.SetAttributes(attribute.String("gen_ai.request.model", "a\xffb"), attribute.Int("n", 1))
	bad.End()
	if err := p.ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spans, err := rcv.WaitFor(ctx, func(s []otlptest.Span) bool { return len(s) == 2 })
	if err != nil {
		t.Fatalf("spans = %d, stats %+v: %v", len(rcv.Spans()), p.Stats(), err)
	}
	for _, s := range spans {
		if s.Name == "chat a\uFFFDb" && s.Attributes["gen_ai.request.model"] == "a\uFFFDb" && s.Attributes["n"] == int64(1) {
			return
		}
	}
	t.Errorf("the invalid span was not exported cleaned: %+v", spans)
}
