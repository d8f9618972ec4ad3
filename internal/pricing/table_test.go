package pricing

import (
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/money"
)

func sectionIndex(t *testing.T, name string) section {
	t.Helper()
	for i, n := range sectionNames {
		if n == name {
			return section(i)
		}
	}
	t.Fatalf("no section %q", name)
	return 0
}

func TestBundledValid(t *testing.T) {
	tab := Bundled()
	if _, err := time.Parse(time.DateOnly, tab.Version); err != nil {
		t.Errorf("Version = %q, want a date: %v", tab.Version, err)
	}
	if Bundled() != tab {
		t.Error("Bundled() parsed twice")
	}
	total := 0
	for s, models := range tab.models {
		name := sectionNames[s]
		if len(models) > 0 && tab.Source(name) == "" {
			t.Errorf("section %s has models but no source", name)
		}
		for model, p := range models {
			total++
			if err := p.Validate(); err != nil {
				t.Errorf("%s/%s: %v", name, model, err)
			}
			if p.Input <= 0 {
				t.Errorf("%s/%s: input %s, want a positive list price", name, model, p.Input)
			}
			if embedding := strings.HasPrefix(model, "text-embedding-"); embedding != (p.Output == 0) {
				t.Errorf("%s/%s: output %s; only embeddings have no output price", name, model, p.Output)
			}
		}
	}
	if total < 40 {
		t.Errorf("bundled table has %d models, want the full list", total)
	}
}

// TestBundledRequiredModels pins that the models the gateway is expected to price are in
// the table under their canonical names.
func TestBundledRequiredModels(t *testing.T) {
	required := map[string][]string{
		"openai": {"gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-5.1", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
			"gpt-4o", "gpt-4o-mini", "o3", "o3-mini", "o4-mini", "o1",
			"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"},
		"anthropic": {"claude-opus-4-1", "claude-opus-4", "claude-opus-4-5", "claude-sonnet-4-5", "claude-sonnet-4",
			"claude-3-7-sonnet", "claude-haiku-4-5", "claude-3-5-haiku", "claude-3-haiku"},
		"gemini":  {"gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.0-flash"},
		"bedrock": {"nova-pro", "nova-lite", "nova-micro"},
	}
	tab := Bundled()
	for sec, models := range required {
		for _, m := range models {
			if _, ok := tab.models[sectionIndex(t, sec)][m]; !ok {
				t.Errorf("%s/%s missing", sec, m)
			}
		}
	}
}

// TestBundledAnthropicCacheRules checks Anthropic's published multipliers on every entry:
// cache hits 0.1×, 5-minute writes 1.25× and 1-hour writes 2× the input rate, exactly.
func TestBundledAnthropicCacheRules(t *testing.T) {
	// Claude Haiku 3 is listed with rates rounded to the cent ($0.03 hits, $0.30 5m writes,
	// not $0.025 and $0.3125); the table follows the published list.
	exceptions := map[string]Price{
		"claude-3-haiku": {Input: usd(t, "0.25"), Output: usd(t, "1.25"), CacheRead: usd(t, "0.03"),
			CacheWrite5m: usd(t, "0.30"), CacheWrite1h: usd(t, "0.50")},
	}
	for model, p := range Bundled().models[sectionAnthropic] {
		if want, ok := exceptions[model]; ok {
			if p != want {
				t.Errorf("%s = %+v, want the published %+v", model, p, want)
			}
			continue
		}
		if p.CacheRead*10 != p.Input {
			t.Errorf("%s: cache_read %s is not 0.1 × input %s", model, p.CacheRead, p.Input)
		}
		if p.CacheWrite5m*4 != p.Input*5 {
			t.Errorf("%s: cache_write_5m %s is not 1.25 × input %s", model, p.CacheWrite5m, p.Input)
		}
		if p.CacheWrite1h != p.Input*2 {
			t.Errorf("%s: cache_write_1h %s is not 2 × input %s", model, p.CacheWrite1h, p.Input)
		}
		if p.Reasoning != 0 {
			t.Errorf("%s: reasoning %s; Anthropic bills thinking as output", model, p.Reasoning)
		}
	}
}

