package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// Rate limits, request policy and prompt-cache modes through real Envoy, each refusal in
// the OpenAI and the Anthropic dialect. (Budgets have their own gateways: budget_test.go.)

// governedKeys adds the keys these tests use to the shared gateway's config.
func governedKeys(addKey func(string, func(*config.Key))) {
	// One request a day: the second is refused whatever the clock does, short of midnight,
	// which the test tolerates.
	addKey("one-a-day", func(k *config.Key) { k.RateLimits = config.RateLimits{RPD: 1} })
	docs := []string{"^docs$"}
	addKey("ruled", func(k *config.Key) {
		k.PolicyRules = config.PolicyRules{
			Tools: config.RuleSet{Deny: []string{"^run_shell$"}},
			MCP:   config.RuleSet{Allow: &docs},
			URLs:  config.RuleSet{Deny: []string{`(?i)evil\.example`}},
		}
	})
	addKey("no-cache", func(k *config.Key) { k.CacheMode = config.CacheDisable })
}

// refusal is one request that must be refused with status and code.
type refusal struct {
	name      string
	anthropic bool
	body      string
	status    int
	code      string
	item      string // the message names it, when set
}

func (g *gateway) send(t *testing.T, anthropic bool, key, body string, extra map[string]string) (*http.Response, []byte) {
	t.Helper()
	h := map[string]string{"content-type": "application/json"}
	path := "/v1/chat/completions"
	if anthropic {
		path = "/v1/messages"
		h["x-api-key"], h["anthropic-version"] = key, "2023-06-01"
	} else {
		h["authorization"] = "Bearer " + key
	}
	for k, v := range extra {
		h[k] = v
	}
	return g.do(t, "POST", path, strings.NewReader(body), h)
}

// checkRefusal checks the status, the client's envelope with the stable code, and that the
// message names what was refused.
func checkRefusal(t *testing.T, resp *http.Response, body []byte, r refusal) {
	t.Helper()
	if resp.StatusCode != r.status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, r.status, body)
	}
	var env struct {
		Type  string `json:"type"`
		Error struct{ Type, Code, Message string }
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if r.anthropic != (env.Type == "error") || env.Error.Code != r.code || env.Error.Type == "" {
		t.Errorf("want the %s envelope with code %q, got %s", map[bool]string{true: "Anthropic", false: "OpenAI"}[r.anthropic], r.code, body)
	}
	if r.item != "" && !strings.Contains(env.Error.Message, r.item) {
		t.Errorf("message %q does not name %q", env.Error.Message, r.item)
	}
	if resp.Header.Get("x-sluice-request-id") == "" {
		t.Error("no x-sluice-request-id")
	}
}

