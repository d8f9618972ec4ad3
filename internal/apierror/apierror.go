// Package apierror is the one user-facing error type of Sluice and its rendering in each
// client's own dialect. Only values of this type reach clients; anything else becomes a
// generic internal error that names the request id, never the Go error text.
package apierror

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sluice-gateway/sluice/internal/wire"
)

// Error is a user-facing error: an HTTP status, a stable machine code, a public message,
// and an optional internal cause that is never rendered.
type Error struct {
	Status  int
	Code    string // stable machine code, e.g. "invalid_api_key"
	Message string // public text; must never contain a secret
	Param   string // OpenAI "param", optional
	Cause   error  // internal; logged, never rendered
}

func (e *Error) Error() string {
	if e.Cause != nil {
		return e.Code + ": " + e.Message + ": " + e.Cause.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Cause }

// New returns a user-facing error.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

// Common errors.
var (
	ErrInvalidAPIKey = New(http.StatusUnauthorized, "invalid_api_key", "Invalid or missing API key.")
	ErrNotFound      = New(http.StatusNotFound, "not_found", "Unknown endpoint.")
)

// As returns err as a user-facing error, or a generic 500 that carries err as its cause.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal_error",
		Message: "Internal gateway error.", Cause: err}
}

// openAIType maps a status to OpenAI's error "type" values.
func openAIType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status >= 500:
		return "server_error"
	}
	return "invalid_request_error"
}

// anthropicType maps a status to Anthropic's error "type" values.
func anthropicType(status int) string {
	switch {
	case status == http.StatusBadRequest:
		return "invalid_request_error"
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusPaymentRequired:
		return "billing_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusNotFound:
		return "not_found_error"
	case status == http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == 529:
		return "overloaded_error"
	case status >= 500:
		return "api_error"
	}
	return "invalid_request_error"
}

type openAIBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    string  `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

type anthropicBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
		Code    string `json:"code,omitempty"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// Body renders e in format f. requestID is appended to generic internal errors so an
// operator can find the log line.
func (e *Error) Body(f wire.Format, requestID string) []byte {
	msg := e.Message
	if e.Status >= 500 && e.Code == "internal_error" && requestID != "" {
		msg += " Request id: " + requestID + "."
	}
	var v any
	if f == wire.Anthropic {
		var b anthropicBody
		b.Type = "error"
		b.Error.Type = anthropicType(e.Status)
		b.Error.Message = msg
		b.Error.Code = e.Code
		b.RequestID = requestID
		v = &b
	} else {
		var b openAIBody
		b.Error.Message = msg
		b.Error.Type = openAIType(e.Status)
		b.Error.Code = e.Code
		if e.Param != "" {
			p := e.Param
			b.Error.Param = &p
		}
		v = &b
	}
	out, err := json.Marshal(v)
	if err != nil { // cannot happen: plain strings only
		return []byte(`{"error":{"message":"Internal gateway error.","type":"server_error","code":"internal_error"}}`)
	}
	return out
}

// Write renders e in format f to w with the right content type and length.
func (e *Error) Write(w http.ResponseWriter, f wire.Format, requestID string) {
	body := e.Body(f, requestID)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// StreamEvent renders e as the final event of a server-sent-events stream in format f at
// endpoint ep, for a stream that breaks after its first byte reached the client: the
// client's SDK then surfaces an error instead of mistaking a cut stream for a complete
// answer. A Responses stream ends with response.failed, the terminal event its clients
// wait for.
func (e *Error) StreamEvent(f wire.Format, ep wire.Endpoint, requestID string) []byte {
	if ep == wire.Responses {
		var ev struct {
			Type     string `json:"type"`
			Response struct {
				ID     string `json:"id"`
				Object string `json:"object"`
				Status string `json:"status"`
				Error  struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			} `json:"response"`
		}
		ev.Type = "response.failed"
		ev.Response.ID, ev.Response.Object, ev.Response.Status = "resp_"+requestID, "response", "failed"
		ev.Response.Error.Code, ev.Response.Error.Message = e.Code, e.Message
		b, _ := json.Marshal(&ev) // plain strings: cannot fail
		return append(append([]byte("event: response.failed\ndata: "), b...), "\n\n"...)
	}
	body := e.Body(f, requestID)
	out := make([]byte, 0, len(body)+24)
	if f == wire.Anthropic {
		out = append(out, "event: error\ndata: "...)
	} else {
		out = append(out, "data: "...)
	}
	out = append(out, body...)
	return append(out, "\n\n"...)
}
