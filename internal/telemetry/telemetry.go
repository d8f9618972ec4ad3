// Package telemetry traces Sluice's requests with OpenTelemetry and exports the spans over
// OTLP, routed per tenant.
//
// One trace per request: the client's W3C traceparent is the parent ([ParseTraceparent],
// [WithRemoteParent]); the gateway span's id is chosen up front ([NewSpanID]) and imposed
// when the span is recorded ([WithSpanID]), so whichever process finishes the request records
// it with that id and the other processes' spans nest under it.
//
// A [Provider] exports each ended span to one endpoint: the route of the project named by the
// span's [ProjectIDKey] attribute if [Provider.SetRoutes] gave it one, the default endpoint
// otherwise. Every endpoint has a bounded queue drained by one goroutine; a full queue drops
// the span and counts it, so a slow or dead collector never slows a request.
//
// The package sets no global OpenTelemetry state: pass the Provider (or its tracers) explicitly.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ProjectIDKey is the span attribute that routes a span to its project's endpoint.
const ProjectIDKey = attribute.Key("sluice.project_id")

// ProjectID returns the attribute that routes a span to project id's endpoint.
func ProjectID(id string) attribute.KeyValue { return ProjectIDKey.String(id) }

// Options configures a [Provider]. Zero values take the documented defaults.
type Options struct {
	// Service is the service.name resource attribute: "sluice-extproc", "sluice-dispatcher",
	// "sluice". Empty means "sluice".
	Service string
	// Default receives every span that has no project route. With an empty URL such spans
	// are not exported; they are counted in [Stats.Unrouted], not as drops.
	Default Endpoint
	// QueueSize bounds each endpoint's queue, in spans; 0 means 2048.
	QueueSize int
	// BatchSize is the most spans one export carries; 0 means 512.
	BatchSize int
	// Interval is the longest a partial batch waits before it is exported; 0 means 1s.
	Interval time.Duration
	// Timeout bounds each export call; 0 means 5s.
	Timeout time.Duration
	// Logger receives export failures, at most one line per endpoint per 10s, and ignored
	// routes. Header values are never logged. Nil discards.
	Logger *slog.Logger
}

const (
	defaultQueueSize = 2048
	defaultBatchSize = 512
	defaultInterval  = time.Second
	defaultTimeout   = 5 * time.Second
	// failureLogEvery rate-limits export-failure lines, per endpoint.
	failureLogEvery = 10 * time.Second
)

// Stats counts spans since [New]. Every span ended in a sampled trace lands in exactly one
// counter once it has been handled.
type Stats struct {
	// Exported spans were accepted by their collector.
	Exported uint64
	// Dropped spans found their queue full, or were still queued when [Provider.Shutdown]'s
	// context ended or their route was removed under them.
	Dropped uint64
	// Failed spans were in an export call that failed or timed out.
	Failed uint64
	// Unrouted spans had no project route and there is no default endpoint.
	Unrouted uint64
}

// Provider creates tracers whose spans are exported per tenant. It is safe for concurrent use.
type Provider struct {
	// Set by New, then read-only.
	opts Options // defaults applied
	log  *slog.Logger
	tp   *sdktrace.TracerProvider
	def  *queue // nil when Options.Default has no URL
	// abort is the parent of every queue's export context. Shutdown cancels it when its own
	// context ends, abandoning in-flight and queued exports.
	abort    context.Context
	abortAll context.CancelFunc

	exported, dropped, failed, unrouted atomic.Uint64

	// shut is set when Shutdown starts; spans that still reach the router (the SDK
	// unregisters it only if Shutdown's ctx has not ended) are counted as dropped.
	shut atomic.Bool
	// routes maps a project id to its queue. SetRoutes replaces the whole map; OnEnd reads it
	// without a lock. The map is never modified once stored.
	routes atomic.Pointer[map[string]*queue]

	// mu serialises SetRoutes and Shutdown and guards the fields below.
	mu     sync.Mutex
	closed bool
	// retiring counts the goroutines closing queues that SetRoutes removed. Add is only
	// called under mu with closed false, so Shutdown's Wait cannot race it.
	retiring sync.WaitGroup
}