func TestPolicyRefusals(t *testing.T) {
	g := startGateway(t)
	key := g.keys["ruled"]
	oaTool := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"run_shell","parameters":{}}}]}`
	anTool := `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"run_shell","input_schema":{"type":"object"}}]}`
	anMCP := `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"mcp_servers":[{"type":"url","name":"crm","url":"https://crm.example/mcp"}]}`
	oaMCP := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"mcp","server_label":"crm","server_url":"https://crm.example/mcp"}]}`
	oaURL := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"summarise https://EVIL.example/report."}]}`
	anURL := `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://evil.example/cat.png"}}]}]}`
	for _, r := range []refusal{
		{name: "openai tool", body: oaTool, status: 403, code: "tool_not_allowed", item: "run_shell"},
		{name: "anthropic tool", anthropic: true, body: anTool, status: 403, code: "tool_not_allowed", item: "run_shell"},
		{name: "openai mcp", body: oaMCP, status: 403, code: "mcp_not_allowed", item: "crm"},
		{name: "anthropic mcp", anthropic: true, body: anMCP, status: 403, code: "mcp_not_allowed", item: "crm"},
		{name: "openai url", body: oaURL, status: 403, code: "url_not_allowed", item: "https://evil.example/report"},
		{name: "anthropic url", anthropic: true, body: anURL, status: 403, code: "url_not_allowed", item: "https://evil.example/cat.png"},
	} {
		t.Run(r.name, func(t *testing.T) {
			resp, body := g.send(t, r.anthropic, key, r.body, nil)
			checkRefusal(t, resp, body, r)
		})
	}
	// What the rules allow is served.
	ok := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"see https://docs.example/x"}],"tools":[{"type":"function","function":{"name":"search","parameters":{}}}]}`
	if resp, body := g.send(t, false, key, ok, nil); resp.StatusCode != 200 {
		t.Errorf("an allowed request got %d: %s", resp.StatusCode, body)
	}
}

func TestRateLimitRefusals(t *testing.T) {
	g := startGateway(t)
	key := g.keys["one-a-day"]
	for _, anthropic := range []bool{false, true} {
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
		if anthropic {
			body = `{"model":"claude-sonnet-4-5","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`
		}
		// The first request of the day (or of a day that began meanwhile) is served.
		var resp *http.Response
		var raw []byte
		for range 3 {
			if resp, raw = g.send(t, anthropic, key, body, nil); resp.StatusCode != 200 {
				break
			}
		}
		checkRefusal(t, resp, raw, refusal{anthropic: anthropic, status: 429, code: "rate_limited", item: "rpd=1"})
		if ra := resp.Header.Get("retry-after"); ra == "" || ra == "0" {
			t.Errorf("retry-after = %q", ra)
		}
		if h := resp.Header.Get("x-sluice-rate-limit"); h != "VIRTUAL_KEY:"+g.keyIDs["one-a-day"]+" rpd=1" {
			t.Errorf("x-sluice-rate-limit = %q", h)
		}
	}
	if n := sum(scrape(t, g), "sluice_rate_limit_denials_total", `limit="rpd"`); n < 2 {
		t.Errorf("sluice_rate_limit_denials_total{limit=rpd} = %v, want at least the 2 refusals", n)
	}
}

