package pricing

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/money"
)

// usd parses a decimal dollar amount exactly; tests never write money as a float.
func usd(t testing.TB, s string) money.NanoUSD {
	t.Helper()
	n, err := money.ParseUSD(s)
	if err != nil {
		t.Fatalf("ParseUSD(%q): %v", s, err)
	}
	return n
}

func sonnet45(t testing.TB) Price {
	return Price{
		Input: usd(t, "3"), Output: usd(t, "15"), CacheRead: usd(t, "0.30"),
		CacheWrite5m: usd(t, "3.75"), CacheWrite1h: usd(t, "6"),
	}
}

func TestCost(t *testing.T) {
	const maxI = math.MaxInt64
	reasoner := Price{Input: usd(t, "1"), Output: usd(t, "2"), Reasoning: usd(t, "4")}
	tests := []struct {
		name  string
		price Price
		usage Usage
		want  money.NanoUSD
	}{
		{"zero usage", sonnet45(t), Usage{}, 0},
		{"zero price", Price{}, Usage{InputTokens: 1000, OutputTokens: 1000}, 0},
		// 700 uncached×$3 + 200 read×$0.30 + 50 5m-write×$3.75 + 50 1h-write×$6 + 500 out×$15,
		// all per 1M: (2.1e12 + 6e10 + 1.875e11 + 3e11 + 7.5e12) / 1e6 = 10,147,500 nano-USD.
		{"sonnet 4.5 every class", sonnet45(t), Usage{
			InputTokens: 1000, CacheReadTokens: 200, CacheCreationTokens: 100,
			CacheCreation1hTokens: 50, OutputTokens: 500,
		}, 10_147_500},
		{"sonnet 4.5 input only", sonnet45(t), Usage{InputTokens: 1}, 3000},
		// 600 plain output×$2 + 400 reasoning×$4 = 1.2e12 + 1.6e12.
		{"reasoning at its rate", reasoner, Usage{OutputTokens: 1000, ReasoningTokens: 400}, 2_800_000},
		{"reasoning defaults to output", Price{Input: usd(t, "1"), Output: usd(t, "2")},
			Usage{OutputTokens: 1000, ReasoningTokens: 400}, 2_000_000},
		{"rounds up a fraction", Price{Input: 1}, Usage{InputTokens: 1}, 1},
		{"exact million", Price{Input: 1}, Usage{InputTokens: 1_000_000}, 1},
		{"one past a million", Price{Input: 1}, Usage{InputTokens: 1_000_001}, 2},
		{"nova micro cached read 8.75 → 9", Price{Input: usd(t, "0.035"), CacheRead: usd(t, "0.00875"), Output: usd(t, "0.14")},
			Usage{InputTokens: 1, CacheReadTokens: 1}, 9},
		// Two half-nano parts: rounding each would give 2.
		{"rounds once, not per class", Price{Input: 500_000, Output: 500_000},
			Usage{InputTokens: 1, OutputTokens: 1}, 1},
		{"largest exact", Price{Input: 1_000_000}, Usage{InputTokens: maxI}, maxI},
		{"one over saturates", Price{Input: 2_000_000}, Usage{InputTokens: maxI/2 + 1}, maxI},
		// MaxInt64 + 1/1e6 rounds up to one past the maximum.
		{"rounding up past max saturates", Price{Input: 1_000_000, Output: 1}, Usage{InputTokens: maxI, OutputTokens: 1}, maxI},
		{"huge saturates", Price{Input: maxI, Output: maxI}, Usage{InputTokens: maxI, OutputTokens: maxI}, maxI},
		{"negative counts are zero", sonnet45(t), Usage{InputTokens: -5, OutputTokens: -1, CacheReadTokens: -7}, 0},
		{"negative rates are zero", Price{Input: -1, Output: usd(t, "1")}, Usage{InputTokens: 10, OutputTokens: 1}, 1000},
		// Parts larger than totals are still charged: 20 reads×$0.30.
		{"reads exceed input", sonnet45(t), Usage{InputTokens: 10, CacheReadTokens: 20}, 6000},
		// 1h writes larger than all writes: 80 uncached×$3 + 20 1h×$6.
		{"1h exceeds writes", sonnet45(t), Usage{InputTokens: 100, CacheCreationTokens: 10, CacheCreation1hTokens: 20}, 360_000},
		{"reasoning exceeds output", reasoner, Usage{OutputTokens: 1, ReasoningTokens: 3}, 12_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.price.Cost(tt.usage); got != tt.want {
				t.Errorf("Cost(%+v) = %d, want %d", tt.usage, got, tt.want)
			}
		})
	}
}