// New returns a Provider exporting to o.Default. It does no network I/O.
func New(o Options) (*Provider, error) {
	if o.Default.URL != "" {
		if err := o.Default.Validate(); err != nil {
			return nil, fmt.Errorf("telemetry: default endpoint: %w", err)
		}
	}
	if o.QueueSize < 0 || o.BatchSize < 0 || o.Interval < 0 || o.Timeout < 0 {
		return nil, errors.New("telemetry: QueueSize, BatchSize, Interval and Timeout must not be negative")
	}
	if o.Service == "" {
		o.Service = "sluice"
	}
	if o.QueueSize == 0 {
		o.QueueSize = defaultQueueSize
	}
	if o.BatchSize == 0 {
		o.BatchSize = defaultBatchSize
	}
	o.BatchSize = min(o.BatchSize, o.QueueSize)
	if o.Interval == 0 {
		o.Interval = defaultInterval
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{opts: o, log: o.Logger}
	p.abort, p.abortAll = context.WithCancel(context.Background())
	p.routes.Store(&map[string]*queue{})
	if o.Default.URL != "" {
		q, err := p.newQueue("default", o.Default)
		if err != nil {
			p.abortAll()
			return nil, err
		}
		p.def = q
	}
	p.tp = sdktrace.NewTracerProvider(
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", o.Service))),
		sdktrace.WithSampler(sdktrace.ParentBased(rootSampler{})),
		sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithSpanProcessor(router{p}),
	)
	return p, nil
}

// Tracer returns a tracer whose spans this Provider exports.
func (p *Provider) Tracer(name string) trace.Tracer { return p.tp.Tracer(name) }

// SetRoutes replaces the per-project routes: spans whose [ProjectIDKey] names a project in
// routes go to its endpoint and not to the default one. A project whose endpoint is unchanged
// (same URL and headers) keeps its queue and exporter. Removed or changed routes are flushed
// and closed in the background; Shutdown waits for that. An invalid endpoint is logged and
// skipped, so that project's spans go to the default endpoint. After Shutdown it does nothing.
//
// Validate endpoints with [Endpoint.Validate] when the config is compiled to reject them there.
func (p *Provider) SetRoutes(routes map[string]Endpoint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	old := *p.routes.Load()
	next := make(map[string]*queue, len(routes))
	for id, ep := range routes {
		if id == "" {
			continue
		}
		if q := old[id]; q != nil && q.endpoint.equal(ep) {
			next[id] = q
			continue
		}
		q, err := p.newQueue("project "+id, ep)
		if err != nil {
			p.log.LogAttrs(context.Background(), slog.LevelWarn,
				"telemetry: project route ignored; its spans go to the default endpoint",
				slog.String("project", id), slog.String("error", err.Error()))
			continue
		}
		next[id] = q
	}
	p.routes.Store(&next)
	for id, q := range old {
		if next[id] == q {
			continue
		}
		p.retiring.Add(1)
		go func() {
			defer p.retiring.Done()
			q.signal()
			<-q.done // bounded: run exports at most QueueSize spans, each call bounded by Timeout
			_ = q.release(p.abort)
		}()
	}
}

// ForceFlush exports every span queued when it is called, on every endpoint, and waits for
// that or for ctx to end.
func (p *Provider) ForceFlush(ctx context.Context) error {
	qs := p.queues()
	acks := make([]chan struct{}, 0, len(qs))
	for _, q := range qs {
		ack := make(chan struct{})
		select {
		case q.flushReq <- ack:
			acks = append(acks, ack)
		case <-q.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, ack := range acks {
		select {
		case <-ack:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Shutdown exports what is queued, then stops every goroutine and closes every exporter.
// When ctx ends first, in-flight exports are abandoned (counted in Stats.Failed), spans still
// queued are counted in Stats.Dropped, and the error wraps ctx.Err(). Either way every
// goroutine has exited when it returns. Spans ended after Shutdown are not exported (nor
// counted, unless they race with it: those count as dropped). Calls after the first return nil.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.shut.Store(true)
	qs := p.queues()
	p.mu.Unlock()

	stop := context.AfterFunc(ctx, p.abortAll)
	defer stop()
	defer p.abortAll()

	var errs []error
	// The SDK's Shutdown only unregisters the router; with an expired ctx it returns early,
	// which shut covers.
	if err := p.tp.Shutdown(ctx); err != nil && ctx.Err() == nil {
		errs = append(errs, err)
	}
	for _, q := range qs {
		q.signal()
	}
	for _, q := range qs {
		<-q.done // bounded: once ctx ends, abortAll makes every export return at once
	}
	p.retiring.Wait()
	for _, q := range qs {
		if err := q.release(ctx); err != nil && ctx.Err() == nil {
			errs = append(errs, err)
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: shutdown cut short, queued spans abandoned: %w", err))
	}
	return errors.Join(errs...)
}

// Stats returns the span counters.
func (p *Provider) Stats() Stats {
	return Stats{
		Exported: p.exported.Load(),
		Dropped:  p.dropped.Load(),
		Failed:   p.failed.Load(),
		Unrouted: p.unrouted.Load(),
	}
}

// queues returns the default queue and every route's queue.
func (p *Provider) queues() []*queue {
	routes := *p.routes.Load()
	qs := make([]*queue, 0, len(routes)+1)
	if p.def != nil {
		qs = append(qs, p.def)
	}
	for _, q := range routes {
		qs = append(qs, q)
	}
	return qs
}

// route hands an ended span to its endpoint's queue. It runs on the goroutine that ends the
// span, so it never blocks and does not allocate.
func (p *Provider) route(s sdktrace.ReadOnlySpan) {
	if p.shut.Load() {
		p.dropped.Add(1)
		return
	}
	q := p.def
	if routes := *p.routes.Load(); len(routes) > 0 {
		if id, ok := projectID(s.Attributes()); ok {
			if rq := routes[id]; rq != nil {
				q = rq
			}
		}
	}
	if q == nil {
		p.unrouted.Add(1)
		return
	}
	q.enqueue(s)
}

// projectID returns the value of the ProjectIDKey attribute. The SDK's ended-span snapshot
// returns its attribute slice without copying.
func projectID(attrs []attribute.KeyValue) (string, bool) {
	for _, kv := range attrs {
		if kv.Key == ProjectIDKey && kv.Value.Type() == attribute.STRING {
			return kv.Value.AsString(), true
		}
	}
	return "", false
}

// router is the Provider's only span processor.
type router struct{ p *Provider }

var _ sdktrace.SpanProcessor = router{}

// OnStart implements [sdktrace.SpanProcessor.OnStart]: routing waits for the span's final
// attributes.
func (router) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements [sdktrace.SpanProcessor.OnEnd].
func (r router) OnEnd(s sdktrace.ReadOnlySpan) { r.p.route(s) }

// Shutdown implements [sdktrace.SpanProcessor.Shutdown]. It does nothing: [Provider.Shutdown]
// stops the queues once the SDK has unregistered the router.
func (router) Shutdown(context.Context) error { return nil }

// ForceFlush implements [sdktrace.SpanProcessor.ForceFlush].
func (r router) ForceFlush(ctx context.Context) error { return r.p.ForceFlush(ctx) }

// Request names a request on its spans: its id, its key and tenant, and Envoy's span when
// Envoy traces. Every process's spans of a request carry the same set.
type Request struct {
	RequestID, KeyID, OrgID, TeamID, ProjectID, PrincipalID, EnvoySpanID string
}

// Attributes returns r's non-empty fields as sluice.* attributes; sluice.project_id is the
// one the per-tenant routing reads.
func (r Request) Attributes() []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 7)
	for _, a := range [...]struct {
		k attribute.Key
		v string
	}{
		{"sluice.request_id", r.RequestID}, {"sluice.virtual_key_id", r.KeyID},
		{"sluice.organization_id", r.OrgID}, {"sluice.team_id", r.TeamID}, {ProjectIDKey, r.ProjectID},
		{"sluice.principal_id", r.PrincipalID}, {"sluice.envoy_span_id", r.EnvoySpanID},
	} {
		if a.v != "" {
			attrs = append(attrs, a.k.String(a.v))
		}
	}
	return attrs
}
