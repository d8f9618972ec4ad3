package attempt

// Usage is an attempt's token counts as its provider reported them, in one meaning for every
// wire format. Totals include their parts, so a price is
//
//	(InputTokens-CacheReadTokens-CacheCreationTokens)·input + CacheReadTokens·cacheRead +
//	CacheCreationTokens·cacheWrite + OutputTokens·output
//
// with reasoning priced as output.
//
// Mapping from the wire:
//   - OpenAI: InputTokens = prompt_tokens, of which prompt_tokens_details.cached_tokens are
//     CacheReadTokens; OutputTokens = completion_tokens, of which
//     completion_tokens_details.reasoning_tokens are ReasoningTokens. OpenAI reports no
//     cache writes.
//   - Anthropic: input_tokens excludes the cache, so InputTokens = input_tokens +
//     cache_read_input_tokens + cache_creation_input_tokens; OutputTokens = output_tokens, of
//     which output_tokens_details.thinking_tokens are ReasoningTokens.
//   - Gemini: InputTokens = promptTokenCount, of which cachedContentTokenCount are
//     CacheReadTokens; OutputTokens = candidatesTokenCount + thoughtsTokenCount, the
//     thoughts being ReasoningTokens.
type Usage struct {
	InputTokens         int64 // every input token, cache reads and writes included
	OutputTokens        int64 // every output token, reasoning included
	CacheReadTokens     int64 // part of InputTokens served from the provider's prompt cache
	CacheCreationTokens int64 // part of InputTokens written to the prompt cache
	// CacheCreation1hTokens is the part of CacheCreationTokens written with Anthropic's
	// one-hour TTL (dearer than the default five minutes).
	CacheCreation1hTokens int64
	ReasoningTokens       int64 // part of OutputTokens spent on reasoning
}

// Add returns the field-wise sum of u and v, e.g. to total a request's attempts.
func (u Usage) Add(v Usage) Usage {
	return Usage{
		InputTokens:           u.InputTokens + v.InputTokens,
		OutputTokens:          u.OutputTokens + v.OutputTokens,
		CacheReadTokens:       u.CacheReadTokens + v.CacheReadTokens,
		CacheCreationTokens:   u.CacheCreationTokens + v.CacheCreationTokens,
		CacheCreation1hTokens: u.CacheCreation1hTokens + v.CacheCreation1hTokens,
		ReasoningTokens:       u.ReasoningTokens + v.ReasoningTokens,
	}
}