func TestCacheModes(t *testing.T) {
	g := startGateway(t)
	cached := func(marker string) string {
		return `{"model":"claude-sonnet-4-5","max_tokens":16,"system":[{"type":"text","text":"Be terse.","cache_control":{"type":"ephemeral"}}],` +
			`"tools":[{"name":"lookup","input_schema":{"type":"object","properties":{"cache_control":{"type":"string"}}},"cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
			`"messages":[{"role":"user","content":[{"type":"text","text":"hi ` + marker + `","cache_control":{"type":"ephemeral"}}]}]}`
	}
	plain := func(marker string) string {
		return `{"model":"claude-sonnet-4-5","max_tokens":16,"system":"Be terse.","messages":[{"role":"user","content":"hi ` + marker + `"}]}`
	}
	received := func(t *testing.T, marker string) string {
		t.Helper()
		recs := g.fake.Requests(marker)
		if len(recs) != 1 {
			t.Fatalf("the provider received %d requests for %s", len(recs), marker)
		}
		return string(recs[0].Body)
	}
	for _, c := range []struct {
		name, key, header string
		body              func(string) string
		mode              string
		check             func(t *testing.T, sent, got string)
	}{
		{"respect forwards bytes", "main", "respect", cached, "respect", func(t *testing.T, sent, got string) {
			if got != sent {
				t.Errorf("respect changed the body:\nsent %s\ngot  %s", sent, got)
			}
		}},
		{"default is respect", "main", "", cached, "respect", func(t *testing.T, sent, got string) {
			if got != sent {
				t.Errorf("the default changed the body")
			}
		}},
		{"disable strips every breakpoint", "main", "disable", cached, "disable", func(t *testing.T, _, got string) {
			if n := strings.Count(got, `"cache_control":{"type":"ephemeral"`); n != 0 {
				t.Errorf("%d breakpoints left: %s", n, got)
			}
			if !strings.Contains(got, `"properties":{"cache_control":{"type":"string"}}`) {
				t.Errorf("a schema property named cache_control was stripped: %s", got)
			}
		}},
		{"a key's default", "no-cache", "", cached, "disable", func(t *testing.T, _, got string) {
			if strings.Contains(got, `"ephemeral"`) {
				t.Errorf("breakpoints left: %s", got)
			}
		}},
		{"force adds breakpoints", "main", "force", plain, "force", func(t *testing.T, _, got string) {
			if n := strings.Count(got, `"cache_control":{"type":"ephemeral"}`); n < 2 {
				t.Errorf("%d breakpoints added, want system and the last message: %s", n, got)
			}
			if !json.Valid([]byte(got)) {
				t.Errorf("invalid JSON upstream: %s", got)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			marker := newMarker()
			body := c.body(marker)
			var extra map[string]string
			if c.header != "" {
				extra = map[string]string{"x-sluice-cache": c.header}
			}
			resp, raw := g.send(t, true, g.keys[c.key], body, extra)
			if resp.StatusCode != 200 {
				t.Fatalf("%d: %s", resp.StatusCode, raw)
			}
			if got := resp.Header.Get("x-sluice-cache"); got != c.mode {
				t.Errorf("x-sluice-cache = %q, want %q", got, c.mode)
			}
			c.check(t, body, received(t, marker))
		})
	}
	for _, anthropic := range []bool{false, true} {
		body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
		if anthropic {
			body = plain(newMarker())
		}
		resp, raw := g.send(t, anthropic, g.keys["main"], body, map[string]string{"x-sluice-cache": "always"})
		checkRefusal(t, resp, raw, refusal{anthropic: anthropic, status: 400, code: "invalid_cache_mode"})
	}
}

// Every metered endpoint is priced from the provider's own usage, streamed or not: chat,
// Responses, messages and embeddings. The access log line names the cost.
func TestEveryEndpointPriced(t *testing.T) {
	g := startGateway(t)
	for _, c := range []struct {
		name, path, body string
		anthropic        bool
		want             string // cost_usd: the bundled price of the scripted usage
	}{
		// gpt-4o-mini: $0.15 in, $0.60 out per million: 1000×150 + 100×600 nano-USD.
		{"chat stream", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"MARK"}]}`, false, "0.000210000"},
		{"responses", "/v1/responses", `{"model":"gpt-4o-mini","input":"MARK"}`, false, "0.000210000"},
		{"responses stream", "/v1/responses", `{"model":"gpt-4o-mini","stream":true,"input":"MARK"}`, false, "0.000210000"},
		// claude-sonnet-4-5: $3 in, $15 out: 1000×3000 + 100×15000.
		{"messages stream", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"MARK"}]}`, true, "0.004500000"},
		// text-embedding-3-small: $0.02 per million input tokens.
		{"embeddings", "/v1/embeddings", `{"model":"text-embedding-3-small","input":"MARK"}`, false, "0.000020000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			marker := newMarker()
			g.fake.Script(marker, fakeprovider.Script{Usage: &fakeprovider.Usage{InputTokens: 1000, OutputTokens: 100}})
			h := map[string]string{"content-type": "application/json", "authorization": "Bearer " + g.keys["main"]}
			if c.anthropic {
				h["anthropic-version"] = "2023-06-01"
			}
			resp, body := g.do(t, "POST", c.path, strings.NewReader(strings.Replace(c.body, "MARK", marker, 1)), h)
			if resp.StatusCode != 200 {
				t.Fatalf("%d: %s", resp.StatusCode, body)
			}
			id := resp.Header.Get("x-sluice-request-id")
			deadline := time.Now().Add(5 * time.Second)
			for {
				if line := accessLine(g, id); line != nil {
					if line["cost_usd"] != c.want {
						t.Errorf("cost_usd = %v, want %s (line %v)", line["cost_usd"], c.want, line)
					}
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("no access log line for %s", id)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// accessLine finds the dispatcher's access log line of a request.
func accessLine(g *gateway, requestID string) map[string]any {
	for _, l := range strings.Split(g.logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"access"`) || !strings.Contains(l, requestID) {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["request_id"] == requestID && m["provider"] != nil {
			return m
		}
	}
	return nil
}
