package metrics

import (
	"time"
)

// extprocPhaseNames are the ext_proc phases whose counters New resolves up front.
var extprocPhaseNames = [...]string{
	"request_headers", "request_body", "request_trailers",
	"response_headers", "response_body", "response_trailers",
}

// ExtProcMessage counts one ext_proc message handled in phase (request_headers,
// request_body, request_trailers, response_headers, response_body, response_trailers).
// It runs for every message, so the known phases cost an atomic add and nothing else.
func (m *Metrics) ExtProcMessage(phase string) {
	if m == nil {
		return
	}
	i := -1
	switch phase {
	case "request_headers":
		i = 0
	case "request_body":
		i = 1
	case "request_trailers":
		i = 2
	case "response_headers":
		i = 3
	case "response_body":
		i = 4
	case "response_trailers":
		i = 5
	}
	if i < 0 {
		m.extprocMsgs.WithLabelValues(label(phase)).Inc()
		return
	}
	m.extprocPhases[i].Inc()
}

// Rejected counts a request extproc refused on route, by its stable error code
// (invalid_api_key, model_not_allowed, guardrail_blocked, …). The request itself is also
// recorded by [Metrics.Request].
func (m *Metrics) Rejected(route, code string) {
	if m == nil {
		return
	}
	m.rejections.WithLabelValues(label(route), label(code)).Inc()
}

// Fallback counts a provider attempt abandoned for the next provider in the chain.
// reason is one of 5xx, 429, timeout, network_error, circuit_open.
func (m *Metrics) Fallback(fromProvider, reason string) {
	if m == nil {
		return
	}
	m.fallbacks.WithLabelValues(label(fromProvider), label(reason)).Inc()
}

// CircuitState is a circuit breaker's state, exported as its numeric value.
type CircuitState int

// The circuit breaker states.
const (
	CircuitClosed   CircuitState = 0
	CircuitHalfOpen CircuitState = 1
	CircuitOpen     CircuitState = 2
)

// String returns closed, half-open or open.
func (s CircuitState) String() string {
	switch s {
	case CircuitClosed:
		return "closed"
	case CircuitHalfOpen:
		return "half-open"
	case CircuitOpen:
		return "open"
	}
	return "unknown"
}

// CircuitState sets provider's circuit breaker state; call it on every transition.
func (m *Metrics) CircuitState(provider string, state CircuitState) {
	if m == nil {
		return
	}
	m.circuit.WithLabelValues(label(provider)).Set(float64(state))
}

// ForgetCircuit drops the circuit-breaker series of a provider that is no longer configured.
func (m *Metrics) ForgetCircuit(provider string) {
	if m == nil {
		return
	}
	m.circuit.DeleteLabelValues(label(provider))
}

// BudgetDenied counts a request refused because a budget was exhausted. scope is the
// budget's scope kind (key, project, team, organization), window its period (e.g. daily,
// monthly); neither is an id, so the series stay few.
func (m *Metrics) BudgetDenied(scope, window string) {
	if m == nil {
		return
	}
	m.budgetDenials.WithLabelValues(label(scope), label(window)).Inc()
}

// BudgetWarning counts a request admitted past a budget's warning threshold; scope is as
// for [Metrics.BudgetDenied].
func (m *Metrics) BudgetWarning(scope string) {
	if m == nil {
		return
	}
	m.budgetWarnings.WithLabelValues(label(scope)).Inc()
}

// RateLimited counts a request refused by a rate limit: rpm, tpm or rpd.
func (m *Metrics) RateLimited(limit string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(label(limit)).Inc()
}

// GuardrailVerdict counts one guardrail evaluation. guardrail is the guardrail's id,
// direction request or response, verdict one of allow, block, modify, error.
func (m *Metrics) GuardrailVerdict(guardrail, direction, verdict string) {
	if m == nil {
		return
	}
	m.guardrails.WithLabelValues(label(guardrail), label(direction), label(verdict)).Inc()
}

// CounterStoreError counts a failed operation on the shared counter store (op such as
// reserve, settle, release, rate_limit).
func (m *Metrics) CounterStoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(label(op)).Inc()
}

// ConfigApplied records that component (xds, extproc, dispatcher, envoy, …) applied config
// version. sluice_config_info{component,version} becomes 1 and the component's previous
// version series is deleted, so the gauge always names exactly the current version;
// sluice_config_applied_timestamp_seconds is set to now. lag is the time from the
// config's publication to its application; it is observed only when positive (a config
// loaded from disk at start has none).
func (m *Metrics) ConfigApplied(component, version string, lag time.Duration) {
	if m == nil {
		return
	}
	component, version = label(component), label(version)
	m.configMu.Lock()
	if old, ok := m.configVersions[component]; ok && old != version {
		m.configInfo.DeleteLabelValues(component, old)
	}
	m.configVersions[component] = version
	m.configInfo.WithLabelValues(component, version).Set(1)
	m.configMu.Unlock()
	m.configApplied.WithLabelValues(component).SetToCurrentTime()
	if lag > 0 {
		m.configLag.WithLabelValues(component).Observe(lag.Seconds())
	}
}
