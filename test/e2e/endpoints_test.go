package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// The endpoints coding CLIs probe besides chat: a model's own entry, token counting, and the
// Responses WebSocket attempt Codex makes first.

func TestModelByID(t *testing.T) {
	g := startGateway(t)
	key := g.keys["mini-only"]
	resp, body := g.do(t, "GET", "/v1/models/gpt-4o-mini", nil, map[string]string{"authorization": "Bearer " + key})
	var m struct{ ID, Object string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &m) != nil || m.ID != "gpt-4o-mini" || m.Object != "model" {
		t.Errorf("allowed model: %d %s", resp.StatusCode, body)
	}
	resp, body = g.do(t, "GET", "/v1/models/gpt-4o-mini", nil, map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"})
	var a struct{ Type, ID string }
	if resp.StatusCode != 200 || json.Unmarshal(body, &a) != nil || a.Type != "model" || a.ID != "gpt-4o-mini" {
		t.Errorf("allowed model, Anthropic shape: %d %s", resp.StatusCode, body)
	}
	// A model the key may not call is not found: a key cannot probe what others may use.
	resp, body = g.do(t, "GET", "/v1/models/gpt-4o", nil, map[string]string{"authorization": "Bearer " + key})
	checkRefusal(t, resp, body, refusal{status: 404, code: "model_not_found"})
	resp, body = g.do(t, "GET", "/v1/models/claude-sonnet-4-5", nil, map[string]string{"x-api-key": key, "anthropic-version": "2023-06-01"})
	checkRefusal(t, resp, body, refusal{anthropic: true, status: 404, code: "model_not_found"})
}

func TestCountTokens(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	body := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"count me ` + marker + `"}]}`
	}
	h := map[string]string{"x-api-key": g.keys["main"], "anthropic-version": "2023-06-01", "content-type": "application/json"}
	// Anthropic-backed: the provider counts.
	resp, raw := g.do(t, "POST", "/v1/messages/count_tokens", strings.NewReader(body("claude-sonnet-4-5")), h)
	var c struct {
		InputTokens int `json:"input_tokens"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &c) != nil || c.InputTokens <= 0 || resp.Header.Get("x-sluice-token-count") != "" {
		t.Errorf("anthropic-backed: %d %s", resp.StatusCode, raw)
	}
	if n := len(g.fake.Requests(marker)); n != 1 {
		t.Errorf("the provider got %d count_tokens requests", n)
	}
	// OpenAI-backed: the gateway estimates, and says so.
	resp, raw = g.do(t, "POST", "/v1/messages/count_tokens", strings.NewReader(body("gpt-4o-mini")), h)
	if resp.StatusCode != 200 || json.Unmarshal(raw, &c) != nil || c.InputTokens <= 0 || resp.Header.Get("x-sluice-token-count") != "estimate" {
		t.Errorf("openai-backed: %d %s (x-sluice-token-count %q)", resp.StatusCode, raw, resp.Header.Get("x-sluice-token-count"))
	}
	if n := len(g.fake.Requests(marker)); n != 1 {
		t.Errorf("an OpenAI provider was asked to count tokens")
	}
}

func TestResponsesWebSocketRefused(t *testing.T) {
	g := startGateway(t)
	for _, h := range []map[string]string{
		{"authorization": "Bearer " + g.keys["main"]},
		// As Codex sends it: a WebSocket upgrade.
		{"authorization": "Bearer " + g.keys["main"], "connection": "Upgrade", "upgrade": "websocket",
			"sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="},
	} {
		resp, body := g.do(t, "GET", "/v1/responses", nil, h)
		checkRefusal(t, resp, body, refusal{status: 426, code: "websocket_not_supported"})
	}
}
