// Package metrics holds the Prometheus metrics of a Sluice process and serves them.
//
// Each process (or `sluice serve`, which runs all of them) creates one [Metrics] with [New]
// and hands it to its components, which record through typed methods such as
// [Metrics.Request] and [Metrics.Rejected]. The metrics live in a private registry, never
// the global default one, so tests and embedded uses get a clean set; [Metrics.Handler]
// serves it. Every method is a no-op on a nil *Metrics, so a component built without
// metrics (a unit test, a CLI path) needs no setup and no nil checks.
//
// Names follow the OpenTelemetry GenAI semantic conventions where one exists
// (gen_ai_client_token_usage, gen_ai_server_request_duration_seconds,
// gen_ai_server_time_to_first_token_seconds), in their Prometheus form, with Sluice acting
// as the GenAI server towards its clients; everything else is under sluice_. The four
// durations [Metrics.Request] takes land in: total in sluice_request_duration_seconds
// {route,status,provider} and gen_ai_server_request_duration_seconds
// {gen_ai_provider_name,gen_ai_request_model,error_type}; gatewayOverhead in
// sluice_gateway_overhead_seconds {route,status,provider}; provider in
// sluice_provider_duration_seconds {provider,model}; timeToFirstToken in
// gen_ai_server_time_to_first_token_seconds {gen_ai_provider_name,gen_ai_request_model}.
//
// # Label values are ids
//
// Every label value must be an identifier from configuration or a fixed vocabulary: a key
// id (never the key's secret), an organization, team or project id, a configured provider
// or model name, a route name, an HTTP status code, an error code. Never pass a secret, a
// prompt, a URL, a header value or any other client-controlled text: label values are
// exported in clear to whoever can scrape, and every distinct value creates a series that
// lives until the process exits. In particular a model name a client asked for but that
// failed validation must not be passed as-is. As a last line of defence values are cut to
// 128 bytes and invalid UTF-8 is repaired (client_golang would panic on it).
package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Bucket layouts, in seconds unless noted.
var (
	// llmLatencyBuckets spans a cached or rejected request (a few ms) to a long agentic
	// stream (minutes).
	llmLatencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600}
	// overheadBuckets spans a warm in-memory decision (tens of µs) to a slow guardrail or
	// counter-store round trip (100 ms).
	overheadBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1}
	// The GenAI layouts are the semantic conventions' advice, so dashboards built for
	// other GenAI servers read ours unchanged.
	genAIDurationBuckets = []float64{.01, .02, .04, .08, .16, .32, .64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}
	genAITTFTBuckets     = []float64{.001, .005, .01, .02, .04, .06, .08, .1, .25, .5, .75, 1, 2.5, 5, 7.5, 10}
	// genAITokenBuckets is in tokens.
	genAITokenBuckets = []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}
	// configLagBuckets spans a loopback push (ms) to a fleet replica that was away (a minute).
	configLagBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Label names shared by several metrics.
const (
	lRoute    = "route"
	lStatus   = "status"
	lProvider = "provider"
	lModel    = "model"
	lKeyID    = "key_id"
	lOrg      = "organization_id"
	lTeam     = "team_id"
	lProject  = "project_id"

	lGenAIProvider  = "gen_ai_provider_name"
	lGenAIModel     = "gen_ai_request_model"
	lGenAITokenType = "gen_ai_token_type"
	lErrorType      = "error_type"
)

// Token types, as both gen_ai_token_type and sluice_tokens_total's type.
const (
	tokenInput         = "input"
	tokenOutput        = "output"
	tokenCacheRead     = "cache_read"
	tokenCacheCreation = "cache_creation"
)

