package translate

import (
	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
)

// usageOf normalizes Bifrost's usage into [attempt.Usage].
//
// Bifrost reports usage in OpenAI's meaning whatever the provider: PromptTokens counts every
// input token and PromptTokensDetails names the cached part. For an OpenAI provider that is
// the wire's own prompt_tokens and cached_tokens. For an Anthropic provider, whose
// input_tokens excludes the cache, Bifrost 1.7.15 has already folded cache reads and writes
// into PromptTokens (providers/anthropic chat.go ToBifrostChatResponse; normalizeCachedUsage
// on a stream's final chunk), which is the defect the field notes flag for pricing. So the
// cache counts are parts of PromptTokens here and are not added again; a price must take
// them out of InputTokens, as [attempt.Usage] says. The direction tests pin this against
// Anthropic's raw figures, so a Bifrost upgrade that stops folding shows up there.
func usageOf(u *schemas.BifrostLLMUsage) attempt.Usage {
	if u == nil {
		return attempt.Usage{}
	}
	out := attempt.Usage{InputTokens: int64(u.PromptTokens), OutputTokens: int64(u.CompletionTokens)}
	if d := u.PromptTokensDetails; d != nil {
		out.CacheReadTokens = int64(d.CachedReadTokens)
		out.CacheCreationTokens = int64(d.CachedWriteTokens)
	}
	if d := u.CompletionTokensDetails; d != nil {
		out.ReasoningTokens = int64(d.ReasoningTokens)
	}
	return out
}
