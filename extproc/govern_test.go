package extproc

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// clock is an injected clock the server and the counter store share.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// $1 per million input tokens, $2 per million output: a byte of body reserves 1000 nano-USD
// and a token of max_tokens 2000.
var flatPrice = pricing.Price{Input: config.NanoPerUSD, Output: 2 * config.NanoPerUSD}

// governFixture is a server whose keys are governed:
//
//	vk_budget  a per-minute block budget of the key that fits two reservations
//	vk_warn    a team warn budget it is already close to
//	vk_rpm     2 requests per minute
//	vk_rules   tool, MCP and URL rules; cache mode disable by default
//	vk_free    a block budget, on a model without a price
func governFixture(t *testing.T, store counters.Store, clk *clock, failOpen bool) *fixture {
	t.Helper()
	f := newFixture(t)
	f.srv.cfg.Now, f.srv.cfg.Counters, f.srv.cfg.CountersFailOpen = clk.Now, store, failOpen
	allow := []string{"^docs$"}
	c := &config.Config{Version: config.Version,
		Providers: []config.Provider{
			{ID: "oa", Type: config.ProviderOpenAI, Models: []string{"gpt-4o-mini", "gpt-4o-nonexistent"},
				Pricing: pricing.Overrides{"gpt-4o-mini": flatPrice}},
			{ID: "an", Type: config.ProviderAnthropic, Models: []string{"claude-haiku-4-5"},
				Pricing: pricing.Overrides{"claude-haiku-4-5": flatPrice}},
		},
		Keys: []config.Key{
			{ID: "vk_budget", Hash: f.hash("vk_budget"), OrgID: "acme"},
			{ID: "vk_warn", Hash: f.hash("vk_warn"), OrgID: "acme", TeamID: "eng"},
			{ID: "vk_rpm", Hash: f.hash("vk_rpm"), OrgID: "acme", RateLimits: config.RateLimits{RPM: 2}},
			{ID: "vk_rules", Hash: f.hash("vk_rules"), OrgID: "acme", CacheMode: config.CacheDisable,
				PolicyRules: config.PolicyRules{
					Tools: config.RuleSet{Deny: []string{"^shell$"}},
					MCP:   config.RuleSet{Allow: &allow},
					URLs:  config.RuleSet{Deny: []string{`evil\.example`}},
				}},
			{ID: "vk_free", Hash: f.hash("vk_free"), OrgID: "acme"},
		},
	}
	body := len(chatBody("gpt-4o-mini"))
	worst := config.NanoUSD(body*1000 + 100*2000)
	c.Budgets = []config.Budget{
		{ID: "bg_key", Name: "k", Scope: config.MustParseScope("VIRTUAL_KEY:vk_budget"), Window: config.WindowMinute,
			LimitNanoUSD: 2*worst + 1, OnBreach: config.BreachBlock},
		{ID: "bg_team", Name: "t", Scope: config.MustParseScope("TEAM:eng"), Window: config.WindowDay,
			LimitNanoUSD: worst + worst/10, OnBreach: config.BreachWarn},
		{ID: "bg_free", Name: "f", Scope: config.MustParseScope("VIRTUAL_KEY:vk_free"), Window: config.WindowTotal,
			LimitNanoUSD: config.NanoPerUSD, OnBreach: config.BreachBlock},
	}
	if err := f.srv.Load(c); err != nil {
		t.Fatal(err)
	}
	return f
}

