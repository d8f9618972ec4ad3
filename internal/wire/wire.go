// Package wire names the client-facing wire formats, the endpoints Sluice serves and the
// headers that only Sluice may set. Every process uses these names so that extproc, the
// dispatcher and the tests agree on them.
package wire

import "strings"

// Format is a client (or provider) wire format.
type Format uint8

const (
	// OpenAI is the OpenAI REST format (chat completions, models, …).
	OpenAI Format = iota + 1
	// Anthropic is the Anthropic Messages format.
	Anthropic
)

// String returns the format's stable name, as carried in the context token.
func (f Format) String() string {
	switch f {
	case OpenAI:
		return "openai"
	case Anthropic:
		return "anthropic"
	}
	return "unknown"
}

// ParseFormat is the inverse of [Format.String]; it returns 0 for an unknown name.
func ParseFormat(s string) Format {
	switch s {
	case "openai":
		return OpenAI
	case "anthropic":
		return Anthropic
	}
	return 0
}

// Endpoint is one API operation Sluice serves.
type Endpoint uint8

const (
	// ChatCompletions is POST /v1/chat/completions (OpenAI format).
	ChatCompletions Endpoint = iota + 1
	// Messages is POST /v1/messages (Anthropic format).
	Messages
	// Models is GET /v1/models, in the format the client speaks.
	Models
	// Responses is POST /v1/responses (OpenAI format).
	Responses
	// ResponsesCompact is POST /v1/responses/compact (OpenAI format).
	ResponsesCompact
	// Embeddings is POST /v1/embeddings (OpenAI format).
	Embeddings
	// CountTokens is POST /v1/messages/count_tokens (Anthropic format).
	CountTokens
	// Model is GET /v1/models/{id}, in the format the client speaks.
	Model
)

// endpoints lists every endpoint with its stable name and provider-side path.
var endpoints = [...]struct{ name, path string }{
	ChatCompletions:  {"chat_completions", "/v1/chat/completions"},
	Messages:         {"messages", "/v1/messages"},
	Models:           {"models", "/v1/models"},
	Responses:        {"responses", "/v1/responses"},
	ResponsesCompact: {"responses_compact", "/v1/responses/compact"},
	Embeddings:       {"embeddings", "/v1/embeddings"},
	CountTokens:      {"count_tokens", "/v1/messages/count_tokens"},
	Model:            {"model", "/v1/models/"},
}

// String returns the endpoint's stable name, as carried in the context token.
func (e Endpoint) String() string {
	if e == 0 || int(e) >= len(endpoints) {
		return "unknown"
	}
	return endpoints[e].name
}

// ParseEndpoint is the inverse of [Endpoint.String]; it returns 0 for an unknown name.
func ParseEndpoint(s string) Endpoint {
	for e := ChatCompletions; int(e) < len(endpoints); e++ {
		if endpoints[e].name == s {
			return e
		}
	}
	return 0
}

// Route is what a request path resolves to.
type Route struct {
	Endpoint Endpoint
	Format   Format
	// Method is the only HTTP method the endpoint accepts.
	Method string
	// HasBody reports whether the endpoint takes a JSON body carrying the model.
	HasBody bool
}

// Lookup resolves a request path (query string allowed) to a route. ok is false for a path
// Sluice does not serve. hasAnthropicVersion selects the Anthropic shape of GET /v1/models
// and GET /v1/models/{id}.
func Lookup(path string, hasAnthropicVersion bool) (r Route, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	listing := OpenAI
	if hasAnthropicVersion {
		listing = Anthropic
	}
	switch path {
	case "/v1/chat/completions":
		return Route{ChatCompletions, OpenAI, "POST", true}, true
	case "/v1/messages":
		return Route{Messages, Anthropic, "POST", true}, true
	case "/v1/messages/count_tokens":
		return Route{CountTokens, Anthropic, "POST", true}, true
	case "/v1/responses":
		return Route{Responses, OpenAI, "POST", true}, true
	case "/v1/responses/compact":
		return Route{ResponsesCompact, OpenAI, "POST", true}, true
	case "/v1/embeddings":
		return Route{Embeddings, OpenAI, "POST", true}, true
	case "/v1/models":
		return Route{Models, listing, "GET", false}, true
	}
	if id, found := strings.CutPrefix(path, "/v1/models/"); found && id != "" {
		return Route{Model, listing, "GET", false}, true
	}
	return Route{}, false
}

// ModelID is the model a GET /v1/models/{id} path names ("" for any other path).
func ModelID(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	id, _ := strings.CutPrefix(path, "/v1/models/")
	if id == path {
		return ""
	}
	return id
}

// Path returns the provider-side path of an endpoint ("/v1/models/" for Model, which the
// caller completes with the id).
func (e Endpoint) Path() string {
	if e == 0 || int(e) >= len(endpoints) {
		return ""
	}
	return endpoints[e].path
}

// Metered reports whether the endpoint's answers carry token usage that costs money.
func (e Endpoint) Metered() bool {
	switch e {
	case ChatCompletions, Messages, Responses, ResponsesCompact, Embeddings:
		return true
	}
	return false
}

// Header names. Lower case, as Envoy and HTTP/2 carry them.
const (
	// HeaderRequestID is minted by Sluice for every request and returned on every response.
	HeaderRequestID = "x-sluice-request-id"
	// HeaderContext carries the signed decision from extproc to the dispatcher.
	HeaderContext = "x-sluice-ctx"
	// HeaderFallbackCount is the number of failed attempts before the one that answered.
	HeaderFallbackCount = "x-sluice-fallback-count"
	// HeaderTraceID and HeaderSpanID name the request's trace and its gateway span.
	HeaderTraceID = "x-sluice-trace-id"
	HeaderSpanID  = "x-sluice-span-id"
	// HeaderCache is the client's prompt-cache mode (respect, force or disable) on a
	// request, and the mode that applied on its response.
	HeaderCache = "x-sluice-cache"
	// HeaderBudgetWarning names each budget at 80 % or more of its limit: "SCOPE:id:pct",
	// comma-separated.
	HeaderBudgetWarning = "x-sluice-budget-warning"
	// HeaderRateLimit names the limit a 429 rate_limited hit: "SCOPE:id rpm=60".
	HeaderRateLimit = "x-sluice-rate-limit"
	// HeaderPrefix is the prefix of every header only Sluice may set; extproc strips
	// client-sent copies.
	HeaderPrefix = "x-sluice-"
)