func TestPriceDefaults(t *testing.T) {
	in, out := usd(t, "2"), usd(t, "8")
	w5, w1h, read, reason := usd(t, "2.5"), usd(t, "4"), usd(t, "0.2"), usd(t, "16")
	// One million tokens of a class costs exactly its effective rate.
	classes := []struct {
		name  string
		usage Usage
	}{
		{"uncached", Usage{InputTokens: 1e6}},
		{"read", Usage{InputTokens: 1e6, CacheReadTokens: 1e6}},
		{"write 5m", Usage{InputTokens: 1e6, CacheCreationTokens: 1e6}},
		{"write 1h", Usage{InputTokens: 1e6, CacheCreationTokens: 1e6, CacheCreation1hTokens: 1e6}},
		{"output", Usage{OutputTokens: 1e6}},
		{"reasoning", Usage{OutputTokens: 1e6, ReasoningTokens: 1e6}},
	}
	tests := []struct {
		name  string
		price Price
		want  [6]money.NanoUSD // per class, in the order above
	}{
		{"only input and output", Price{Input: in, Output: out}, [6]money.NanoUSD{in, in, in, in, out, out}},
		{"1h follows 5m", Price{Input: in, Output: out, CacheWrite5m: w5}, [6]money.NanoUSD{in, in, w5, w5, out, out}},
		{"every rate set", Price{Input: in, Output: out, CacheRead: read, CacheWrite5m: w5, CacheWrite1h: w1h, Reasoning: reason},
			[6]money.NanoUSD{in, read, w5, w1h, out, reason}},
		{"1h alone", Price{Input: in, Output: out, CacheWrite1h: w1h}, [6]money.NanoUSD{in, in, in, w1h, out, out}},
	}
	for _, tt := range tests {
		for i, c := range classes {
			if got := tt.price.Cost(c.usage); got != tt.want[i] {
				t.Errorf("%s: 1M %s tokens = %s, want %s", tt.name, c.name, got, tt.want[i])
			}
		}
	}
}

func TestWorstCase(t *testing.T) {
	const maxI = math.MaxInt64
	tests := []struct {
		name    string
		price   Price
		in, out int64
		want    money.NanoUSD
	}{
		// 1000 at the 1h write rate $6 + 500 at $15.
		{"sonnet 4.5", sonnet45(t), 1000, 500, 13_500_000},
		{"openai style, no surcharge", Price{Input: usd(t, "2"), CacheRead: usd(t, "0.5"), Output: usd(t, "8")}, 1000, 1000, 10_000_000},
		{"reasoning dearer", Price{Input: usd(t, "1"), Output: usd(t, "2"), Reasoning: usd(t, "3")}, 0, 1000, 3_000_000},
		{"cache read dearer than input", Price{Input: usd(t, "1"), CacheRead: usd(t, "2"), Output: usd(t, "1")}, 1000, 0, 2_000_000},
		{"zero", sonnet45(t), 0, 0, 0},
		{"negative counts are zero", sonnet45(t), -1, -1, 0},
		{"rounds up", Price{Input: 1, Output: 1}, 1, 1, 1},
		{"saturates", sonnet45(t), maxI, maxI, maxI},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.price.WorstCase(tt.in, tt.out); got != tt.want {
				t.Errorf("WorstCase(%d, %d) = %d, want %d", tt.in, tt.out, got, tt.want)
			}
		})
	}
}

// TestWorstCaseBoundsCost checks, over many consistent usages, that admission's bound is
// never below the final cost.
func TestWorstCaseBoundsCost(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	prices := []Price{sonnet45(t), {Input: usd(t, "1.25"), CacheRead: usd(t, "0.125"), Output: usd(t, "10")},
		{Input: usd(t, "1"), Output: usd(t, "2"), Reasoning: usd(t, "3")}, {Input: 7, Output: 3}}
	for range 10_000 {
		p := prices[r.IntN(len(prices))]
		in, out := r.Int64N(1<<40), r.Int64N(1<<40)
		read := r.Int64N(in + 1)
		write := r.Int64N(in - read + 1)
		u := Usage{InputTokens: in, OutputTokens: out, CacheReadTokens: read, CacheCreationTokens: write,
			CacheCreation1hTokens: r.Int64N(write + 1), ReasoningTokens: r.Int64N(out + 1)}
		if c, w := p.Cost(u), p.WorstCase(in, out); c > w {
			t.Fatalf("%+v: Cost(%+v) = %d > WorstCase = %d", p, u, c, w)
		}
	}
}

func TestSum128Overflow(t *testing.T) {
	var s sum128
	for range 4 {
		s.add(math.MaxUint64, math.MaxUint64) // each ≈ 2^128
	}
	if got := s.perMillionCeil(); got != math.MaxInt64 {
		t.Errorf("perMillionCeil after overflow = %d, want MaxInt64", got)
	}
	if !s.overflow {
		t.Error("overflow not recorded")
	}
}

func TestPriceValidate(t *testing.T) {
	tests := []struct {
		name  string
		price Price
		want  string // "" for valid
	}{
		{"free model", Price{}, ""},
		{"ordinary", sonnet45(t), ""},
		{"embedding, output 0", Price{Input: usd(t, "0.02")}, ""},
		{"negative input", Price{Input: -1}, "input is negative"},
		{"negative output", Price{Input: 1, Output: -1}, "output is negative"},
		{"negative cache read", Price{Input: 1, CacheRead: -1}, "cache_read is negative"},
		{"negative 5m", Price{Input: 1, CacheWrite5m: -1}, "cache_write_5m is negative"},
		{"negative 1h", Price{Input: 1, CacheWrite1h: -1}, "cache_write_1h is negative"},
		{"negative reasoning", Price{Output: 1, Reasoning: -1}, "reasoning is negative"},
		{"cache without input", Price{Output: 1, CacheRead: 1}, "input is 0"},
		{"reasoning without output", Price{Input: 1, Reasoning: 1}, "output is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.price.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
