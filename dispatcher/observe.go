package dispatcher

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/logging"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/money"
	"github.com/sluice-gateway/sluice/internal/telemetry"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// maxCaptured bounds the request and response content recorded on a span for a project
// that turned content capture on.
const maxCaptured = 32 << 10

// observation follows one request through the dispatcher: its gateway span (with the id
// extproc chose), one span per provider attempt, and at the end its metrics and access log
// line.
type observation struct {
	s       *Server
	claims  *ctxtoken.Claims
	start   time.Time // when extproc first saw the request
	ctx     context.Context
	gateway trace.Span
	capture bool
	// envoySpan is Envoy's span for the request, when Envoy traces; spans name it.
	envoySpan string

	attempts       int
	failed         int
	provider       time.Duration // spent waiting on providers, every attempt
	served         *attempt.Result
	servedProvider *attempt.Provider
	servedBy       string
	servedWith     string // the model name the serving provider was sent
	status         int    // what the client got
	errCode        string
	respBody       *captureWriter

	// What the request cost (set by settle): priced is false when the model has no price,
	// estimated when the provider's usage was unknown and the reserved worst case stood.
	cost              money.NanoUSD
	priced, estimated bool
}

func (s *Server) observe(ctx context.Context, w http.ResponseWriter, c *ctxtoken.Claims, path string) (*observation, http.ResponseWriter) {
	o := &observation{s: s, claims: c, start: time.Now(), ctx: ctx}
	var tc telemetry.TraceContext
	if t := c.Trace; t != nil {
		o.start = time.Unix(0, t.StartNanos)
		tc.TraceID, _ = trace.TraceIDFromHex(t.TraceID)
		tc.Sampled = !t.Unsampled
		if t.ParentID != "" {
			tc.SpanID, _ = trace.SpanIDFromHex(t.ParentID)
		}
		o.envoySpan = t.EnvoySpanID
		w.Header().Set(wire.HeaderTraceID, t.TraceID)
		w.Header().Set(wire.HeaderSpanID, t.SpanID)
		if id, err := trace.SpanIDFromHex(t.SpanID); err == nil {
			ctx = telemetry.WithSpanID(ctx, id)
		}
	}
	ctx = telemetry.WithRemoteParent(ctx, tc)
	o.ctx, o.gateway = s.tracer().Start(ctx, "POST "+path, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(o.start), trace.WithAttributes(o.tenantAttrs()...))
	o.gateway.SetAttributes(attribute.String("http.request.method", "POST"), attribute.String("http.route", path),
		attribute.String("gen_ai.request.model", c.Model), attribute.Bool("sluice.stream", c.Stream))
	o.capture = c.ProjectID != "" && (*s.capture.Load())[c.ProjectID]
	// An answer guardrails inspect after this point is recorded by no one: what passes here
	// is not what the client gets.
	if o.capture && !c.Inspected && o.gateway.IsRecording() {
		o.respBody = &captureWriter{ResponseWriter: w}
		return o, o.respBody
	}
	return o, w
}

func (o *observation) tenantAttrs() []attribute.KeyValue {
	c := o.claims
	return telemetry.Request{RequestID: c.RequestID, KeyID: c.KeyID, OrgID: c.OrgID, TeamID: c.TeamID,
		ProjectID: c.ProjectID, PrincipalID: c.PrincipalID, EnvoySpanID: o.envoySpan}.Attributes()
}

// genAIProvider is the OpenTelemetry GenAI name of a provider type.
func genAIProvider(t config.ProviderType) string {
	switch t {
	case config.ProviderAzure:
		return "azure.ai.openai"
	case config.ProviderBedrock:
		return "aws.bedrock"
	case config.ProviderVertex:
		return "gcp.vertex_ai"
	case config.ProviderGemini:
		return "gcp.gemini"
	}
	return string(t)
}

