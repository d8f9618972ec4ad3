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
)

// String returns the endpoint's stable name, as carried in the context token.
func (e Endpoint) String() string {
	switch e {
	case ChatCompletions:
		return "chat_completions"
	case Messages:
		return "messages"
	case Models:
		return "models"
	}
	return "unknown"
}

// ParseEndpoint is the inverse of [Endpoint.String]; it returns 0 for an unknown name.
func ParseEndpoint(s string) Endpoint {
	switch s {
	case "chat_completions":
		return ChatCompletions
	case "messages":
		return Messages
	case "models":
		return Models
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
// Sluice does not serve. hasAnthropicVersion selects the Anthropic shape of GET /v1/models.
func Lookup(path string, hasAnthropicVersion bool) (r Route, ok bool) {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	switch path {
	case "/v1/chat/completions":
		return Route{ChatCompletions, OpenAI, "POST", true}, true
	case "/v1/messages":
		return Route{Messages, Anthropic, "POST", true}, true
	case "/v1/models":
		f := OpenAI
		if hasAnthropicVersion {
			f = Anthropic
		}
		return Route{Models, f, "GET", false}, true
	}
	return Route{}, false
}

// Path returns the provider-side path of an endpoint in format f.
func (e Endpoint) Path() string {
	switch e {
	case ChatCompletions:
		return "/v1/chat/completions"
	case Messages:
		return "/v1/messages"
	case Models:
		return "/v1/models"
	}
	return ""
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
