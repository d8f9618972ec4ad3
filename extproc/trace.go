package extproc

import (
	"context"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/logging"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/telemetry"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// reqTrace is one request's place in its trace. Extproc picks the gateway span's id when
// the request arrives: it is returned in X-Sluice-Span-Id and handed to the dispatcher,
// which records the gateway span for every request it serves; extproc records it only for
// the requests it refuses.
type reqTrace struct {
	start   time.Time
	traceID trace.TraceID
	spanID  trace.SpanID           // the gateway span
	client  telemetry.TraceContext // the client's span, zero without a valid traceparent
	parent  telemetry.TraceContext // what the gateway span nests under
	envoy   trace.SpanID           // Envoy's span for the request, when Envoy traces
}

// begin starts the request's trace context from the client's traceparent, if any, and
// Envoy's (the ext_proc call's gRPC metadata), if Envoy traces. The gateway span nests
// under the client's span, never Envoy's: Envoy's spans reach only the gateway's collector,
// and a tenant's collector would hold a child without its parent. Envoy's span is named
// instead, and without a client traceparent Envoy's trace id keeps both in one trace.
func (t *reqTrace) begin(now time.Time, traceparent, envoyTraceparent string) {
	t.start = now
	envoy, fromEnvoy := telemetry.ParseTraceparent(envoyTraceparent)
	if fromEnvoy {
		t.envoy = envoy.SpanID
	}
	switch tc, ok := telemetry.ParseTraceparent(traceparent); {
	case ok:
		t.client, t.parent = tc, tc
	case fromEnvoy:
		t.parent = telemetry.TraceContext{TraceID: envoy.TraceID, Sampled: envoy.Sampled}
	default:
		t.parent = telemetry.TraceContext{TraceID: telemetry.NewTraceID(), Sampled: true}
	}
	t.traceID, t.spanID = t.parent.TraceID, telemetry.NewSpanID()
}

// claims is what the dispatcher needs to record the gateway span.
func (t *reqTrace) claims() *ctxtoken.Trace {
	c := &ctxtoken.Trace{TraceID: t.traceID.String(), SpanID: t.spanID.String(),
		Unsampled: !t.parent.Sampled, StartNanos: t.start.UnixNano()}
	if t.client.SpanID.IsValid() {
		c.ParentID = t.client.SpanID.String()
	}
	if t.envoy.IsValid() {
		c.EnvoySpanID = t.envoy.String()
	}
	return c
}

// gatewayContext returns a context whose next span is the gateway span; inside returns one
// whose spans are the gateway span's children (for when the gateway span is recorded
// elsewhere).
func (t *reqTrace) gatewayContext(ctx context.Context) context.Context {
	return telemetry.WithSpanID(telemetry.WithRemoteParent(ctx, t.parent), t.spanID)
}

func (t *reqTrace) inside(ctx context.Context) context.Context {
	return telemetry.WithRemoteParent(ctx, telemetry.TraceContext{TraceID: t.traceID, SpanID: t.spanID, Sampled: t.parent.Sampled})
}

// tenantAttrs names the request's key and tenant on its spans.
func (r *request) tenantAttrs() []attribute.KeyValue {
	t := telemetry.Request{RequestID: r.id}
	if r.trace.envoy.IsValid() {
		t.EnvoySpanID = r.trace.envoy.String()
	}
	if k := r.key; k != nil {
		t.KeyID, t.OrgID, t.TeamID, t.ProjectID, t.PrincipalID = k.id, k.org, k.team, k.project, k.principal
	}
	return t.Attributes()
}

// spanName is the gateway span's name: the route, as HTTP server spans are named.
func (r *request) spanName() string {
	if p := r.route.Endpoint.Path(); p != "" {
		return r.route.Method + " " + p
	}
	return "sluice.request"
}

// tracePolicy records extproc's own work on an admitted request as a child of the gateway
// span the dispatcher will record.
func (r *request) tracePolicy(model string) {
	tr := r.srv.cfg.Tracer
	if tr == nil {
		return
	}
	_, sp := tr.Start(r.trace.inside(context.Background()), "sluice.policy",
		trace.WithTimestamp(r.trace.start), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(r.tenantAttrs()...))
	sp.SetAttributes(attribute.String("gen_ai.request.model", model))
	sp.End()
}

// traceRejection records the gateway span of a request extproc refused, with the reason.
func (r *request) traceRejection(e *apierror.Error) {
	tr := r.srv.cfg.Tracer
	if tr == nil || r.trace.start.IsZero() {
		return
	}
	attrs := append(r.tenantAttrs(),
		attribute.Int("http.response.status_code", e.Status),
		attribute.String("error.type", e.Code),
		attribute.String("sluice.rejection_reason", e.Message),
		attribute.String("sluice.status", strconv.Itoa(e.Status)))
	if r.route.Endpoint != 0 {
		attrs = append(attrs, attribute.String("http.route", r.route.Endpoint.Path()))
	}
	// An answer refused after dispatch (a response guardrail) already has its gateway span,
	// recorded by the dispatcher: the refusal is its child.
	ctx, name, kind, start := r.trace.gatewayContext(context.Background()), r.spanName(), trace.SpanKindServer, r.trace.start
	if r.dispatched {
		ctx, name, kind, start = r.trace.inside(context.Background()), "sluice.response_guardrail", trace.SpanKindInternal, r.srv.cfg.Now()
	}
	_, sp := tr.Start(ctx, name, trace.WithTimestamp(start), trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	sp.SetStatus(codes.Error, e.Code)
	sp.End()
}

// traceHeaders name the trace and the gateway span on a response extproc answers itself.
func (r *request) traceHeaders() [][2]string {
	if r.trace.start.IsZero() {
		return nil
	}
	return [][2]string{{wire.HeaderTraceID, r.trace.traceID.String()}, {wire.HeaderSpanID, r.trace.spanID.String()}}
}

// logRejection counts a refusal and writes its access log line. A refusal after dispatch
// (a response guardrail) is the dispatcher's request line's sequel, logged as its own
// line with the same request id.
func (r *request) logRejection(e *apierror.Error) {
	route := r.route.Endpoint.String()
	m := r.srv.cfg.Metrics
	m.Rejected(route, e.Code)
	took := r.srv.cfg.Now().Sub(r.trace.start)
	if !r.dispatched { // a dispatched request is counted by the dispatcher
		labels := metrics.RequestLabels{Route: route, Status: metrics.Status(e.Status)}
		if k := r.key; k != nil {
			labels.KeyID, labels.Org, labels.Team, labels.Project = k.id, k.org, k.team, k.project
		}
		m.Request(labels, took, took, 0, 0)
	}
	l := r.srv.cfg.AccessLog
	if l == nil {
		return
	}
	rec := logging.AccessRecord{RequestID: r.id, TraceID: r.trace.traceID.String(), SpanID: r.trace.spanID.String(),
		Route: route, Method: r.route.Method, Status: e.Status, ErrorCode: e.Code,
		Duration: took}
	if k := r.key; k != nil {
		rec.KeyID, rec.OrganizationID, rec.TeamID, rec.ProjectID, rec.PrincipalID = k.id, k.org, k.team, k.project, k.principal
	}
	if e.Code == "guardrail_blocked" {
		rec.Guardrail = r.blockedBy
	}
	logging.AccessLog(l, rec)
}
