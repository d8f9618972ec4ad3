package pricing

import "testing"

func TestMaxOutputTokens(t *testing.T) {
	for _, tc := range []struct {
		body     string
		fallback int64
		want     int64
	}{
		{`{"max_tokens":100}`, 0, 100},
		{`{"max_completion_tokens":300,"max_tokens":100}`, 0, 300},
		{`{"max_output_tokens":50}`, 0, 50},
		{`{"max_tokens":100,"n":3}`, 0, 300},
		{`{"max_tokens":100,"n":100000}`, 0, 100 * maxChoices},
		{`{}`, 0, DefaultMaxTokens},
		{`{}`, 77, 77},
		{`{"max_tokens":"lots"}`, 0, DefaultMaxTokens},
		{`{"max_tokens":-5}`, 9, 9},
		{`{"max_tokens":9223372036854775807}`, 0, maxOutput},
		{`{"max_tokens":4611686018427387904,"n":4}`, 0, 4 * maxOutput},
	} {
		if got := MaxOutputTokens([]byte(tc.body), tc.fallback); got != tc.want {
			t.Errorf("MaxOutputTokens(%s, %d) = %d, want %d", tc.body, tc.fallback, got, tc.want)
		}
	}
	if EstimateTokens(0) != 0 || EstimateTokens(1) != 1 || EstimateTokens(8) != 2 {
		t.Error("EstimateTokens")
	}
}
