// Package pricing prices token usage in integer money: a bundled, versioned table of public
// list prices per provider type (prices.json), per-provider overrides, and the arithmetic
// that turns a [Usage] into [money.NanoUSD].
//
// No float ever holds a price or a cost. A [Price] is nano-USD per million tokens; a cost is
// the exact sum of tokens×rate, divided by one million and rounded up once, computed in 128
// bits so no input overflows silently (a cost that does not fit saturates at MaxInt64).
//
// What is not modelled: long-context tiers (Anthropic Sonnet 4/4.5 above 200k input
// tokens, Gemini 2.5 Pro above 200k, OpenAI's long-prompt surcharges) — the table holds the
// base tier; batch, flex and priority tiers; regional or data-residency premiums (Bedrock
// and Vertex regional endpoints, Azure Data Zone deployments, Anthropic US-only inference);
// Gemini cache storage per hour; audio-token rates; per-call tool fees. Overrides cover any
// of these for a provider that needs them.
package pricing

import (
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/sluice-gateway/sluice/internal/money"
)

// tokensPerRate is how many tokens a Price's rates are quoted for.
const tokensPerRate = 1_000_000

// Usage is the token usage to price, in the meaning of dispatcher/attempt.Usage (totals
// include their parts) plus the 1-hour share of the cache writes.
type Usage struct {
	InputTokens           int64 // every input token, cache reads and writes included
	OutputTokens          int64 // every output token, reasoning included
	CacheReadTokens       int64 // part of InputTokens served from the prompt cache
	CacheCreationTokens   int64 // part of InputTokens written to the prompt cache, either TTL
	CacheCreation1hTokens int64 // part of CacheCreationTokens written with the 1-hour TTL
	ReasoningTokens       int64 // part of OutputTokens spent on reasoning
}

// Price is what one million tokens of each class cost.
//
// Defaulting: a zero rate other than Input and Output means "not priced separately", never
// "free":
//   - CacheRead 0 → Input;
//   - CacheWrite5m 0 → Input;
//   - CacheWrite1h 0 → the CacheWrite5m rate (after its own default), so a provider with a
//     single cache-write rate sets only CacheWrite5m;
//   - Reasoning 0 → Output.
//
// A genuinely free cache read or write therefore cannot be expressed unless Input is zero too;
// that errs towards charging, which is the safe side for a budget. Input and Output may be
// zero, for free or self-hosted models.
type Price struct {
	Input        money.NanoUSD `json:"input"`
	Output       money.NanoUSD `json:"output"`
	CacheRead    money.NanoUSD `json:"cache_read,omitempty"`
	CacheWrite5m money.NanoUSD `json:"cache_write_5m,omitempty"`
	CacheWrite1h money.NanoUSD `json:"cache_write_1h,omitempty"`
	Reasoning    money.NanoUSD `json:"reasoning,omitempty"`
}

// Validate rejects negative rates, and a cache or reasoning rate set where the rate it
// refines is zero (a missing input or output is the likely mistake).
func (p Price) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    money.NanoUSD
	}{
		{"input", p.Input}, {"output", p.Output}, {"cache_read", p.CacheRead},
		{"cache_write_5m", p.CacheWrite5m}, {"cache_write_1h", p.CacheWrite1h}, {"reasoning", p.Reasoning},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("%s is negative (%s)", f.name, f.v))
		}
	}
	if p.Input == 0 && (p.CacheRead > 0 || p.CacheWrite5m > 0 || p.CacheWrite1h > 0) {
		errs = append(errs, errors.New("cache rates are set but input is 0"))
	}
	if p.Output == 0 && p.Reasoning > 0 {
		errs = append(errs, errors.New("reasoning is set but output is 0"))
	}
	return errors.Join(errs...)
}

// rates are a Price's effective per-million rates, defaults applied and negatives read as
// zero, so that an unvalidated Price can never lower a cost below its positive parts.
type rates struct {
	input, cacheRead, write5m, write1h, output, reasoning uint64
}

