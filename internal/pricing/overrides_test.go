package pricing

import (
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/money"
)

func TestOverridesValidate(t *testing.T) {
	p := Price{Input: 1, Output: 1}
	tests := []struct {
		name string
		o    Overrides
		want []string // substrings of the error; none for valid
	}{
		{"nil", nil, nil},
		{"exact, pattern and catch-all", Overrides{"gpt-4o": p, "gpt-4o-*": p, "*": {}}, nil},
		{"empty key", Overrides{"": p}, []string{"empty model name"}},
		{"white space", Overrides{"gpt 4o": p}, []string{"white space"}},
		{"inner star", Overrides{"gpt-*-mini": p}, []string{"'*' may only end"}},
		{"double star", Overrides{"gpt**": p}, []string{"'*' may only end"}},
		{"case duplicate", Overrides{"GPT-4o": p, "gpt-4o": p}, []string{`"gpt-4o": same model as "GPT-4o"`}},
		{"bad price", Overrides{"a": {Input: -1}}, []string{`override "a": input is negative`}},
		{"every problem", Overrides{"a": {Input: -1}, "b*c": p},
			[]string{`override "a"`, `override "b*c"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Errorf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestResolve(t *testing.T) {
	exact := Price{Input: 1, Output: 1}
	family := Price{Input: 2, Output: 2}
	mini := Price{Input: 3, Output: 3}
	all := Price{Input: 4, Output: 4}
	withAll := Overrides{"gpt-4o": exact, "gpt-4o*": family, "gpt-4o-mini*": mini, "*": all}
	noAll := Overrides{"gpt-4o": exact, "gpt-4o*": family, "gpt-4o-mini*": mini, "claude-sonnet-4-5": exact}
	tab := Bundled()
	bundledPrice := func(sec section, model string) Price {
		p, ok := tab.models[sec][model]
		if !ok {
			t.Fatalf("bundled table lacks %s", model)
		}
		return p
	}
	tests := []struct {
		name  string
		t     *Table
		pt    string
		o     Overrides
		model string
		want  Price
		ok    bool
	}{
		{"exact", tab, "openai", withAll, "gpt-4o", exact, true},
		{"exact ignores case", tab, "openai", withAll, "GPT-4o", exact, true},
		{"prefix", tab, "openai", withAll, "gpt-4o-2024-08-06", family, true},
		{"longest prefix", tab, "openai", withAll, "gpt-4o-mini-2024-07-18", mini, true},
		{"prefix ignores case", tab, "openai", withAll, "GPT-4O-MINI", mini, true},
		{"catch-all beats bundled", tab, "openai", withAll, "gpt-4.1", all, true},
		{"bundled after overrides", tab, "openai", noAll, "gpt-4.1", bundledPrice(sectionOpenAI, "gpt-4.1"), true},
		{"overrides see the raw name", tab, "bedrock", noAll, "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
			bundledPrice(sectionAnthropic, "claude-sonnet-4-5"), true},
		{"nil overrides", tab, "anthropic", nil, "claude-haiku-4-5", bundledPrice(sectionAnthropic, "claude-haiku-4-5"), true},
		{"nil table", nil, "openai", noAll, "gpt-4.1", Price{}, false},
		{"nil table, override", nil, "openai", noAll, "gpt-4o", exact, true},
		{"nothing", tab, "openai", noAll, "llama3.1:70b", Price{}, false},
		{"star in the model name is not a pattern", nil, "openai", Overrides{"gpt*": family}, "gpt*", family, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Resolve(tt.t, tt.pt, tt.o, tt.model)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Resolve(%q) = %+v, %v; want %+v, %v", tt.model, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestResolveDeterministic checks that keys equal but for case (which Validate rejects) still
// resolve the same way whatever the map order.
func TestResolveDeterministic(t *testing.T) {
	o := Overrides{"GPT-4o": {Input: 1}, "Gpt-4o": {Input: 2}, "GPT*": {Input: 3}, "gpt*": {Input: 4}}
	for range 50 {
		if p, _ := Resolve(nil, "openai", o, "gpt-4o"); p.Input != 1 {
			t.Fatalf("exact tie resolved to %+v, want the smallest key GPT-4o", p)
		}
		if p, _ := Resolve(nil, "openai", o, "gpt-5"); p.Input != 3 {
			t.Fatalf("prefix tie resolved to %+v, want the smallest key GPT*", p)
		}
	}
}

func TestResolveDoesNotAllocate(t *testing.T) {
	tab := Bundled()
	o := Overrides{"gpt-4o": {Input: 1}, "my-model-*": {Input: 2}, "ft:*": {Input: 3}}
	u := Usage{InputTokens: 12_000, CacheReadTokens: 8_000, OutputTokens: 700, ReasoningTokens: 300}
	for _, model := range []string{"us.anthropic.claude-sonnet-4-5-20250929-v1:0", "my-model-7b", "gpt-4o"} {
		n := testing.AllocsPerRun(100, func() {
			if p, ok := Resolve(tab, "bedrock", o, model); ok {
				_ = p.Cost(u)
			}
		})
		if n != 0 {
			t.Errorf("Resolve+Cost(%q) allocates %.0f times", model, n)
		}
	}
}

// BenchmarkResolveCost measures the per-request pricing path: resolving a Bedrock model id
// through overrides and the bundled table, then costing a usage. Compare runs with
//
//	go test -run=^$ -bench=ResolveCost -count=10 ./internal/pricing/ > new.txt
//	benchstat old.txt new.txt
func BenchmarkResolveCost(b *testing.B) {
	tab := Bundled()
	o := Overrides{"gpt-4o": {Input: 1}, "my-model-*": {Input: 2}, "ft:*": {Input: 3}}
	u := Usage{InputTokens: 12_000, CacheReadTokens: 8_000, CacheCreationTokens: 1_000,
		CacheCreation1hTokens: 200, OutputTokens: 700, ReasoningTokens: 300}
	for _, bc := range []struct {
		name  string
		pt    string
		model string
	}{
		{"bedrock", "bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
		{"openai-exact", "openai", "gpt-4.1-mini"},
		{"override-prefix", "openai", "my-model-7b"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var total money.NanoUSD
			for b.Loop() {
				p, _ := Resolve(tab, bc.pt, o, bc.model)
				total += p.Cost(u)
			}
			if total < 0 {
				b.Fatal("negative total")
			}
		})
	}
}