// TestBundledNoWriteSurcharge checks that OpenAI, Gemini and Nova entries write the cache at
// the input rate (their cache-write fields are left to the defaults) and read it cheaper.
func TestBundledNoWriteSurcharge(t *testing.T) {
	noCacheDiscount := map[string]bool{"gpt-4o-2024-05-13": true, "gemini-2.0-flash-lite": true}
	for _, sec := range []section{sectionOpenAI, sectionGemini, sectionBedrock} {
		for model, p := range Bundled().models[sec] {
			r := p.rates()
			if r.write5m != r.input || r.write1h != r.input {
				t.Errorf("%s/%s: cache writes %d/%d, want the input rate %d", sectionNames[sec], model, r.write5m, r.write1h, r.input)
			}
			discounted := r.cacheRead < r.input
			if want := !noCacheDiscount[model] && !strings.HasPrefix(model, "text-embedding-"); discounted != want {
				t.Errorf("%s/%s: cache read %d vs input %d, want a discount: %v", sectionNames[sec], model, r.cacheRead, r.input, want)
			}
		}
	}
}

func TestLookupBundled(t *testing.T) {
	tests := []struct {
		pt    string
		model string
		want  string // section/model of the entry, or "" for no price
	}{
		{"anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"},
		{"anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"},
		{"anthropic", "Claude-Sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5"},
		{"anthropic", "claude-opus-4-20250514", "anthropic/claude-opus-4"},
		{"anthropic", "claude-opus-4-1-20250805", "anthropic/claude-opus-4-1"},
		{"anthropic", "claude-opus-4-0", "anthropic/claude-opus-4-0"},
		{"anthropic", "claude-opus-4-6", "anthropic/claude-opus-4-6"},
		{"anthropic", "claude-3-7-sonnet-latest", "anthropic/claude-3-7-sonnet"},
		{"anthropic", "claude-haiku-4-5-20251001", "anthropic/claude-haiku-4-5"},
		{"anthropic", "claude-3-haiku-20240307", "anthropic/claude-3-haiku"},
		{"anthropic", "claude-opus-4-9", ""},    // a new minor version is not Opus 4's price
		{"anthropic", "claude-sonnet-4-5x", ""}, // no separator
		{"anthropic", "claude-sonnet-4-56", ""}, // two digits are a version, not a snapshot
		{"anthropic", "gpt-4o", ""},             // other vendors' sections are not searched
		{"openai", "gpt-4o", "openai/gpt-4o"},
		{"openai", "gpt-4o-2024-08-06", "openai/gpt-4o"},
		{"openai", "gpt-4o-2024-05-13", "openai/gpt-4o-2024-05-13"}, // exact beats the base
		{"openai", "gpt-4o-mini", "openai/gpt-4o-mini"},
		{"openai", "gpt-4o-mini-2024-07-18", "openai/gpt-4o-mini"},
		{"openai", "gpt-4", ""},
		{"openai", "gpt-4o-audio-preview", ""},
		{"openai", "gpt-5-2025-08-07", "openai/gpt-5"},
		{"openai", "gpt-5-mini-2025-08-07", "openai/gpt-5-mini"},
		{"openai", "gpt-5.1", "openai/gpt-5.1"},
		{"openai", "gpt-5.3", ""}, // a point release is not gpt-5
		{"openai", "gpt-5-pro", ""},
		{"openai", "gpt-5-chat-latest", ""},
		{"openai", "o3-pro", ""},
		{"openai", "o3-mini-2025-01-31", "openai/o3-mini"},
		{"openai", "o1-2024-12-17", "openai/o1"},
		{"openai", "o1-pro", ""},
		{"openai", "text-embedding-3-small", "openai/text-embedding-3-small"},
		{"openai", "", ""},
		{"openai-compatible", "gpt-4o-mini", "openai/gpt-4o-mini"},
		{"openai-compatible", "openai/gpt-4.1", "openai/gpt-4.1"},
		{"openai-compatible", "llama3.1:70b", ""},
		{"azure", "gpt-4.1-mini", "openai/gpt-4.1-mini"},
		{"azure", "claude-sonnet-4-5", ""},
		{"gemini", "gemini-2.5-flash", "gemini/gemini-2.5-flash"},
		{"gemini", "models/gemini-2.5-flash", "gemini/gemini-2.5-flash"},
		{"gemini", "gemini-2.5-flash-lite", "gemini/gemini-2.5-flash-lite"},
		{"gemini", "gemini-2.0-flash-001", "gemini/gemini-2.0-flash"},
		{"gemini", "gemini-2.0-flash-lite-001", "gemini/gemini-2.0-flash-lite"},
		{"gemini", "gemini-2.5-flash-preview-05-20", ""},
		{"gemini", "gemini-2.5-flash-image", ""},
		{"vertex", "claude-3-5-haiku@20241022", "anthropic/claude-3-5-haiku"},
		{"vertex", "claude-sonnet-4-5@20250929", "anthropic/claude-sonnet-4-5"},
		{"vertex", "gemini-2.5-pro", "gemini/gemini-2.5-pro"},
		{"vertex", "publishers/google/models/gemini-2.5-pro", "gemini/gemini-2.5-pro"},
		{"vertex", "gpt-4o", ""},
		{"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", "anthropic/claude-sonnet-4-5"},
		{"bedrock", "anthropic.claude-3-haiku-20240307-v1:0", "anthropic/claude-3-haiku"},
		{"bedrock", "anthropic.claude-3-haiku-20240307-v1:0:200k", "anthropic/claude-3-haiku"},
		{"bedrock", "eu.anthropic.claude-3-7-sonnet-20250219-v1:0", "anthropic/claude-3-7-sonnet"},
		{"bedrock", "global.anthropic.claude-opus-4-6-v1", "anthropic/claude-opus-4-6"},
		{"bedrock", "apac.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic/claude-3-5-haiku"},
		{"bedrock", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0",
			"anthropic/claude-haiku-4-5"},
		{"bedrock", "amazon.nova-pro-v1:0", "bedrock/nova-pro"},
		{"bedrock", "us.amazon.nova-micro-v1:0", "bedrock/nova-micro"},
		{"bedrock", "amazon.nova-2-lite-v1:0", ""},
		{"bedrock", "meta.llama3-1-70b-instruct-v1:0", ""},
		{"bedrock", "gpt-4o", ""},
		{"nonsense", "gpt-4o", ""},
	}
	tab := Bundled()
	for _, tt := range tests {
		t.Run(string(tt.pt)+"/"+tt.model, func(t *testing.T) {
			got, ok := tab.Lookup(tt.pt, tt.model)
			if tt.want == "" {
				if ok {
					t.Errorf("Lookup = %+v, want no price", got)
				}
				return
			}
			sec, model, _ := strings.Cut(tt.want, "/")
			want, exists := tab.models[sectionIndex(t, sec)][model]
			if !exists {
				t.Fatalf("test wants %s, which the table lacks", tt.want)
			}
			if !ok || got != want {
				t.Errorf("Lookup = %+v, %v; want %s = %+v", got, ok, tt.want, want)
			}
		})
	}
}