func (p Price) rates() rates {
	r := rates{input: nonNeg(int64(p.Input)), output: nonNeg(int64(p.Output))}
	r.cacheRead = orDefault(p.CacheRead, r.input)
	r.write5m = orDefault(p.CacheWrite5m, r.input)
	r.write1h = orDefault(p.CacheWrite1h, r.write5m)
	r.reasoning = orDefault(p.Reasoning, r.output)
	return r
}

func orDefault(v money.NanoUSD, def uint64) uint64 {
	if v > 0 {
		return uint64(v)
	}
	return def
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

// subFloor returns a-b, or 0 if b is larger.
func subFloor(a, b uint64) uint64 {
	if b >= a {
		return 0
	}
	return a - b
}

// Cost prices u: uncached input at Input, cache reads at CacheRead, 5-minute and 1-hour cache
// writes at their rates, non-reasoning output at Output and reasoning at Reasoning (all after
// the defaulting described on [Price]). The exact sum is divided by one million and rounded
// up once, so a request is never under-charged by rounding; a cost above MaxInt64 saturates.
//
// Negative counts read as zero. When the parts exceed their totals (CacheReadTokens +
// CacheCreationTokens > InputTokens, CacheCreation1hTokens > CacheCreationTokens,
// ReasoningTokens > OutputTokens) every part is still charged and the remainder is zero, so
// inconsistent usage can only cost more, never less.
func (p Price) Cost(u Usage) money.NanoUSD {
	r := p.rates()
	in, out := nonNeg(u.InputTokens), nonNeg(u.OutputTokens)
	read, write := nonNeg(u.CacheReadTokens), nonNeg(u.CacheCreationTokens)
	write1h, reasoning := nonNeg(u.CacheCreation1hTokens), nonNeg(u.ReasoningTokens)
	write5m := subFloor(write, write1h)
	uncached := subFloor(subFloor(subFloor(in, read), write5m), write1h)

	var s sum128
	s.add(uncached, r.input)
	s.add(read, r.cacheRead)
	s.add(write5m, r.write5m)
	s.add(write1h, r.write1h)
	s.add(subFloor(out, reasoning), r.output)
	s.add(reasoning, r.reasoning)
	return s.perMillionCeil()
}

// WorstCase is an upper bound on what inputTokens and outputTokens can cost, for admission
// before the request runs: every input token at the dearest input-side rate (Input,
// CacheRead, CacheWrite5m, CacheWrite1h) and every output token at the dearer of Output
// and Reasoning. Rounding and saturation are as for [Price.Cost]; negative counts read as
// zero.
func (p Price) WorstCase(inputTokens, outputTokens int64) money.NanoUSD {
	r := p.rates()
	var s sum128
	s.add(nonNeg(inputTokens), max(r.input, r.cacheRead, r.write5m, r.write1h))
	s.add(nonNeg(outputTokens), max(r.output, r.reasoning))
	return s.perMillionCeil()
}

// sum128 accumulates products of two uint64s exactly; overflow records a sum past 2^128.
type sum128 struct {
	hi, lo   uint64
	overflow bool
}

func (s *sum128) add(tokens, rate uint64) {
	hi, lo := bits.Mul64(tokens, rate)
	var carry uint64
	s.lo, carry = bits.Add64(s.lo, lo, 0)
	s.hi, carry = bits.Add64(s.hi, hi, carry)
	s.overflow = s.overflow || carry != 0
}

// perMillionCeil returns ceil(sum / 1e6) as NanoUSD, saturating at MaxInt64.
func (s *sum128) perMillionCeil() money.NanoUSD {
	// hi >= 1e6 means the quotient needs more than 64 bits (and Div64 would panic).
	if s.overflow || s.hi >= tokensPerRate {
		return math.MaxInt64
	}
	q, rem := bits.Div64(s.hi, s.lo, tokensPerRate)
	if q > math.MaxInt64 || (rem != 0 && q == math.MaxInt64) {
		return math.MaxInt64
	}
	if rem != 0 {
		q++
	}
	return money.NanoUSD(q)
}
