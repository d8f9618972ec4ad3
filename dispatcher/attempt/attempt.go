// Package attempt defines one provider attempt as the dispatcher's lanes see it: what to
// send, and how it ended. The dispatcher walks the provider chain and hands each attempt to
// the passthrough lane (same wire format) or the translation lane (Bifrost).
package attempt

import (
	"net/http"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Provider is one configured provider, compiled. Read-only once published.
type Provider struct {
	ID      string
	Type    config.ProviderType
	BaseURL string // scheme://host[:port][/prefix], without a trailing slash or "/v1"
	APIKey  string // secret: never log or render
	// Limits caps the traffic sent to the provider across every key.
	Limits config.RateLimits
	// Prices overrides the bundled price table for this provider.
	Prices pricing.Overrides
	// Timeouts bound each attempt; zero values take the lane's defaults.
	Timeouts config.Timeouts
	// Azure is an Azure OpenAI provider's deployment map and API version.
	Azure config.AzureConfig
	// Region is a bedrock or vertex provider's region, Project a vertex provider's Google
	// Cloud project ("" for the service-account key's own).
	Region, Project string
}

// Request is one attempt at one provider. Every field is read-only for the lane: retries
// reuse the same Request with another provider.
type Request struct {
	RequestID    string
	ClientFormat wire.Format
	Endpoint     wire.Endpoint
	Provider     *Provider
	Model        string // model name to send to this provider
	Try          int    // 0 for the first attempt at this provider, then 1, 2… for retries
	Stream       bool
	Body         []byte      // the client's request body, as received
	Header       http.Header // client headers, client credential and x-sluice-* removed
	RawQuery     string      // the client's query string, e.g. "beta=true"
}

// Result says how an attempt ended.
type Result struct {
	// Status is the HTTP status the provider answered with (0 when no response arrived).
	Status int
	// Committed reports whether any part of the response (status line included) reached the
	// client. A committed attempt is final: no fallback may follow it.
	Committed bool
	// Retryable reports whether, when not committed, the next provider may be tried:
	// 5xx, 429, timeouts, network errors.
	Retryable bool
	// When not committed, the response to relay if this is the last attempt: the provider's
	// error status, headers and body (already in the client's format for translated
	// requests, verbatim for passthrough).
	Header http.Header
	Body   []byte
	// Abort asks the dispatcher to abort the client's connection: a committed answer was
	// cut where no error can be written in band (a JSON body), so it must not look complete.
	Abort bool
	// Timeout marks an attempt that failed because the provider was too slow: to connect,
	// to send its first byte, or between stream chunks.
	Timeout bool
	// Err is the internal cause, for logs only.
	Err error

	// What the provider said about the attempt, for tracing, metering and pricing. A lane
	// reads it from the response it relays and never holds a byte back to do so; a stream cut
	// short reports what arrived before the cut.

	// Usage is the provider's own token counts for a committed attempt (zero when it
	// reported none, and for an uncommitted attempt).
	Usage Usage
	// ResponseModel is the model the provider says answered ("model" in its response), when
	// it said.
	ResponseModel string
	// FinishReasons are the provider's finish or stop reasons in the client's vocabulary
	// ("stop", "tool_calls", "end_turn", …), in choice order, one per choice that reported
	// one.
	FinishReasons []string
	// FirstByte is when the first byte of the provider's response arrived (zero when none
	// did); Done is when the attempt ended, a stream's end or cut included. Both are set
	// on every attempt that got that far, committed or not.
	FirstByte, Done time.Time
}
