// Package attempt defines one provider attempt as the dispatcher's lanes see it: what to
// send, and how it ended. The dispatcher walks the provider chain and hands each attempt to
// the passthrough lane (same wire format) or the translation lane (Bifrost).
package attempt

import (
	"net/http"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Provider is one configured provider, compiled. Read-only once published.
type Provider struct {
	ID      string
	Type    config.ProviderType
	BaseURL string // scheme://host[:port][/prefix], without a trailing slash or "/v1"
	APIKey  string // secret: never log or render
}

// Request is one attempt at one provider. Every field is read-only for the lane: retries
// reuse the same Request with another provider.
type Request struct {
	RequestID    string
	ClientFormat wire.Format
	Endpoint     wire.Endpoint
	Provider     *Provider
	Model        string // model name to send to this provider
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
	// Err is the internal cause, for logs only.
	Err error
}
