package e2e

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
)

// tenantProjects are two projects that file their traces with their own collectors: a over
// OTLP/gRPC with content capture on, b over OTLP/HTTP without.
func tenantProjects(grpcA, httpB string) []config.Project {
	return []config.Project{
		{ID: "proj-a", OrgID: "org-acme", Name: "a", Telemetry: &config.ProjectTelemetry{OTLPEndpoint: grpcA, CaptureContent: true}},
		{ID: "proj-b", OrgID: "org-acme", Name: "b", Telemetry: &config.ProjectTelemetry{OTLPEndpoint: httpB}},
	}
}

func waitSpans(t *testing.T, r *otlptest.Receiver, cond func([]otlptest.Span) bool) []otlptest.Span {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spans, err := r.WaitFor(ctx, cond)
	if err != nil {
		t.Fatalf("spans did not arrive: %v (have %d)", err, len(r.Spans()))
	}
	return spans
}

func inTrace(spans []otlptest.Span, traceID string) []otlptest.Span {
	var out []otlptest.Span
	for _, s := range spans {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}

func chatBody(marker string) io.Reader {
	return strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello ` + marker + `"}]}`)
}

// TestTraces: a request carrying the client's traceparent is one trace across extproc and
// the dispatcher, nested under the client's span, with the GenAI and Sluice attributes; its
// spans go to its project's own collector; refusals are traced with their reason.
func TestTraces(t *testing.T) {
	g := startGateway(t)
	const clientTrace, clientSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	marker := newMarker()
	g.fake.Script(marker, fakeprovider.Script{Usage: &fakeprovider.Usage{InputTokens: 11, OutputTokens: 7, CacheReadTokens: 5}})
	resp, _ := g.do(t, "POST", "/v1/chat/completions", chatBody(marker), map[string]string{
		"Authorization": "Bearer " + g.keys["tenant-proj-a"], "Content-Type": "application/json",
		"traceparent": "00-" + clientTrace + "-" + clientSpan + "-01"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Sluice-Trace-Id"); got != clientTrace {
		t.Fatalf("X-Sluice-Trace-Id = %q, want the client's trace %s", got, clientTrace)
	}
	gatewayID := resp.Header.Get("X-Sluice-Span-Id")
	spans := inTrace(waitSpans(t, g.otlpA, func(s []otlptest.Span) bool { return len(inTrace(s, clientTrace)) >= 3 }), clientTrace)

	byName := map[string]otlptest.Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	gw, policy, call := byName["POST /v1/chat/completions"], byName["sluice.policy"], byName["chat gpt-4o-mini"]
	if gw.SpanID != gatewayID || gw.ParentSpanID != clientSpan || gw.Kind != "server" {
		t.Errorf("gateway span %+v: want id %s (the header), parent %s (the client), kind server", gw, gatewayID, clientSpan)
	}
	if policy.ParentSpanID != gatewayID || call.ParentSpanID != gatewayID {
		t.Errorf("policy parent %q, attempt parent %q: both must be children of the gateway span %s", policy.ParentSpanID, call.ParentSpanID, gatewayID)
	}
	want := map[string]any{
		"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
		"gen_ai.response.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": int64(16), "gen_ai.usage.output_tokens": int64(7),
		"gen_ai.usage.cache_read.input_tokens": int64(5), "sluice.virtual_key_id": g.keyIDs["tenant-proj-a"],
		"sluice.organization_id": "org-acme", "sluice.project_id": "proj-a", "http.response.status_code": int64(200),
	}
	for k, v := range want {
		if call.Attributes[k] != v {
			t.Errorf("attempt span %s = %#v, want %#v", k, call.Attributes[k], v)
		}
	}
	if fr, _ := call.Attributes["gen_ai.response.finish_reasons"].([]any); len(fr) != 1 || fr[0] != "stop" {
		t.Errorf("finish reasons = %#v", call.Attributes["gen_ai.response.finish_reasons"])
	}
	if gw.Attributes["sluice.fallback_count"] != int64(0) || gw.Attributes["sluice.virtual_key_id"] != g.keyIDs["tenant-proj-a"] {
		t.Errorf("gateway span attributes = %v", gw.Attributes)
	}
	// Priced at the bundled gpt-4o-mini rates ($0.15, cached $0.075, output $0.60 per
	// million): 11×150 + 5×75 + 7×600 nano-USD.
	if gw.Attributes["sluice.cost_nano_usd"] != int64(6225) || gw.Attributes["sluice.cost_usd"] != 6.225e-06 ||
		gw.Attributes["sluice.cache_mode"] != "respect" {
		t.Errorf("gateway span cost %v (%v nano), cache mode %v", gw.Attributes["sluice.cost_usd"],
			gw.Attributes["sluice.cost_nano_usd"], gw.Attributes["sluice.cache_mode"])
	}
	if c, _ := call.Attributes["sluice.request.content"].(string); !strings.Contains(c, marker) {
		t.Errorf("project a captures content, but the attempt span has %q", c)
	}
	// Envoy traces too, into the gateway's own collector: its server span is the client's
	// child in the same trace, and Sluice's spans name Envoy's ext_proc call span.
	envoySpans := inTrace(waitSpans(t, g.otlp, func(s []otlptest.Span) bool {
		n := 0
		for _, sp := range inTrace(s, clientTrace) {
			if sp.Service() == "sluice-envoy" {
				n++
			}
		}
		return n >= 2
	}), clientTrace)
	envoyByName := map[string]otlptest.Span{}
	for _, s := range envoySpans {
		envoyByName[s.Name] = s
	}
	ingress := envoyByName["ingress"]
	if ingress.ParentSpanID != clientSpan {
		t.Errorf("Envoy's ingress span parent = %q, want the client's span %s (spans: %v)", ingress.ParentSpanID, clientSpan, len(envoySpans))
	}
	named, _ := gw.Attributes["sluice.envoy_span_id"].(string)
	if ep, ok := envoyByName["async envoy.service.ext_proc.v3.ExternalProcessor.Process egress"]; !ok || named != ep.SpanID || ep.ParentSpanID != ingress.SpanID {
		t.Errorf("gateway span names Envoy span %q; Envoy's ext_proc span = %+v under ingress %s", named, ep, ingress.SpanID)
	}

	// Project b: its own collector, no content; nothing of it at a's or the default.
	marker = newMarker()
	resp, _ = g.do(t, "POST", "/v1/chat/completions", chatBody(marker), map[string]string{
		"Authorization": "Bearer " + g.keys["tenant-proj-b"], "Content-Type": "application/json"})
	traceB := resp.Header.Get("X-Sluice-Trace-Id")
	spansB := inTrace(waitSpans(t, g.otlpB, func(s []otlptest.Span) bool { return len(inTrace(s, traceB)) >= 3 }), traceB)
	for _, s := range spansB {
		if _, ok := s.Attributes["sluice.request.content"]; ok {
			t.Errorf("project b does not capture content, but span %s has it", s.Name)
		}
	}

	// A refusal after authentication: traced at project a with its reason.
	resp, _ = g.do(t, "POST", "/v1/chat/completions", strings.NewReader(`{"model":`), map[string]string{
		"Authorization": "Bearer " + g.keys["tenant-proj-a"], "Content-Type": "application/json"})
	if resp.StatusCode != 400 {
		t.Fatalf("malformed body: status %d", resp.StatusCode)
	}
	traceR := resp.Header.Get("X-Sluice-Trace-Id")
	rejected := inTrace(waitSpans(t, g.otlpA, func(s []otlptest.Span) bool { return len(inTrace(s, traceR)) >= 1 }), traceR)
	if r := rejected[0]; r.SpanID != resp.Header.Get("X-Sluice-Span-Id") || r.Attributes["error.type"] != "invalid_json" || r.StatusCode != "Error" {
		t.Errorf("refusal span = %+v", r)
	}

	// Nothing of either project reached the other's collector or the gateway's own.
	for name, r := range map[string]*otlptest.Receiver{"default": g.otlp, "a": g.otlpA, "b": g.otlpB} {
		for _, s := range r.Spans() {
			if p := s.Attributes["sluice.project_id"]; (p == "proj-a" && name != "a") || (p == "proj-b" && name != "b") {
				t.Errorf("a %s span (%s) reached the %s collector", p, s.Name, name)
			}
		}
	}
}

// scrape returns the gateway's metrics as "name{labels}" → value.
func scrape(t *testing.T, g *gateway) map[string]float64 {
	t.Helper()
	resp, err := http.Get(g.metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// sum adds every series of metric whose labels include all of want.
func sum(m map[string]float64, metric string, want ...string) float64 {
	var total float64
	for k, v := range m {
		if !strings.HasPrefix(k, metric+"{") && k != metric {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(k, w)
		}
		if ok {
			total += v
		}
	}
	return total
}

// TestMetrics scrapes /metrics after known traffic from a key no other test uses.
func TestMetrics(t *testing.T) {
	g := startGateway(t)
	key := g.keyIDs["metrics-probe"]
	for i := 0; i < 3; i++ {
		marker := newMarker()
		g.fake.Script(marker, fakeprovider.Script{Usage: &fakeprovider.Usage{InputTokens: 10, OutputTokens: 4}})
		if resp, _ := g.do(t, "POST", "/v1/chat/completions", chatBody(marker), map[string]string{
			"Authorization": "Bearer " + g.keys["metrics-probe"], "Content-Type": "application/json"}); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if resp, _ := g.do(t, "POST", "/v1/chat/completions", strings.NewReader(`{"model":"gpt-5-nope","messages":[]}`), map[string]string{
		"Authorization": "Bearer " + g.keys["metrics-probe"], "Content-Type": "application/json"}); resp.StatusCode != 403 {
		t.Fatalf("disallowed model: status %d", resp.StatusCode)
	}
	m := scrape(t, g)
	k := `key_id="` + key + `"`
	checks := []struct {
		what string
		got  float64
		want float64
	}{
		{"requests 200", sum(m, "sluice_requests_total", k, `status="200"`, `provider="p-openai"`, `model="gpt-4o-mini"`), 3},
		{"input tokens", sum(m, "sluice_tokens_total", k, `type="input"`), 30},
		{"output tokens", sum(m, "sluice_tokens_total", k, `type="output"`), 12},
		{"token usage histogram count", sum(m, "gen_ai_client_token_usage_count", `gen_ai_token_type="input"`, `gen_ai_request_model="gpt-4o-mini"`), -1},
		{"refusals", sum(m, "sluice_rejections_total", `code="model_not_allowed"`), -1},
		{"ext_proc request headers", sum(m, "sluice_extproc_messages_total", `phase="request_headers"`), -1},
		{"time to first token", sum(m, "gen_ai_server_time_to_first_token_seconds_count"), -1},
		{"config applied", sum(m, "sluice_config_info", `component="extproc"`), 1},
	}
	for _, c := range checks {
		if c.want < 0 { // shared counters: other tests add to them; at least this test's share
			if c.got < 1 {
				t.Errorf("%s = %v, want at least 1", c.what, c.got)
			}
			continue
		}
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}
