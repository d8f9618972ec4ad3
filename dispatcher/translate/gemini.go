package translate

// Gemini (the Google AI Studio API, generativelanguage.googleapis.com) as a provider of the
// lane. All three client formats go through Bifrost's Gemini chat converter
// (providers/gemini ToGeminiChatCompletionRequest, ToBifrostChatResponse and
// ToBifrostChatCompletionStream), whose output is Bifrost's OpenAI-shaped chat schema, so
// the chat and Messages renderers serve it unchanged; Responses clients go through the chat
// schema too (responses_gemini.go). What differs from the other providers is where the
// attempt is sent (geminiUpstream) and the tool-call IDs (geminiCallIDs).
//
// Usage needs no fix-up: Bifrost reports Gemini's usageMetadata in OpenAI's meaning
// (ConvertGeminiUsageMetadataToChatUsage), which is [attempt.Usage]'s. promptTokenCount
// already includes cachedContentTokenCount, so it is InputTokens whole and the cached part
// is CacheReadTokens; thoughtsTokenCount is not part of candidatesTokenCount, and Bifrost
// adds it, so OutputTokens = candidates + thoughts with the thoughts as ReasoningTokens
// (Google bills thinking as output). Gemini reports no cache writes (explicit caches are
// created and billed apart), and Bifrost drops toolUsePromptTokenCount, which only
// server-side tools (search, code execution) produce. gemini_test.go pins this against raw
// figures, so a Bifrost upgrade that changes it shows up there.

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// defaultGeminiBaseURL is the Gemini API a provider without a base URL is sent to.
const defaultGeminiBaseURL = "https://generativelanguage.googleapis.com"

// pickGemini returns the direction that serves req on a Gemini provider.
func pickGemini(req *attempt.Request) (direction, bool) {
	pool, target := geminiUpstream(req.Provider.BaseURL)
	d := direction{upstream: pool, target: target, adapt: geminiCallIDs}
	switch {
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.ChatCompletions:
		d.parse, d.render, d.newStream = parseOpenAIChat, renderOpenAIChat, newOpenAIStream
	case req.ClientFormat == wire.Anthropic && req.Endpoint == wire.Messages:
		d.parse, d.render, d.newStream = parseAnthropicMessages, renderAnthropicMessage, newAnthropicStream
	case req.ClientFormat == wire.OpenAI && req.Endpoint == wire.Responses:
		d.run = (*Engine).doGeminiResponses
	default:
		return direction{}, false
	}
	return d, true
}

// apiVersionRE matches a base URL that already names the API version.
var apiVersionRE = regexp.MustCompile(`/v\d+((alpha|beta)\d*)?$`)

// geminiUpstream returns the pool that serves a Gemini provider at baseURL and the target
// of its attempts: the URL without its scheme, which the pool's base URL supplies (see
// geminiPools). The base URL is the API's root (default defaultGeminiBaseURL); the v1beta
// API is used unless it names a version itself.
func geminiUpstream(baseURL string) (schemas.ModelProvider, func(*attempt.Request) string) {
	base := strings.TrimRight(baseURL, "/")
	if base == "" {
		base = defaultGeminiBaseURL
	}
	if !apiVersionRE.MatchString(base) {
		base += "/v1beta"
	}
	pool := schemas.Gemini
	scheme, rest, _ := strings.Cut(base, ":")
	if strings.EqualFold(scheme, "http") {
		pool = geminiHTTP
	}
	return pool, func(req *attempt.Request) string {
		action := ":generateContent"
		if req.Stream {
			action = ":streamGenerateContent?alt=sse"
		}
		return rest + "/" + geminiModelPath(req.Model) + action
	}
}

// geminiModelPath is the resource name of a model in a request path: "models/{model}", or
// the name as given when it names another collection ("tunedModels/…").
func geminiModelPath(model string) string {
	m := strings.TrimPrefix(model, "models/")
	segs := strings.Split(m, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	if len(segs) == 1 {
		return "models/" + segs[0]
	}
	return strings.Join(segs, "/")
}

// thoughtSignatureSeparator is how Bifrost appends a function call's thought signature to
// its tool-call ID (providers/utils.ThoughtSignatureSeparator); it reads the signature back
// from the ID when the call returns in the history.
const thoughtSignatureSeparator = "_ts_"

// geminiCallIDs returns one attempt's fix-up for the tool-call IDs of Gemini's function
// calls. Gemini sends calls without IDs, and Bifrost then uses the function's name (plus
// the call's thought signature), so two calls of one function, in one answer or across a
// conversation, share an ID, and an ID can hold characters Anthropic's tool_use IDs may
// not (a name with dots). Clients match tool results by ID (Claude Code), and a
// conversation that falls back to Anthropic is refused for duplicates. Such IDs become
// call_<random>_<n>, the signature suffix kept: Bifrost maps a result back to its
// function by the call in the history, whatever the ID, and reads the signature from the
// suffix. IDs Gemini did send are kept.
func geminiCallIDs() func(*schemas.BifrostChatResponse) {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	prefix := "call_" + hex.EncodeToString(b[:]) + "_"
	n := 0
	return func(resp *schemas.BifrostChatResponse) {
		if resp == nil {
			return
		}
		for i := range resp.Choices {
			c := &resp.Choices[i]
			var calls []schemas.ChatAssistantMessageToolCall
			switch {
			case c.ChatNonStreamResponseChoice != nil && c.Message != nil && c.Message.ChatAssistantMessage != nil:
				calls = c.Message.ChatAssistantMessage.ToolCalls
			case c.ChatStreamResponseChoice != nil && c.Delta != nil:
				calls = c.Delta.ToolCalls
			}
			for j := range calls {
				tc := &calls[j]
				name, id := deref(tc.Function.Name), deref(tc.ID)
				if name == "" || (id != name && !strings.HasPrefix(id, name+thoughtSignatureSeparator)) {
					continue
				}
				n++
				fixed := prefix + strconv.Itoa(n) + id[len(name):]
				tc.ID = &fixed
			}
		}
	}
}