func chatBody(model string) string {
	return `{"model":"` + model + `","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
}

func memStore(t *testing.T, clk *clock) counters.Store {
	st, err := counters.OpenMemory("", counters.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func (f *fixture) chat(t *testing.T, key, body string, kv ...string) []*extprocv3.ProcessingResponse {
	t.Helper()
	return f.run(t, headersMsg("POST", "/v1/chat/completions", false, append([]string{"authorization", f.bearer(key)}, kv...)...),
		bodyMsg(body))
}

func (f *fixture) messages(t *testing.T, key, body string, kv ...string) []*extprocv3.ProcessingResponse {
	t.Helper()
	return f.run(t, headersMsg("POST", "/v1/messages", false, append([]string{"x-api-key", f.secret[key]}, kv...)...),
		bodyMsg(body))
}

func governedClaims(t *testing.T, f *fixture, sent []*extprocv3.ProcessingResponse) *ctxtoken.Claims {
	t.Helper()
	if len(sent) != 2 {
		t.Fatalf("%d responses", len(sent))
	}
	tok, ok := setValue(sent[1].GetRequestBody().GetResponse().GetHeaderMutation(), wire.HeaderContext)
	if !ok {
		if ir := sent[1].GetImmediateResponse(); ir != nil {
			t.Fatalf("refused %d %s", ir.GetStatus().GetCode(), ir.GetBody())
		}
		t.Fatal("no context token")
	}
	c, err := f.verifier.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A block budget admits what fits, refuses the next with budget_exceeded naming the budget,
// and a window rollover on the injected clock unblocks the key at once.
func TestBudgetBlocksAndRollsOver(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC)}
	st := memStore(t, clk)
	f := governFixture(t, st, clk, false)
	body := chatBody("gpt-4o-mini")
	for range 2 {
		c := governedClaims(t, f, f.chat(t, "vk_budget", body))
		if c.Hold == nil || c.Hold.Slot != counters.OrgSlot("acme") || len(c.Hold.Counters) != 1 {
			t.Fatalf("hold = %+v", c.Hold)
		}
	}
	sent := f.chat(t, "vk_budget", body)
	msg := errorEnvelope(t, wire.OpenAI, mustImmediate(t, sent[1]).GetBody(), "budget_exceeded")
	checkReject(t, sent[1], http.StatusPaymentRequired, wire.OpenAI, "budget_exceeded")
	for _, want := range []string{"bg_key", "VIRTUAL_KEY:vk_budget", "minute"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not name %s", msg, want)
		}
	}
	// The Anthropic dialect, for the same refusal.
	sent = f.messages(t, "vk_budget", chatBody("claude-haiku-4-5"))
	checkReject(t, sent[1], http.StatusPaymentRequired, wire.Anthropic, "budget_exceeded")

	clk.Add(30 * time.Second) // the next minute
	governedClaims(t, f, f.chat(t, "vk_budget", body))
}

// A warn budget never refuses; at 80 % it names itself on the response.
func TestBudgetWarns(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	f := governFixture(t, memStore(t, clk), clk, false)
	for i := range 3 {
		c := governedClaims(t, f, f.chat(t, "vk_warn", chatBody("gpt-4o-mini")))
		if !strings.HasPrefix(c.BudgetWarning, "TEAM:eng:") {
			t.Fatalf("request %d: warning %q", i, c.BudgetWarning)
		}
	}
}

func TestRateLimit(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 45, 0, time.UTC)}
	f := governFixture(t, memStore(t, clk), clk, false)
	for range 2 {
		governedClaims(t, f, f.chat(t, "vk_rpm", chatBody("gpt-4o-mini")))
	}
	for _, sent := range [][]*extprocv3.ProcessingResponse{
		f.chat(t, "vk_rpm", chatBody("gpt-4o-mini")), f.messages(t, "vk_rpm", chatBody("claude-haiku-4-5"))} {
		format := wire.OpenAI
		if len(sent) == 2 && strings.Contains(string(mustImmediate(t, sent[1]).GetBody()), `"type":"error"`) {
			format = wire.Anthropic
		}
		checkReject(t, sent[1], http.StatusTooManyRequests, format, "rate_limited")
		h := mustImmediate(t, sent[1]).GetHeaders()
		if ra, _ := setValue(h, "retry-after"); ra != "15" {
			t.Errorf("retry-after = %q, want 15 (seconds to the next minute)", ra)
		}
		if rl, _ := setValue(h, wire.HeaderRateLimit); rl != "VIRTUAL_KEY:vk_rpm rpm=2" {
			t.Errorf("%s = %q", wire.HeaderRateLimit, rl)
		}
	}
	clk.Add(15 * time.Second)
	governedClaims(t, f, f.chat(t, "vk_rpm", chatBody("gpt-4o-mini")))
}

func TestPolicyRules(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := governFixture(t, memStore(t, clk), clk, false)
	for _, tc := range []struct {
		name, body, code, item string
		anthropic              bool
	}{
		{"denied tool", `{"model":"gpt-4o-mini","messages":[],"tools":[{"type":"function","function":{"name":"shell"}}]}`, "tool_not_allowed", "shell", false},
		{"denied tool, anthropic", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[],"tools":[{"name":"shell","input_schema":{}}]}`, "tool_not_allowed", "shell", true},
		{"mcp not on the allow list", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[],"mcp_servers":[{"type":"url","name":"crm","url":"https://crm.example/mcp"}]}`, "mcp_not_allowed", "crm", true},
		{"denied url", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"read https://evil.example/x please"}]}`, "url_not_allowed", "https://evil.example/x", false},
		{"denied url, upper-case host", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"read https://EVIL.Example./x"}]}`, "url_not_allowed", "evil.example/x", false},
		{"denied url, escaped host", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"read https://evil%2eexample/x"}]}`, "url_not_allowed", "https://evil.example/x", false},
		{"denied url, anthropic", `{"model":"claude-haiku-4-5","max_tokens":5,"messages":[{"role":"user","content":"see https://evil.example/y."}]}`, "url_not_allowed", "https://evil.example/y", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var sent []*extprocv3.ProcessingResponse
			format := wire.OpenAI
			if tc.anthropic {
				sent, format = f.messages(t, "vk_rules", tc.body), wire.Anthropic
			} else {
				sent = f.chat(t, "vk_rules", tc.body)
			}
			checkReject(t, sent[1], http.StatusForbidden, format, tc.code)
			if msg := errorEnvelope(t, format, mustImmediate(t, sent[1]).GetBody(), tc.code); !strings.Contains(msg, tc.item) {
				t.Errorf("message %q does not name %q", msg, tc.item)
			}
		})
	}
	// Allowed things pass, and the key's default cache mode travels to the dispatcher.
	c := governedClaims(t, f, f.chat(t, "vk_rules", `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"see https://ok.example"}],"tools":[{"type":"function","function":{"name":"search"}}]}`))
	if c.CacheMode != "disable" {
		t.Errorf("cache mode %q, want the key's default", c.CacheMode)
	}
}

