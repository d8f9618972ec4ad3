package metrics

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesCache maps a label set to the metric children it resolves to, so that a
// per-request method does one map lookup instead of validating, hashing and looking up its
// labels once per metric (see BenchmarkRequest). Entries are never removed; neither are
// the children they point at, so the cache grows exactly as the exported series do.
type seriesCache[K comparable, V any] struct {
	mu sync.RWMutex
	m  map[K]*V // guarded by mu
}

func (c *seriesCache[K, V]) get(k K) *V {
	c.mu.RLock()
	v := c.m[k]
	c.mu.RUnlock()
	return v
}

// add stores v under k unless another goroutine got there first, and returns the stored
// value. Resolving the same children twice is harmless: they are the same children.
func (c *seriesCache[K, V]) add(k K, v *V) *V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[k]; ok {
		return old
	}
	if c.m == nil {
		c.m = make(map[K]*V)
	}
	c.m[k] = v
	return v
}

// lazyObserver is a histogram child resolved on its first observation, for series that
// many label sets never see (no time to first token without streaming, no provider time
// for a rejected request): resolving them up front would export empty histograms.
type lazyObserver struct {
	p atomic.Pointer[prometheus.Observer]
}

// observe records v in vec's child for (provider, model). All lazy children are keyed by
// those two labels; taking them rather than a closure keeps the call allocation-free.
func (l *lazyObserver) observe(v float64, vec *prometheus.HistogramVec, provider, model string) {
	o := l.p.Load()
	if o == nil {
		r := vec.WithLabelValues(provider, model)
		o = &r
		l.p.Store(o)
	}
	(*o).Observe(v)
}

// requestSeries is what one RequestLabels resolves to.
type requestSeries struct {
	provider, model string // sanitized label values, for the lazy children

	requests      prometheus.Counter
	duration      prometheus.Observer
	overhead      prometheus.Observer
	genAIDuration prometheus.Observer
	providerTime  lazyObserver
	ttft          lazyObserver
}

// Request records one finished request: call it exactly once per request, from the
// process that sent the response's last byte (the dispatcher for dispatched requests,
// extproc for those it refused).
//
// total runs from the request's arrival at the gateway to the last response byte.
// gatewayOverhead is the part of total not spent waiting on providers (total itself for a
// request no provider saw). provider is the time spent waiting on providers across all
// attempts, zero if none was called. timeToFirstToken runs from arrival to the first
// output token sent to the client, zero when the response was not streamed or no token
// was sent; zero durations are not observed.
func (m *Metrics) Request(r RequestLabels, total, gatewayOverhead, provider, timeToFirstToken time.Duration) {
	if m == nil {
		return
	}
	s := m.requestCache.get(r)
	if s == nil {
		s = m.requestCache.add(r, m.newRequestSeries(r))
	}
	s.requests.Inc()
	totalSec := total.Seconds()
	s.duration.Observe(totalSec)
	s.genAIDuration.Observe(totalSec)
	s.overhead.Observe(max(gatewayOverhead, 0).Seconds())
	if provider > 0 {
		s.providerTime.observe(provider.Seconds(), m.providerDuration, s.provider, s.model)
	}
	if timeToFirstToken > 0 {
		s.ttft.observe(timeToFirstToken.Seconds(), m.genAITTFT, s.provider, s.model)
	}
}

func (m *Metrics) newRequestSeries(r RequestLabels) *requestSeries {
	route, status, provider, model := label(r.Route), label(r.Status), label(r.Provider), label(r.Model)
	return &requestSeries{
		provider: provider,
		model:    model,
		requests: m.requests.WithLabelValues(route, status, provider, model,
			label(r.KeyID), label(r.Org), label(r.Team), label(r.Project)),
		duration:      m.requestDuration.WithLabelValues(route, status, provider),
		overhead:      m.overhead.WithLabelValues(route, status, provider),
		genAIDuration: m.genAIDuration.WithLabelValues(provider, model, errorType(status)),
	}
}

// errorType is the semantic conventions' error.type for a request that ended with status:
// empty on success, the status code otherwise.
func errorType(status string) string {
	if status == "" || status[0] < '4' {
		return ""
	}
	return status
}

type tokenKey struct {
	TenantLabels
	provider, model string
}

// tokenSeries is what one tokenKey resolves to. Cache reads and writes are resolved
// lazily: most providers and models never report them.
type tokenSeries struct {
	key                      tokenKey // sanitized, for the lazy children
	input, output            tokenType
	cacheRead, cacheCreation atomic.Pointer[tokenType]
}

type tokenType struct {
	total prometheus.Counter  // sluice_tokens_total
	usage prometheus.Observer // gen_ai_client_token_usage
}

func (m *Metrics) newTokenType(typ string, k tokenKey) tokenType {
	return tokenType{
		total: m.tokens.WithLabelValues(typ, k.KeyID, k.Org, k.Team, k.Project, k.provider, k.model),
		usage: m.genAITokens.WithLabelValues(typ, k.provider, k.model),
	}
}

func (t *tokenType) add(n int64) {
	t.total.Add(float64(n))
	t.usage.Observe(float64(n))
}

// Tokens records one request's token usage as the provider reported it. input counts
// uncached input tokens only; cacheRead and cacheWrite (Anthropic's cache_creation) are
// counted apart, so the four never overlap. input and output are recorded even when zero;
// cache counts only when positive. Negative counts are ignored.
func (m *Metrics) Tokens(t TenantLabels, provider, model string, input, output, cacheRead, cacheWrite int64) {
	if m == nil {
		return
	}
	k := tokenKey{t, provider, model}
	s := m.tokenCache.get(k)
	if s == nil {
		s = m.tokenCache.add(k, m.newTokenSeries(k))
	}
	if input >= 0 {
		s.input.add(input)
	}
	if output >= 0 {
		s.output.add(output)
	}
	if cacheRead > 0 {
		m.lazyTokenType(&s.cacheRead, tokenCacheRead, s.key).add(cacheRead)
	}
	if cacheWrite > 0 {
		m.lazyTokenType(&s.cacheCreation, tokenCacheCreation, s.key).add(cacheWrite)
	}
}

func (m *Metrics) newTokenSeries(k tokenKey) *tokenSeries {
	k = tokenKey{
		TenantLabels: TenantLabels{label(k.KeyID), label(k.Org), label(k.Team), label(k.Project)},
		provider:     label(k.provider),
		model:        label(k.model),
	}
	return &tokenSeries{
		key:    k,
		input:  m.newTokenType(tokenInput, k),
		output: m.newTokenType(tokenOutput, k),
	}
}

func (m *Metrics) lazyTokenType(p *atomic.Pointer[tokenType], typ string, k tokenKey) *tokenType {
	t := p.Load()
	if t == nil {
		v := m.newTokenType(typ, k)
		t = &v
		p.Store(t)
	}
	return t
}

// Cost records one request's cost, in nano-USD (the integer unit Sluice prices in). The
// exported counter is in dollars; non-positive amounts are ignored.
func (m *Metrics) Cost(t TenantLabels, nanoUSD int64) {
	if m == nil || nanoUSD <= 0 {
		return
	}
	c := m.costCache.get(t)
	if c == nil {
		v := m.cost.WithLabelValues(label(t.KeyID), label(t.Org), label(t.Team), label(t.Project))
		c = m.costCache.add(t, &v)
	}
	(*c).Add(float64(nanoUSD) / 1e9)
}
