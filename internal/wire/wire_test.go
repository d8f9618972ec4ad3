package wire

import "testing"

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		anthro bool
		want   Route
		wantOK bool
	}{
		{"chat", "/v1/chat/completions", false, Route{ChatCompletions, OpenAI, "POST", true}, true},
		{"chat with query", "/v1/chat/completions?api-version=2024-10-21", false, Route{ChatCompletions, OpenAI, "POST", true}, true},
		{"chat ignores anthropic-version", "/v1/chat/completions", true, Route{ChatCompletions, OpenAI, "POST", true}, true},
		{"messages", "/v1/messages", false, Route{Messages, Anthropic, "POST", true}, true},
		{"messages with query", "/v1/messages?beta=true", true, Route{Messages, Anthropic, "POST", true}, true},
		{"models openai", "/v1/models", false, Route{Models, OpenAI, "GET", false}, true},
		{"models anthropic", "/v1/models", true, Route{Models, Anthropic, "GET", false}, true},
		{"models anthropic with query", "/v1/models?limit=20", true, Route{Models, Anthropic, "GET", false}, true},
		{"empty query", "/v1/models?", false, Route{Models, OpenAI, "GET", false}, true},
		{"empty", "", false, Route{}, false},
		{"root", "/", false, Route{}, false},
		{"trailing slash", "/v1/chat/completions/", false, Route{}, false},
		{"no version", "/chat/completions", false, Route{}, false},
		{"count tokens", "/v1/messages/count_tokens", true, Route{CountTokens, Anthropic, "POST", true}, true},
		{"count tokens without anthropic-version", "/v1/messages/count_tokens", false, Route{CountTokens, Anthropic, "POST", true}, true},
		{"model by id", "/v1/models/gpt-4o", false, Route{Model, OpenAI, "GET", false}, true},
		{"model by id, anthropic", "/v1/models/claude-sonnet-4-5?x=1", true, Route{Model, Anthropic, "GET", false}, true},
		{"model without id", "/v1/models/", false, Route{}, false},
		{"embeddings", "/v1/embeddings", false, Route{Embeddings, OpenAI, "POST", true}, true},
		{"responses", "/v1/responses", false, Route{Responses, OpenAI, "POST", true}, true},
		{"responses compact", "/v1/responses/compact", false, Route{ResponsesCompact, OpenAI, "POST", true}, true},
		{"unserved", "/v1/files", false, Route{}, false},
		{"case matters", "/V1/chat/completions", false, Route{}, false},
		{"query only", "?/v1/models", false, Route{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Lookup(tt.path, tt.anthro)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("Lookup(%q, %v) = %+v, %v; want %+v, %v", tt.path, tt.anthro, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestFormatRoundTrip(t *testing.T) {
	for _, f := range []Format{OpenAI, Anthropic} {
		if got := ParseFormat(f.String()); got != f {
			t.Errorf("ParseFormat(%q) = %v, want %v", f.String(), got, f)
		}
	}
	if got := ParseFormat("gemini"); got != 0 {
		t.Errorf("ParseFormat(unknown) = %v, want 0", got)
	}
	if got := Format(0).String(); got != "unknown" {
		t.Errorf("Format(0).String() = %q, want unknown", got)
	}
}

func TestEndpointRoundTrip(t *testing.T) {
	tests := []struct {
		e    Endpoint
		name string
		path string
	}{
		{ChatCompletions, "chat_completions", "/v1/chat/completions"},
		{Messages, "messages", "/v1/messages"},
		{Models, "models", "/v1/models"},
		{Responses, "responses", "/v1/responses"},
		{ResponsesCompact, "responses_compact", "/v1/responses/compact"},
		{Embeddings, "embeddings", "/v1/embeddings"},
		{CountTokens, "count_tokens", "/v1/messages/count_tokens"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.name {
			t.Errorf("%d.String() = %q, want %q", tt.e, got, tt.name)
		}
		if got := ParseEndpoint(tt.name); got != tt.e {
			t.Errorf("ParseEndpoint(%q) = %v, want %v", tt.name, got, tt.e)
		}
		if got := tt.e.Path(); got != tt.path {
			t.Errorf("%v.Path() = %q, want %q", tt.e, got, tt.path)
		}
		// Path and Lookup agree.
		if r, ok := Lookup(tt.e.Path(), false); !ok || r.Endpoint != tt.e {
			t.Errorf("Lookup(%q) = %+v, %v; want endpoint %v", tt.e.Path(), r, ok, tt.e)
		}
	}
	if got := ParseEndpoint("files"); got != 0 {
		t.Errorf("ParseEndpoint(unknown) = %v, want 0", got)
	}
	if got := Endpoint(0).Path(); got != "" {
		t.Errorf("Endpoint(0).Path() = %q, want empty", got)
	}
	if got := Endpoint(0).String(); got != "unknown" {
		t.Errorf("Endpoint(0).String() = %q, want unknown", got)
	}
}

func TestModelID(t *testing.T) {
	for path, want := range map[string]string{"/v1/models/gpt-4o": "gpt-4o", "/v1/models/a/b?x": "a/b", "/v1/models": "", "/v1/chat": ""} {
		if got := ModelID(path); got != want {
			t.Errorf("ModelID(%q) = %q, want %q", path, got, want)
		}
	}
}