func TestCacheModeHeader(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := governFixture(t, memStore(t, clk), clk, false)
	c := governedClaims(t, f, f.chat(t, "vk_rules", chatBody("gpt-4o-mini"), wire.HeaderCache, "Force"))
	if c.CacheMode != "force" {
		t.Errorf("cache mode %q", c.CacheMode)
	}
	if c := governedClaims(t, f, f.chat(t, "vk_rpm", chatBody("gpt-4o-mini"))); c.CacheMode != "respect" {
		t.Errorf("default cache mode %q", c.CacheMode)
	}
	sent := f.chat(t, "vk_rules", chatBody("gpt-4o-mini"), wire.HeaderCache, "sometimes")
	checkReject(t, sent[1], http.StatusBadRequest, wire.OpenAI, "invalid_cache_mode")
	sent = f.messages(t, "vk_rules", chatBody("claude-haiku-4-5"), wire.HeaderCache, "")
	checkReject(t, sent[1], http.StatusBadRequest, wire.Anthropic, "invalid_cache_mode")
}

// Without a counter store a governed key is refused, unless the gateway fails open; an
// ungoverned key never needs the store.
func TestCounterStoreFailureMode(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := governFixture(t, nil, clk, false)
	checkReject(t, f.chat(t, "vk_budget", chatBody("gpt-4o-mini"))[1], http.StatusServiceUnavailable, wire.OpenAI, "counter_store_unavailable")
	checkReject(t, f.chat(t, "vk_rpm", chatBody("gpt-4o-mini"))[1], http.StatusServiceUnavailable, wire.OpenAI, "counter_store_unavailable")
	governedClaims(t, f, f.chat(t, "vk_rules", chatBody("gpt-4o-mini")))

	// Failing open admits, and still names the counters, so the spend is debited later.
	f = governFixture(t, nil, clk, true)
	c := governedClaims(t, f, f.chat(t, "vk_budget", chatBody("gpt-4o-mini")))
	if c.Hold == nil || len(c.Hold.Counters) != 1 || c.Hold.Counters[0].Start == 0 {
		t.Errorf("fail open: hold %+v, want the budget's counter in the current window", c.Hold)
	}
}

// A block budget cannot be kept on a model without a price: refused, never served free.
func TestUnpricedModelUnderBlockBudget(t *testing.T) {
	clk := &clock{t: time.Now()}
	f := governFixture(t, memStore(t, clk), clk, false)
	checkReject(t, f.chat(t, "vk_free", chatBody("gpt-4o-nonexistent"))[1], http.StatusForbidden, wire.OpenAI, "model_not_priced")
	governedClaims(t, f, f.chat(t, "vk_free", chatBody("gpt-4o-mini")))
}

// GET /v1/models/{id}: a model the key may call is found even when no provider lists it
// (a provider that serves any model), percent-encoded ids included; others are not found.
func TestModelByIDUnlisted(t *testing.T) {
	f := newFixture(t)
	get := func(key, path string) *extprocv3.ProcessingResponse {
		return f.run(t, headersMsg("GET", path, true, "authorization", f.bearer(key)))[0]
	}
	for _, path := range []string{"/v1/models/llama3", "/v1/models/meta-llama%2FLlama-3"} {
		ir := mustImmediate(t, get("vk_any", path))
		if ir.GetStatus().GetCode() != 200 {
			t.Errorf("%s: %d %s", path, ir.GetStatus().GetCode(), ir.GetBody())
		}
	}
	if b := string(mustImmediate(t, get("vk_any", "/v1/models/meta-llama%2FLlama-3")).GetBody()); !strings.Contains(b, `"id":"meta-llama/Llama-3"`) {
		t.Errorf("body %s", b)
	}
	checkReject(t, get("vk_narrow", "/v1/models/llama3"), http.StatusNotFound, wire.OpenAI, "model_not_found")
}