// Metrics is one process's metrics. Create it with [New]; all methods are safe for
// concurrent use and are no-ops on a nil *Metrics.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests         *prometheus.CounterVec   // route, status, provider, model, tenant
	requestDuration  *prometheus.HistogramVec // route, status, provider
	overhead         *prometheus.HistogramVec // route, status, provider
	providerDuration *prometheus.HistogramVec // provider, model
	genAIDuration    *prometheus.HistogramVec // gen_ai provider, model, error_type
	genAITTFT        *prometheus.HistogramVec // gen_ai provider, model
	genAITokens      *prometheus.HistogramVec // gen_ai token type, provider, model
	tokens           *prometheus.CounterVec   // type, tenant, provider, model
	cost             *prometheus.CounterVec   // tenant

	fallbacks      *prometheus.CounterVec // provider, reason
	circuit        *prometheus.GaugeVec   // provider
	budgetDenials  *prometheus.CounterVec // scope, window
	budgetWarnings *prometheus.CounterVec // scope
	rateLimited    *prometheus.CounterVec // limit
	guardrails     *prometheus.CounterVec // guardrail, direction, verdict
	extprocMsgs    *prometheus.CounterVec // phase
	rejections     *prometheus.CounterVec // route, code
	storeErrors    *prometheus.CounterVec // op
	configInfo     *prometheus.GaugeVec   // component, version
	configApplied  *prometheus.GaugeVec   // component
	configLag      *prometheus.HistogramVec

	// extprocPhases holds the sluice_extproc_messages_total children for the four phases,
	// indexed like extprocPhaseNames: ExtProcMessage runs for every ext_proc message.
	extprocPhases [len(extprocPhaseNames)]prometheus.Counter

	spans spanStats
	fleet fleetStats

	// Caches of resolved children for the per-request methods; see series.go.
	requestCache seriesCache[RequestLabels, requestSeries]
	tokenCache   seriesCache[tokenKey, tokenSeries]
	costCache    seriesCache[TenantLabels, prometheus.Counter]

	// configMu guards configVersions, the version currently exported per component by
	// sluice_config_info.
	configMu       sync.Mutex
	configVersions map[string]string
}

// RequestLabels labels one finished request. Status is the HTTP status code sent to the
// client as a decimal string (see [Status]). See the package doc: every value is an id.
type RequestLabels struct {
	Route, Status, Provider, Model, KeyID, Org, Team, Project string
}

// Tenant returns the tenant part of r.
func (r RequestLabels) Tenant() TenantLabels {
	return TenantLabels{KeyID: r.KeyID, Org: r.Org, Team: r.Team, Project: r.Project}
}

// TenantLabels names who a request is accounted to: the virtual key's id (never its secret)
// and the ids of its organization, team and project. Empty values are fine.
type TenantLabels struct {
	KeyID, Org, Team, Project string
}

