package logging

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// AccessRecord is one request's access-log entry. Every string is an id, a configured
// name or a value from a fixed vocabulary: never a secret, a prompt, a header or a URL
// (the line is redacted anyway, but by shape).
type AccessRecord struct {
	RequestID string // the gateway-minted X-Sluice-Request-Id
	TraceID   string
	SpanID    string
	Route     string // endpoint name, e.g. chat_completions
	Method    string
	Status    int    // HTTP status sent to the client
	ErrorCode string // stable error code (invalid_api_key, …) for a refused or failed request

	KeyID          string // the virtual key's id, never its secret
	OrganizationID string
	TeamID         string
	ProjectID      string
	PrincipalID    string

	Model         string // the model that served the request
	Provider      string // the provider that served the request
	FallbackCount int

	InputTokens         int64 // uncached input tokens
	OutputTokens        int64
	CacheReadTokens     int64
	CacheCreationTokens int64
	CostNanoUSD         int64 // logged as cost_usd, a decimal string of dollars

	Duration         time.Duration // arrival to last response byte
	ProviderDuration time.Duration // waiting on providers, across attempts
	TimeToFirstToken time.Duration // arrival to first output token sent, when streamed

	Stream        bool
	CacheMode     string // respect, force or disable
	Guardrail     string // id of the guardrail that blocked the request
	BudgetWarning string // what X-Sluice-Budget-Warning carried
}

// Access-log field names. They are a contract with whoever ships and queries the logs:
// change them only with a note in the release.
const (
	fRequestID      = "request_id"
	fTraceID        = "trace_id"
	fSpanID         = "span_id"
	fRoute          = "route"
	fMethod         = "method"
	fStatus         = "status"
	fErrorCode      = "error_code"
	fKeyID          = "key_id"
	fOrgID          = "organization_id"
	fTeamID         = "team_id"
	fProjectID      = "project_id"
	fPrincipalID    = "principal_id"
	fModel          = "model"
	fProvider       = "provider"
	fFallbackCount  = "fallback_count"
	fInputTokens    = "input_tokens"
	fOutputTokens   = "output_tokens"
	fCacheRead      = "cache_read_tokens"
	fCacheCreation  = "cache_creation_tokens"
	fCostUSD        = "cost_usd"
	fDurationMS     = "duration_ms"
	fProviderMS     = "provider_ms"
	fTTFTMS         = "ttft_ms"
	fStream         = "stream"
	fCacheMode      = "cache_mode"
	fGuardrail      = "guardrail"
	fBudgetWarning  = "budget_warning"
	accessMessage   = "access"
	accessFieldsMax = 27
)

// AccessLog writes r as one INFO record with message "access" and the fields named in
// AccessRecord's snake_case form (cost_usd, duration_ms, provider_ms, ttft_ms for the
// converted ones). request_id, route, method, status and duration_ms are always present;
// every other field is omitted when zero. Durations are milliseconds with microsecond
// precision. A nil l logs nothing.
func AccessLog(l *slog.Logger, r AccessRecord) {
	ctx := context.Background()
	if l == nil || !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var buf [accessFieldsMax]slog.Attr
	a := buf[:0]
	str := func(k, v string) {
		if v != "" {
			a = append(a, slog.String(k, v))
		}
	}
	num := func(k string, v int64) {
		if v != 0 {
			a = append(a, slog.Int64(k, v))
		}
	}
	ms := func(k string, d time.Duration) {
		if d != 0 {
			a = append(a, slog.Float64(k, millis(d)))
		}
	}
	a = append(a,
		slog.String(fRequestID, r.RequestID))
	str(fTraceID, r.TraceID)
	str(fSpanID, r.SpanID)
	a = append(a,
		slog.String(fRoute, r.Route),
		slog.String(fMethod, r.Method),
		slog.Int(fStatus, r.Status))
	str(fErrorCode, r.ErrorCode)
	str(fKeyID, r.KeyID)
	str(fOrgID, r.OrganizationID)
	str(fTeamID, r.TeamID)
	str(fProjectID, r.ProjectID)
	str(fPrincipalID, r.PrincipalID)
	str(fModel, r.Model)
	str(fProvider, r.Provider)
	num(fFallbackCount, int64(r.FallbackCount))
	num(fInputTokens, r.InputTokens)
	num(fOutputTokens, r.OutputTokens)
	num(fCacheRead, r.CacheReadTokens)
	num(fCacheCreation, r.CacheCreationTokens)
	if r.CostNanoUSD != 0 {
		a = append(a, slog.String(fCostUSD, formatUSD(r.CostNanoUSD)))
	}
	a = append(a, slog.Float64(fDurationMS, millis(r.Duration)))
	ms(fProviderMS, r.ProviderDuration)
	ms(fTTFTMS, r.TimeToFirstToken)
	if r.Stream {
		a = append(a, slog.Bool(fStream, true))
	}
	str(fCacheMode, r.CacheMode)
	str(fGuardrail, r.Guardrail)
	str(fBudgetWarning, r.BudgetWarning)
	l.LogAttrs(ctx, slog.LevelInfo, accessMessage, a...)
}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// formatUSD formats an amount of nano-USD as dollars with all nine decimals
// ("0.000123000"), exactly: no float is involved.
func formatUSD(n int64) string {
	var b [32]byte
	out := b[:0]
	u := uint64(n)
	if n < 0 {
		out = append(out, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	out = strconv.AppendUint(out, u/1e9, 10)
	out = append(out, '.')
	frac := u % 1e9
	for p := uint64(1e8); p > 0; p /= 10 {
		out = append(out, byte('0'+frac/p%10))
	}
	return string(out)
}
