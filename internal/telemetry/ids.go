package telemetry

import (
	"context"
	"sync/atomic"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// spanIDKey carries a *spanIDHint: the id the next span started in the context must get.
type spanIDKey struct{}

// spanIDHint is consumed by the first span that reads it, so that a child started from the
// context returned by Start (which still carries the hint) gets a fresh id, and two spans
// started from one context never share an id.
type spanIDHint struct {
	id   trace.SpanID
	used atomic.Bool
}

// rootTraceKey carries a rootTrace: start a root span in this trace rather than a new one.
type rootTraceKey struct{}

type rootTrace struct {
	traceID trace.TraceID
	sampled bool
}

// WithSpanID returns a context in which the next span started with a [Provider]'s tracer
// gets id as its span id. Only one span gets it: spans started later from the same context,
// and children started from the context that span returns, get random ids. A zero id
// returns ctx unchanged.
//
// Extproc chooses the gateway span's id up front, so the id can be put in the response
// headers and carried to the dispatcher before the span is recorded.
func WithSpanID(ctx context.Context, id trace.SpanID) context.Context {
	if !id.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, spanIDKey{}, &spanIDHint{id: id})
}

// WithRemoteParent returns a context whose spans are children of the remote span tc names,
// in tc's trace, sampled as tc says (the sampler is parent-based).
//
// A zero tc.SpanID with a valid tc.TraceID means "a new root in this trace": spans started
// in the returned context have no parent but get tc.TraceID, and are sampled only if
// tc.Sampled. Any span ctx already carries is hidden in that case. A zero tc.TraceID returns
// ctx unchanged.
func WithRemoteParent(ctx context.Context, tc TraceContext) context.Context {
	if !tc.TraceID.IsValid() {
		return ctx
	}
	if !tc.SpanID.IsValid() {
		// An invalid span context makes the SDK ask the IDGenerator for both ids (NewIDs),
		// and the parent-based sampler ask the root sampler; both read rootTraceKey.
		ctx = trace.ContextWithSpanContext(ctx, trace.SpanContext{})
		return context.WithValue(ctx, rootTraceKey{}, rootTrace{traceID: tc.TraceID, sampled: tc.Sampled})
	}
	var flags trace.TraceFlags
	if tc.Sampled {
		flags = trace.FlagsSampled
	}
	return trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    tc.TraceID,
		SpanID:     tc.SpanID,
		TraceFlags: flags,
		Remote:     true,
	}))
}

// takeSpanID returns the id WithSpanID put in ctx, if no span has taken it yet.
func takeSpanID(ctx context.Context) (trace.SpanID, bool) {
	h, _ := ctx.Value(spanIDKey{}).(*spanIDHint)
	if h == nil || !h.used.CompareAndSwap(false, true) {
		return trace.SpanID{}, false
	}
	return h.id, true
}

// idGenerator is the SDK's IDGenerator: random ids unless the context says otherwise.
// The SDK calls NewIDs when the parent span context has no valid trace id, NewSpanID
// otherwise, in both cases with the context passed to Start.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

// NewIDs implements [sdktrace.IDGenerator.NewIDs].
func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	if rt, ok := ctx.Value(rootTraceKey{}).(rootTrace); ok {
		tid = rt.traceID
	} else {
		tid = NewTraceID()
	}
	return tid, idGenerator{}.NewSpanID(ctx, tid)
}

// NewSpanID implements [sdktrace.IDGenerator.NewSpanID].
func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if id, ok := takeSpanID(ctx); ok {
		return id
	}
	return NewSpanID()
}

// rootSampler samples every root span except a root WithRemoteParent placed in an unsampled
// trace. Wrapped in ParentBased, it makes the client's sampled flag decide, and a request
// without a traceparent sampled.
type rootSampler struct{}

var _ sdktrace.Sampler = rootSampler{}

// ShouldSample implements [sdktrace.Sampler.ShouldSample].
func (rootSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if rt, ok := p.ParentContext.Value(rootTraceKey{}).(rootTrace); ok && !rt.sampled {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample}
}

// Description implements [sdktrace.Sampler.Description].
func (rootSampler) Description() string { return "SluiceRoot" }