// TestLookupBoundaries runs the matching rule on a table built to tempt it.
func TestLookupBoundaries(t *testing.T) {
	tab, err := ParseTable([]byte(`{"version": "2026-01-02", "sections": {"openai": {"models": {
		"gpt-4":  {"input": "30", "output": "60"},
		"gpt-4o": {"input": "2.5", "output": "10"},
		"m":      {"input": "1", "output": "1"},
		"m-x":    {"input": "2", "output": "2"}
	}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		model string
		want  money.NanoUSD // input rate of the match, 0 for none
	}{
		{"gpt-4", usd(t, "30")},
		{"gpt-4o", usd(t, "2.5")},
		{"gpt-4-0613", usd(t, "30")},
		{"gpt-4o-2024-11-20", usd(t, "2.5")},
		{"gpt-4-turbo", 0},
		{"gpt-4-1106-preview", usd(t, "30")},
		{"gpt-4.5-preview", 0},
		{"gpt-40", 0},
		{"m@20250101", usd(t, "1")},
		{"m:latest", usd(t, "1")},
		{"m.v2", usd(t, "1")},
		{"m-v1:0", usd(t, "1")},
		{"m-x-001", usd(t, "2")},
		{"m-x-v2", usd(t, "2")},
		{"m-y-001", 0}, // longest entry first, but "m" + "-y…" is no snapshot
		{"m-12", 0},
		{"m-123x", 0},
		{"m-v", 0},
		{"m-vx", 0},
		{"m-latestx", 0},
		{"m-", 0},
		{"-001", 0},
	}
	for _, tt := range tests {
		got, ok := tab.Lookup("openai", tt.model)
		if tt.want == 0 {
			if ok {
				t.Errorf("Lookup(%q) = %+v, want no price", tt.model, got)
			}
		} else if !ok || got.Input != tt.want {
			t.Errorf("Lookup(%q) = %+v, %v; want input %s", tt.model, got, ok, tt.want)
		}
	}
}

func TestParseTableStrict(t *testing.T) {
	const good = `{"version": "2026-01-02", "note": "n", "sections": {"openai": {"source": "s", "models": {"a": {"input": "1", "output": "2"}}}}}`
	if tab, err := ParseTable([]byte(good)); err != nil {
		t.Fatalf("ParseTable(good) = %v", err)
	} else if p, ok := tab.Lookup("openai", "a"); !ok || p != (Price{Input: usd(t, "1"), Output: usd(t, "2")}) {
		t.Errorf("Lookup(a) = %+v, %v", p, ok)
	}
	tests := []struct {
		name, doc, want string
	}{
		{"not json", `{`, "unexpected EOF"},
		{"trailing data", good + ` {}`, "trailing data"},
		{"unknown top field", `{"version": "2026-01-02", "sections": {}, "extra": 1}`, `unknown field "extra"`},
		{"unknown section", `{"version": "2026-01-02", "sections": {"mistral": {"models": {}}}}`, `unknown section "mistral"`},
		{"null section", `{"version": "2026-01-02", "sections": {"openai": null}}`, "section openai: null"},
		{"unknown section field", `{"version": "2026-01-02", "sections": {"openai": {"modles": {}}}}`, `unknown field "modles"`},
		{"unknown price field", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "1", "output": "1", "cached": "1"}}}}}`, `unknown field "cached"`},
		{"duplicate model", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "1", "output": "1"}, "a": {"input": "2", "output": "2"}}}}}`, `duplicate key "a"`},
		{"duplicate section", `{"version": "2026-01-02", "sections": {"openai": {"models": {}}, "openai": {"models": {}}}}`, `duplicate key "openai"`},
		{"missing version", `{"sections": {}}`, `version ""`},
		{"version not a date", `{"version": "v3", "sections": {}}`, `version "v3"`},
		{"uppercase model", `{"version": "2026-01-02", "sections": {"openai": {"models": {"GPT-4o": {"input": "1", "output": "1"}}}}}`, "lowercase"},
		{"pattern as model", `{"version": "2026-01-02", "sections": {"openai": {"models": {"gpt-*": {"input": "1", "output": "1"}}}}}`, "must not contain"},
		{"slash in model", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a/b": {"input": "1", "output": "1"}}}}}`, "must not contain"},
		{"empty model", `{"version": "2026-01-02", "sections": {"openai": {"models": {"": {"input": "1", "output": "1"}}}}}`, "empty name"},
		{"missing input", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"output": "1"}}}}}`, "input is required"},
		{"missing output", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "1"}}}}}`, "output is required"},
		{"float price", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": 1e-6, "output": "1"}}}}}`, "no exponent"},
		{"negative price", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "-1", "output": "1"}}}}}`, "no sign"},
		{"too precise", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "0.0000000001", "output": "1"}}}}}`, "decimal places"},
		{"invalid price", `{"version": "2026-01-02", "sections": {"openai": {"models": {"a": {"input": "0", "output": "1", "cache_read": "1"}}}}}`, "input is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := ParseTable([]byte(tt.doc))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTable = %v, %v; want an error containing %q", tab, err, tt.want)
			}
		})
	}
}

func TestParseTableReportsAll(t *testing.T) {
	_, err := ParseTable([]byte(`{"version": "x", "sections": {"openai": {"models": {
		"A": {"input": "1", "output": "1"}, "b": {"input": "1"}}}}}`))
	if err == nil {
		t.Fatal("ParseTable = nil error")
	}
	for _, want := range []string{`version "x"`, `model "A"`, `model "b"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	tab := Bundled()
	for _, tt := range []struct {
		pt    string
		model string
	}{
		{"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"openai", "gpt-4o-mini-2024-07-18"},
		{"vertex", "gemini-2.5-flash"},
		{"openai", "unknown-model-2025"},
	} {
		if n := testing.AllocsPerRun(100, func() { tab.Lookup(tt.pt, tt.model) }); n != 0 {
			t.Errorf("Lookup(%s, %q) allocates %.0f times", tt.pt, tt.model, n)
		}
	}
}