// beginAttempt starts the span of one provider attempt and points the provider's
// traceparent at it.
func (o *observation) beginAttempt(req *attempt.Request) trace.Span {
	o.attempts++
	p := req.Provider
	attrs := append(o.tenantAttrs(),
		attribute.String("gen_ai.operation.name", "chat"),
		attribute.String("gen_ai.provider.name", genAIProvider(p.Type)),
		attribute.String("gen_ai.request.model", req.Model),
		attribute.String("sluice.provider_id", p.ID),
		attribute.Int("sluice.attempt", o.attempts))
	if u, err := url.Parse(p.BaseURL); err == nil {
		attrs = append(attrs, attribute.String("server.address", u.Hostname()))
	}
	_, sp := o.s.tracer().Start(o.ctx, "chat "+req.Model, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	if o.capture && sp.IsRecording() {
		sp.SetAttributes(attribute.String("sluice.request.content", truncate(req.Body)))
	}
	if sc := sp.SpanContext(); sc.IsValid() {
		req.Header.Set("Traceparent", telemetry.TraceContext{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Sampled: sc.IsSampled()}.Traceparent())
	}
	return sp
}

// endAttempt records how an attempt ended on its span and in the request's totals.
func (o *observation) endAttempt(sp trace.Span, req *attempt.Request, start time.Time, res *attempt.Result) {
	done := res.Done
	if done.IsZero() {
		done = time.Now()
	}
	o.provider += done.Sub(start)
	if res.Status != 0 {
		sp.SetAttributes(attribute.Int("http.response.status_code", res.Status))
	}
	if res.Committed {
		o.served, o.servedProvider, o.servedBy, o.servedWith = res, req.Provider, req.Provider.ID, req.Model
		setUsage(sp, res)
		if res.Status >= 400 {
			sp.SetStatus(codes.Error, strconv.Itoa(res.Status))
		}
	} else {
		reason := fallbackReason(res)
		sp.SetAttributes(attribute.String("error.type", reason))
		sp.SetStatus(codes.Error, reason)
	}
	sp.End(trace.WithTimestamp(done))
}

// fallbackReason classifies a failed attempt as the fallback triggers name it.
func fallbackReason(res *attempt.Result) string {
	switch {
	case res.Timeout:
		return string(config.TriggerTimeout)
	case res.Status == http.StatusTooManyRequests:
		return string(config.Trigger429)
	case res.Status >= 500:
		return string(config.Trigger5xx)
	case res.Status == 0:
		return string(config.TriggerNetwork)
	}
	return strconv.Itoa(res.Status)
}

func setUsage(sp trace.Span, res *attempt.Result) {
	u := res.Usage
	sp.SetAttributes(
		attribute.Int64("gen_ai.usage.input_tokens", u.InputTokens),
		attribute.Int64("gen_ai.usage.output_tokens", u.OutputTokens),
		attribute.Int64("gen_ai.usage.cache_read.input_tokens", u.CacheReadTokens),
		attribute.Int64("gen_ai.usage.cache_creation.input_tokens", u.CacheCreationTokens))
	if res.ResponseModel != "" {
		sp.SetAttributes(attribute.String("gen_ai.response.model", res.ResponseModel))
	}
	if len(res.FinishReasons) > 0 {
		sp.SetAttributes(attribute.StringSlice("gen_ai.response.finish_reasons", res.FinishReasons))
	}
}

// fail answers the request with a gateway error and remembers it for the request's record.
func (o *observation) fail(w http.ResponseWriter, e *apierror.Error, f wire.Format) {
	o.status, o.errCode = e.Status, e.Code
	e.Write(w, f, o.claims.RequestID)
}

// finish ends the gateway span and records the request's metrics and access log line.
func (o *observation) finish() {
	c, now := o.claims, time.Now()
	sp := o.gateway
	sp.SetAttributes(attribute.Int("http.response.status_code", o.status),
		attribute.Int("sluice.fallback_count", o.failed), attribute.String("sluice.status", strconv.Itoa(o.status)))
	var usage attempt.Usage
	var ttft time.Duration
	model := c.Model
	if r := o.served; r != nil {
		usage = r.Usage
		setUsage(sp, r)
		sp.SetAttributes(attribute.String("sluice.provider_id", o.servedBy))
		model = o.servedWith
		if c.Stream && !r.FirstByte.IsZero() {
			ttft = r.FirstByte.Sub(o.start)
		}
	}
	if o.priced {
		sp.SetAttributes(attribute.Float64("sluice.cost_usd", float64(o.cost)/float64(money.NanoPerUSD)),
			attribute.Int64("sluice.cost_nano_usd", int64(o.cost)))
		if o.estimated {
			sp.SetAttributes(attribute.Bool("sluice.cost_estimated", true))
		}
	}
	if c.CacheMode != "" {
		sp.SetAttributes(attribute.String("sluice.cache_mode", c.CacheMode))
	}
	if c.BudgetWarning != "" {
		sp.SetAttributes(attribute.String("sluice.budget.warning", c.BudgetWarning))
	}
	if o.errCode != "" {
		sp.SetAttributes(attribute.String("error.type", o.errCode))
	}
	if o.status >= 400 {
		sp.SetStatus(codes.Error, strconv.Itoa(o.status))
	}
	if o.respBody != nil {
		sp.SetAttributes(attribute.String("sluice.response.content", truncate(o.respBody.buf)))
	}
	sp.End(trace.WithTimestamp(now))

	total := now.Sub(o.start)
	m := o.s.cfg.Metrics
	labels := metrics.RequestLabels{Route: c.Endpoint, Status: metrics.Status(o.status), Provider: o.servedBy,
		Model: model, KeyID: c.KeyID, Org: c.OrgID, Team: c.TeamID, Project: c.ProjectID}
	m.Request(labels, total, max(total-o.provider, 0), o.provider, ttft)
	// Metrics and the access log count input without the cache, which has its own fields.
	uncached := usage.InputTokens - usage.CacheReadTokens - usage.CacheCreationTokens
	if o.served != nil {
		m.Tokens(labels.Tenant(), o.servedBy, model, uncached, usage.OutputTokens, usage.CacheReadTokens, usage.CacheCreationTokens)
	}
	if o.priced {
		m.Cost(labels.Tenant(), int64(o.cost))
	}
	if l := o.s.cfg.AccessLog; l != nil {
		sc := sp.SpanContext()
		logging.AccessLog(l, logging.AccessRecord{RequestID: c.RequestID, TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(),
			Route: c.Endpoint, Method: http.MethodPost, Status: o.status, ErrorCode: o.errCode,
			KeyID: c.KeyID, OrganizationID: c.OrgID, TeamID: c.TeamID, ProjectID: c.ProjectID, PrincipalID: c.PrincipalID,
			Model: model, Provider: o.servedBy, FallbackCount: o.failed,
			InputTokens: uncached, OutputTokens: usage.OutputTokens,
			CacheReadTokens: usage.CacheReadTokens, CacheCreationTokens: usage.CacheCreationTokens,
			CostNanoUSD: int64(o.cost), CacheMode: c.CacheMode, BudgetWarning: c.BudgetWarning,
			Duration: total, ProviderDuration: o.provider, TimeToFirstToken: ttft, Stream: c.Stream})
	}
}

func (s *Server) tracer() trace.Tracer {
	if s.cfg.Tracer == nil {
		return noopTracer
	}
	return s.cfg.Tracer
}

var noopTracer = noop.NewTracerProvider().Tracer("")

func truncate(b []byte) string {
	if len(b) > maxCaptured {
		b = b[:maxCaptured]
	}
	return string(b)
}

// captureWriter keeps the first maxCaptured bytes of the response for a project that
// captures content.
type captureWriter struct {
	http.ResponseWriter
	mu  sync.Mutex
	buf []byte
}

func (c *captureWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	if room := maxCaptured - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	c.mu.Unlock()
	return c.ResponseWriter.Write(p)
}

// Flush keeps SSE flowing through the wrapper.
func (c *captureWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the real writer.
func (c *captureWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
