package pricing

import "github.com/tidwall/gjson"

// DefaultMaxTokens is the output a request that names no max_tokens is assumed to reach
// when its worst case is reserved, unless its key configures another default.
const DefaultMaxTokens = 4096

// maxChoices bounds the choice count (OpenAI's n) a worst case multiplies by, and
// maxOutput the output tokens one choice is assumed to reach: no model writes more, and the
// product stays far from overflowing whatever a client sends.
const (
	maxChoices = 128
	maxOutput  = 1 << 24
)

// MaxOutputTokens is the most output a request body allows: its max_tokens (or the chat
// completions and Responses spellings, max_completion_tokens and max_output_tokens) times
// its choice count n; fallback (else DefaultMaxTokens) when it names none.
func MaxOutputTokens(body []byte, fallback int64) int64 {
	res := gjson.GetManyBytes(body, "max_tokens", "max_completion_tokens", "max_output_tokens", "n")
	var out int64
	for _, v := range res[:3] {
		if v.Type == gjson.Number && v.Int() > out {
			out = min(v.Int(), maxOutput)
		}
	}
	if out <= 0 {
		out = min(fallback, maxOutput)
		if out <= 0 {
			out = DefaultMaxTokens
		}
	}
	if n := res[3]; n.Type == gjson.Number && n.Int() > 1 {
		out *= min(n.Int(), maxChoices)
	}
	return out
}

// EstimateTokens is the typical token count of n bytes of request, about four bytes per
// token: what a token rate limit reserves before the provider's count corrects it. n is a
// body length, far from overflowing.
func EstimateTokens(n int64) int64 { return (n + 3) / 4 }
