package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/wire"
)

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("body %s is not JSON: %v", b, err)
	}
	return m
}

func TestOpenAIEnvelope(t *testing.T) {
	tests := []struct {
		status   int
		wantType string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{405, "invalid_request_error"},
		{413, "invalid_request_error"},
		{429, "rate_limit_error"},
		{500, "server_error"},
		{502, "server_error"},
		{503, "server_error"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			e := New(tt.status, "some_code", "Some message.")
			got := decode(t, e.Body(wire.OpenAI, "rid"))
			want := map[string]any{"error": map[string]any{
				"message": "Some message.", "type": tt.wantType, "code": "some_code", "param": nil,
			}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Body:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestOpenAIParam(t *testing.T) {
	e := New(400, "missing_model", "Name a model.")
	e.Param = "model"
	got := decode(t, e.Body(wire.OpenAI, ""))
	if p := got["error"].(map[string]any)["param"]; p != "model" {
		t.Errorf("param = %v, want \"model\"", p)
	}
}

func TestAnthropicEnvelope(t *testing.T) {
	tests := []struct {
		status   int
		wantType string
	}{
		{400, "invalid_request_error"},
		{401, "authentication_error"},
		{402, "billing_error"},
		{403, "permission_error"},
		{404, "not_found_error"},
		{405, "invalid_request_error"},
		{413, "request_too_large"},
		{429, "rate_limit_error"},
		{500, "api_error"},
		{502, "api_error"},
		{529, "overloaded_error"},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			e := New(tt.status, "some_code", "Some message.")
			got := decode(t, e.Body(wire.Anthropic, "rid-7"))
			want := map[string]any{
				"type":       "error",
				"error":      map[string]any{"type": tt.wantType, "message": "Some message.", "code": "some_code"},
				"request_id": "rid-7",
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Body:\n got %v\nwant %v", got, want)
			}
		})
	}
}

func TestInternalErrorHidesCause(t *testing.T) {
	const secret = "sk-sluice-CANARYCANARY"
	cause := fmt.Errorf("dial tcp 10.0.0.7:443: token %s refused", secret)
	e := As(cause)
	if e.Status != http.StatusInternalServerError || e.Code != "internal_error" {
		t.Fatalf("As(plain error) = %d %q, want 500 internal_error", e.Status, e.Code)
	}
	if !errors.Is(e, cause) {
		t.Errorf("As(plain error) does not wrap the cause")
	}
	for _, f := range []wire.Format{wire.OpenAI, wire.Anthropic} {
		t.Run(f.String(), func(t *testing.T) {
			body := string(e.Body(f, "rid-42"))
			for _, leak := range []string{secret, "dial tcp", "10.0.0.7"} {
				if strings.Contains(body, leak) {
					t.Errorf("body %s contains %q", body, leak)
				}
			}
			if !strings.Contains(body, "rid-42") {
				t.Errorf("body %s does not name the request id", body)
			}
			for _, ep := range []wire.Endpoint{wire.ChatCompletions, wire.Messages, wire.Responses} {
				ev := string(e.StreamEvent(f, ep, "rid-42"))
				if strings.Contains(ev, secret) {
					t.Errorf("stream event %s contains the secret", ev)
				}
			}
		})
	}
	// A user-facing error's message is rendered as is, with no request id appended.
	body := string(New(502, "upstream_unavailable", "No provider.").Body(wire.OpenAI, "rid-42"))
	if strings.Contains(body, "Request id") {
		t.Errorf("non-internal error body %s names the request id in its message", body)
	}
}

func TestAs(t *testing.T) {
	inner := New(http.StatusForbidden, "model_not_allowed", "Nope.")
	tests := []struct {
		name string
		err  error
		want *Error
	}{
		{"direct", inner, inner},
		{"wrapped once", fmt.Errorf("policy: %w", inner), inner},
		{"wrapped twice", fmt.Errorf("a: %w", fmt.Errorf("b: %w", inner)), inner},
		{"joined", errors.Join(errors.New("other"), inner), inner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := As(tt.err); got != tt.want {
				t.Errorf("As() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: 400, Code: "c", Message: "m"}
	if got, want := e.Error(), "c: m"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e.Cause = errors.New("why")
	if got, want := e.Error(), "c: m: why"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestStreamEvent(t *testing.T) {
	e := New(http.StatusBadGateway, "upstream_stream_error", "Cut.")
	tests := []struct {
		format wire.Format
		prefix string
	}{
		{wire.OpenAI, "data: "},
		{wire.Anthropic, "event: error\ndata: "},
	}
	for _, tt := range tests {
		t.Run(tt.format.String(), func(t *testing.T) {
			got := string(e.StreamEvent(tt.format, wire.ChatCompletions, "rid"))
			want := tt.prefix + string(e.Body(tt.format, "rid")) + "\n\n"
			if got != want {
				t.Errorf("StreamEvent = %q, want %q", got, want)
			}
			// Exactly one event: no blank line before the terminator.
			if strings.Count(got, "\n\n") != 1 {
				t.Errorf("StreamEvent %q is not exactly one event", got)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	rec.Header().Set("Content-Length", "999")
	e := New(http.StatusTooManyRequests, "rate_limited", "Slow down.")
	e.Write(rec, wire.Anthropic, "rid")
	if rec.Code != http.StatusTooManyRequests {
		t.Errorf("status = %d, want 429", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", got)
	}
	if got := rec.Header().Get("Content-Length"); got != "" {
		t.Errorf("stale Content-Length %q kept", got)
	}
	if got, want := rec.Body.String(), string(e.Body(wire.Anthropic, "rid")); got != want {
		t.Errorf("body = %s, want %s", got, want)
	}
}

// A Responses stream ends with response.failed, whatever broke it.
func TestStreamEventResponses(t *testing.T) {
	ev := string(New(502, "upstream_stream_error", "Cut.").StreamEvent(wire.OpenAI, wire.Responses, "rid"))
	want := `event: response.failed` + "\n" + `data: {"type":"response.failed","response":{"id":"resp_rid","object":"response","status":"failed","error":{"code":"upstream_stream_error","message":"Cut."}}}` + "\n\n"
	if ev != want {
		t.Errorf("got %q\nwant %q", ev, want)
	}
}