// New returns a Metrics with every Sluice metric, the Go runtime collector and the process
// collector registered in a private registry.
func New() *Metrics {
	m := &Metrics{
		reg:            prometheus.NewRegistry(),
		configVersions: make(map[string]string),
	}
	tenant := []string{lKeyID, lOrg, lTeam, lProject}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	gauge := func(name, help string, labels ...string) *prometheus.GaugeVec {
		v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		m.reg.MustRegister(v)
		return v
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		m.reg.MustRegister(v)
		return v
	}

	m.requests = counter("sluice_requests_total",
		"Requests finished, by route, HTTP status sent to the client, provider that served it (empty if none), model and tenant.",
		append([]string{lRoute, lStatus, lProvider, lModel}, tenant...)...)
	m.requestDuration = histogram("sluice_request_duration_seconds",
		"Time from the request's arrival at the gateway to its last response byte.",
		llmLatencyBuckets, lRoute, lStatus, lProvider)
	m.overhead = histogram("sluice_gateway_overhead_seconds",
		"Time the gateway itself spent on a request: the request duration minus the time spent waiting on providers.",
		overheadBuckets, lRoute, lStatus, lProvider)
	m.providerDuration = histogram("sluice_provider_duration_seconds",
		"Time spent waiting on providers for a request, across all attempts, for requests a provider served.",
		llmLatencyBuckets, lProvider, lModel)
	m.genAIDuration = histogram("gen_ai_server_request_duration_seconds",
		"GenAI server request duration (time to last byte), Sluice being the server; error_type is the HTTP status for failed requests.",
		genAIDurationBuckets, lGenAIProvider, lGenAIModel, lErrorType)
	m.genAITTFT = histogram("gen_ai_server_time_to_first_token_seconds",
		"Time from the request's arrival at the gateway to the first output token sent to the client, for streamed responses.",
		genAITTFTBuckets, lGenAIProvider, lGenAIModel)
	m.genAITokens = histogram("gen_ai_client_token_usage",
		"Tokens per request, by token type (input, output, cache_read, cache_creation), as reported by the provider.",
		genAITokenBuckets, lGenAITokenType, lGenAIProvider, lGenAIModel)
	m.tokens = counter("sluice_tokens_total",
		"Tokens processed, by type (input, output, cache_read, cache_creation), tenant, provider and model.",
		append(append([]string{"type"}, tenant...), lProvider, lModel)...)
	m.cost = counter("sluice_cost_usd_total",
		"Spend in US dollars, by tenant (computed from exact integer nano-dollars per request).",
		tenant...)

	m.fallbacks = counter("sluice_fallbacks_total",
		"Provider attempts abandoned for the next provider in the chain, by the provider given up on and why (5xx, 429, timeout, network_error, circuit_open).",
		lProvider, "reason")
	m.circuit = gauge("sluice_circuit_breaker_state",
		"Circuit breaker state per provider: 0 closed, 1 half-open, 2 open.", lProvider)
	m.budgetDenials = counter("sluice_budget_denials_total",
		"Requests refused because a budget was exhausted, by budget scope and window.", "scope", "window")
	m.budgetWarnings = counter("sluice_budget_warnings_total",
		"Requests admitted past a budget's warning threshold, by budget scope.", "scope")
	m.rateLimited = counter("sluice_rate_limit_denials_total",
		"Requests refused by a rate limit, by limit (rpm, tpm, rpd).", "limit")
	m.guardrails = counter("sluice_guardrail_verdicts_total",
		"Guardrail verdicts, by guardrail id, direction (request, response) and verdict (allow, block, modify, error).",
		"guardrail", "direction", "verdict")
	m.extprocMsgs = counter("sluice_extproc_messages_total",
		"ext_proc messages handled, by phase.", "phase")
	m.rejections = counter("sluice_rejections_total",
		"Requests refused by extproc, by route and error code.", lRoute, "code")
	m.storeErrors = counter("sluice_counter_store_errors_total",
		"Failed operations on the shared counter store (budgets, rate limits), by operation.", "op")
	m.configInfo = gauge("sluice_config_info",
		"Config version currently applied by each component; always 1.", "component", "version")
	m.configApplied = gauge("sluice_config_applied_timestamp_seconds",
		"Unix time at which each component last applied a config.", "component")
	m.configLag = histogram("sluice_config_push_lag_seconds",
		"Time from a config's publication by the control plane to its application by a component.",
		configLagBuckets, "component")

	for i, p := range extprocPhaseNames {
		m.extprocPhases[i] = m.extprocMsgs.WithLabelValues(p)
	}
	m.reg.MustRegister(&m.spans, &m.fleet)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg,
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	return m
}

// Handler serves the metrics in the Prometheus text format, or OpenMetrics when the scraper
// asks for it. Mount it at /metrics. On a nil *Metrics it answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// statusStrings holds the decimal form of every HTTP status code, so that building a
// [RequestLabels] does not allocate.
var statusStrings = func() (s [600]string) {
	for i := 100; i < len(s); i++ {
		s[i] = strconv.Itoa(i)
	}
	return s
}()

// Status returns code as a label value ("200"), without allocating for codes 100–599.
func Status(code int) string {
	if code >= 100 && code < len(statusStrings) {
		return statusStrings[code]
	}
	return strconv.Itoa(code)
}

// maxLabelLen bounds a label value's length; ids are far shorter.
const maxLabelLen = 128

// label makes s safe to use as a label value: client_golang panics on invalid UTF-8, and
// an overlong value is a sign of a caller passing free text.
func label(s string) string {
	if len(s) > maxLabelLen {
		s = s[:maxLabelLen]
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
