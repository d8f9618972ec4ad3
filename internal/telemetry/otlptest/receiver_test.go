package otlptest

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// export sends one span through a real OTLP exporter and returns its context.
func export(t *testing.T, exp sdktrace.SpanExporter) trace.SpanContext {
	t.Helper()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSyncer(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "svc"))),
	)
	defer func() { _ = tp.Shutdown(context.Background()) }()
	_, parent := tp.Tracer("scope").Start(context.Background(), "parent")
	ctx := trace.ContextWithSpan(context.Background(), parent)
	_, s := tp.Tracer("scope").Start(ctx, "op", trace.WithSpanKind(trace.SpanKindClient))
	s.SetAttributes(
		attribute.String("s", "v"),
		attribute.Int64("i", 1<<62),
		attribute.Float64("f", 1.5),
		attribute.Bool("b", true),
		attribute.StringSlice("ss", []string{"x", "y"}),
	)
	s.AddEvent("ev", trace.WithAttributes(attribute.Int("n", 7)))
	s.SetStatus(codes.Error, "boom")
	s.End()
	return s.SpanContext()
}

func TestReceiverDecodes(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		exporter func(r *Receiver) (sdktrace.SpanExporter, error)
	}{
		{"http protobuf", "http", func(r *Receiver) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(context.Background(),
				otlptracehttp.WithEndpointURL(r.HTTPURL()+"/v1/traces"),
				otlptracehttp.WithHeaders(map[string]string{"X-Tenant": "t1"}))
		}},
		{"http json gzip", "http", func(r *Receiver) (sdktrace.SpanExporter, error) {
			return otlptracehttp.New(context.Background(),
				otlptracehttp.WithEndpointURL(r.HTTPURL()+"/v1/traces"),
				otlptracehttp.WithEncoding(otlptracehttp.EncodingJSON),
				otlptracehttp.WithCompression(otlptracehttp.GzipCompression),
				otlptracehttp.WithHeaders(map[string]string{"X-Tenant": "t1"}))
		}},
		{"grpc", "grpc", func(r *Receiver) (sdktrace.SpanExporter, error) {
			return otlptracegrpc.New(context.Background(),
				otlptracegrpc.WithEndpointURL("http://"+strings.TrimPrefix(r.GRPCURL(), "grpc://")),
				otlptracegrpc.WithInsecure(),
				otlptracegrpc.WithHeaders(map[string]string{"X-Tenant": "t1"}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReceiver(t)
			exp, err := tt.exporter(r)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = exp.Shutdown(context.Background()) }()
			sc := export(t, exp)

			spans, err := r.WaitFor(waitCtx(t), func(s []Span) bool { return len(s) == 1 })
			if err != nil {
				t.Fatal(err)
			}
			s := spans[0]
			if s.TraceID != sc.TraceID().String() || s.SpanID != sc.SpanID().String() || s.ParentSpanID == "" {
				t.Errorf("ids %s/%s parent %q, want %s/%s with a parent", s.TraceID, s.SpanID, s.ParentSpanID, sc.TraceID(), sc.SpanID())
			}
			if s.Name != "op" || s.Kind != trace.SpanKindClient.String() || s.Scope != "scope" || s.Service() != "svc" {
				t.Errorf("name %q kind %q scope %q service %q", s.Name, s.Kind, s.Scope, s.Service())
			}
			if s.StatusCode != codes.Error.String() || s.StatusMessage != "boom" {
				t.Errorf("status %q %q", s.StatusCode, s.StatusMessage)
			}
			if s.Start.IsZero() || s.End.Before(s.Start) {
				t.Errorf("times %v .. %v", s.Start, s.End)
			}
			wantAttrs := map[string]any{"s": "v", "i": int64(1 << 62), "f": 1.5, "b": true, "ss": []any{"x", "y"}}
			if !reflect.DeepEqual(s.Attributes, wantAttrs) {
				t.Errorf("attributes %#v, want %#v", s.Attributes, wantAttrs)
			}
			if len(s.Events) != 1 || s.Events[0].Name != "ev" || s.Events[0].Attributes["n"] != int64(7) {
				t.Errorf("events %#v", s.Events)
			}
			if s.Endpoint != tt.endpoint || s.Headers.Get("X-Tenant") != "t1" {
				t.Errorf("endpoint %q, X-Tenant %q", s.Endpoint, s.Headers.Get("X-Tenant"))
			}
		})
	}
}

func TestReceiverBehaviours(t *testing.T) {
	r := NewReceiver(t)
	post := func(ctx context.Context) (int, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.HTTPURL()+"/v1/traces", strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-protobuf")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := post(t.Context()); err != nil || code != http.StatusOK {
		t.Fatalf("OK: %d %v", code, err)
	}
	r.SetBehaviour(Fail)
	if code, err := post(t.Context()); err != nil || code != http.StatusInternalServerError {
		t.Fatalf("Fail: %d %v", code, err)
	}

	r.SetBehaviour(Hang)
	ctx, cancel := context.WithCancel(t.Context())
	result := make(chan error, 1)
	go func() {
		_, err := post(ctx)
		result <- err
	}()
	if err := r.WaitRequests(waitCtx(t), 3); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-result:
		t.Fatalf("hung request returned: %v", err)
	default:
	}
	cancel()
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Errorf("hung request ended with %v, want context.Canceled", err)
	}

	// SetBehaviour releases a hung request, which fails.
	go func() {
		code, err := post(t.Context())
		if err == nil && code != http.StatusInternalServerError {
			err = errors.New(http.StatusText(code))
		}
		result <- err
	}()
	if err := r.WaitRequests(waitCtx(t), 4); err != nil {
		t.Fatal(err)
	}
	r.SetBehaviour(OK)
	if err := <-result; err != nil {
		t.Errorf("released request: %v", err)
	}
	if n := r.Requests(); n != 4 {
		t.Errorf("Requests() = %d, want 4", n)
	}
}

func TestReceiverRejects(t *testing.T) {
	r := NewReceiver(t)
	for _, tt := range []struct {
		method, contentType, body string
		want                      int
	}{
		{http.MethodGet, "application/x-protobuf", "", http.StatusMethodNotAllowed},
		{http.MethodPost, "text/plain", "", http.StatusUnsupportedMediaType},
		{http.MethodPost, "application/json", `{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}`, http.StatusBadRequest},
		{http.MethodPost, "application/x-protobuf", "\xff\xff", http.StatusBadRequest},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), tt.method, r.HTTPURL()+"/v1/traces", strings.NewReader(tt.body))
		req.Header.Set("Content-Type", tt.contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s %q: status %d, want %d", tt.method, tt.contentType, tt.body, resp.StatusCode, tt.want)
		}
	}
	if n := len(r.Spans()); n != 0 {
		t.Errorf("recorded %d spans from bad requests", n)
	}
}
