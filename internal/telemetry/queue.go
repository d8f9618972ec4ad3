package telemetry

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is one endpoint's bounded span queue and the goroutine (run) that batches and exports
// it. Only run receives from ch, except enqueue's reclaim once stopping is set.
type queue struct {
	// Set by newQueue, then read-only.
	p        *Provider
	name     string // "default" or "project <id>", for logs
	endpoint Endpoint
	exp      exporter
	ch       chan sdktrace.ReadOnlySpan
	flushReq chan chan struct{} // run exports what is queued, then closes the channel it got
	stop     chan struct{}      // closed by signal: run drains ch and returns
	done     chan struct{}      // closed when run has returned
	ctx      context.Context    // parent of every export's context; a child of Provider.abort
	cancel   context.CancelFunc
	stopOnce sync.Once

	// stopping is set by run before its final drain of ch; see enqueue.
	stopping atomic.Bool

	// Owned by run.
	lastLog    time.Time
	suppressed int
}

func (p *Provider) newQueue(name string, ep Endpoint) (*queue, error) {
	exp, err := newExporter(ep, p.opts.Timeout)
	if err != nil {
		return nil, err
	}
	q := &queue{
		p:        p,
		name:     name,
		endpoint: Endpoint{URL: ep.URL, Headers: maps.Clone(ep.Headers)},
		exp:      exp,
		ch:       make(chan sdktrace.ReadOnlySpan, p.opts.QueueSize),
		flushReq: make(chan chan struct{}),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	q.ctx, q.cancel = context.WithCancel(p.abort)
	go q.run()
	return q, nil
}

// enqueue queues s without blocking; a full queue drops it.
//
// A span can race with the queue's stop: its sender loaded the routes before SetRoutes or
// Shutdown replaced them. If the send lands after run's final drain nobody would receive it,
// so a sender that sees stopping drains the queue itself and counts what it finds as dropped.
// The sender checks stopping after its send and run sets it before its drain, so every span
// is either exported by run or counted here.
func (q *queue) enqueue(s sdktrace.ReadOnlySpan) {
	select {
	case q.ch <- s:
	default:
		q.p.dropped.Add(1)
		return
	}
	if q.stopping.Load() {
		q.reclaim()
	}
}

// reclaim empties ch, counting its spans as dropped.
func (q *queue) reclaim() {
	for {
		select {
		case <-q.ch:
			q.p.dropped.Add(1)
		default:
			return
		}
	}
}

// signal asks run to export what is queued and return.
func (q *queue) signal() { q.stopOnce.Do(func() { close(q.stop) }) }

// release closes the exporter once run has returned.
func (q *queue) release(ctx context.Context) error {
	q.reclaim()
	err := q.exp.Shutdown(ctx)
	if q.exp.closeIdle != nil {
		q.exp.closeIdle()
	}
	q.cancel()
	return err
}

// run batches spans from ch: a batch is exported when it is full, when Interval has passed
// since its first span, on a flush request, and on stop.
func (q *queue) run() {
	defer close(q.done)
	o := &q.p.opts
	batch := make([]sdktrace.ReadOnlySpan, 0, o.BatchSize)
	timer := time.NewTimer(o.Interval)
	timer.Stop()
	armed := false
	flush := func() {
		if armed {
			timer.Stop() // Go 1.23 timers: no stale tick can be received after Stop
			armed = false
		}
		if len(batch) > 0 {
			q.export(batch)
			clear(batch) // let the spans be collected
			batch = batch[:0]
		}
	}
	add := func(s sdktrace.ReadOnlySpan) {
		batch = append(batch, s)
		if len(batch) >= o.BatchSize {
			flush()
		}
	}
	for {
		select {
		case s := <-q.ch:
			add(s)
			if len(batch) > 0 && !armed {
				timer.Reset(o.Interval)
				armed = true
			}
		case <-timer.C:
			armed = false
			flush()
		case ack := <-q.flushReq:
			for n := len(q.ch); n > 0; n-- {
				add(<-q.ch) // only run receives while not stopping
			}
			flush()
			close(ack)
		case <-q.stop:
			q.stopping.Store(true)
			for {
				select {
				case s := <-q.ch:
					add(s)
				default:
					flush()
					return
				}
			}
		}
	}
}

// export makes one export call for batch and counts the outcome.
func (q *queue) export(batch []sdktrace.ReadOnlySpan) {
	n := uint64(len(batch))
	if q.ctx.Err() != nil {
		q.p.dropped.Add(n) // Shutdown gave up: do not start another call
		return
	}
	validUTF8(batch)
	ctx, cancel := context.WithTimeout(q.ctx, q.p.opts.Timeout)
	err := q.exp.ExportSpans(ctx, batch)
	cancel()
	if err == nil {
		q.p.exported.Add(n)
		return
	}
	q.p.failed.Add(n)
	q.logFailure(len(batch), err)
}

// logFailure logs at most one line per failureLogEvery, counting the lines it holds back.
func (q *queue) logFailure(spans int, err error) {
	now := time.Now()
	if !q.lastLog.IsZero() && now.Sub(q.lastLog) < failureLogEvery {
		q.suppressed++
		return
	}
	q.p.log.LogAttrs(context.Background(), slog.LevelWarn, "telemetry: span export failed",
		slog.String("route", q.name),
		slog.String("endpoint", q.endpoint.URL),
		slog.Int("spans", spans),
		slog.Int("failures_not_logged", q.suppressed),
		slog.String("error", redact(err.Error(), q.endpoint.Headers)))
	q.lastLog = now
	q.suppressed = 0
}

// maxLoggedError bounds the error text logged for a failed export: it may hold the
// collector's response body.
const maxLoggedError = 512

// redact removes every header value from msg: a collector may echo request headers, which
// can be credentials, in its error body.
func redact(msg string, headers map[string]string) string {
	for _, v := range headers {
		if v != "" {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	if len(msg) > maxLoggedError {
		msg = strings.ToValidUTF8(msg[:maxLoggedError], "") + "…"
	}
	return msg
}
