package translate

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// anthropicCacheStream is an Anthropic stream with cache reads and writes, in the newer
// shape where message_delta repeats the input and cache counts.
func anthropicCacheStream(input, cacheRead, cacheWrite, output string) []string {
	counts := `"input_tokens":` + input + `,"cache_creation_input_tokens":` + cacheWrite + `,"cache_read_input_tokens":` + cacheRead
	return []string{
		"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-real-1\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{" + counts + ",\"output_tokens\":1}}}\n\n",
		"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Sunny.\"}}\n\n",
		"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{" + counts + ",\"output_tokens\":" + output + "}}\n\n",
		"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
	}
}

func anthropicCacheJSON(input, cacheRead, cacheWrite, output, stop string) string {
	return `{"id":"msg_J","type":"message","role":"assistant","model":"claude-real-1","content":[{"type":"text","text":"Sunny."}],"stop_reason":"` + stop + `","stop_sequence":null,"usage":{"input_tokens":` + input + `,"cache_creation_input_tokens":` + cacheWrite + `,"cache_read_input_tokens":` + cacheRead + `,"output_tokens":` + output + `,"output_tokens_details":{"thinking_tokens":7}}}`
}

// The Result's usage is the provider's, normalized: all input tokens (cache reads and
// writes included, counted once), cache parts, output with reasoning. Both directions,
// streamed and not; the Anthropic figures pin Bifrost's folding of cache tokens into
// prompt_tokens with both a small and a large uncached input.
func TestTranslatedUsage(t *testing.T) {
	tests := []struct {
		name     string
		client   wire.Format
		provider config.ProviderType
		stream   bool
		frames   []string // stream reply
		json     string   // non-stream reply
		want     attempt.Usage
		model    string
		reasons  string
	}{
		{"openai client, anthropic json, mostly cached", wire.OpenAI, config.ProviderAnthropic, false, nil,
			anthropicCacheJSON("21", "8192", "1536", "393", "end_turn"),
			attempt.Usage{InputTokens: 21 + 8192 + 1536, OutputTokens: 393, CacheReadTokens: 8192, CacheCreationTokens: 1536, ReasoningTokens: 7},
			"claude-real-1", "stop"},
		{"openai client, anthropic json, mostly uncached", wire.OpenAI, config.ProviderAnthropic, false, nil,
			anthropicCacheJSON("5000", "100", "0", "12", "max_tokens"),
			attempt.Usage{InputTokens: 5100, OutputTokens: 12, CacheReadTokens: 100, ReasoningTokens: 7},
			"claude-real-1", "length"},
		{"openai client, anthropic stream, mostly cached", wire.OpenAI, config.ProviderAnthropic, true,
			anthropicCacheStream("14", "10240", "2051", "128"), "",
			attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 128, CacheReadTokens: 10240, CacheCreationTokens: 2051},
			"claude-real-1", "stop"},
		{"openai client, anthropic stream, mostly uncached", wire.OpenAI, config.ProviderAnthropic, true,
			anthropicCacheStream("3000", "0", "64", "9"), "",
			attempt.Usage{InputTokens: 3064, OutputTokens: 9, CacheCreationTokens: 64},
			"claude-real-1", "stop"},
		{"anthropic client, openai json", wire.Anthropic, config.ProviderOpenAI, false, nil,
			`{"id":"chatcmpl-U","object":"chat.completion","created":1700000000,"model":"gpt-real-2","choices":[{"index":0,"message":{"role":"assistant","content":"Sunny."},"finish_reason":"length"}],"usage":{"prompt_tokens":2006,"completion_tokens":300,"total_tokens":2306,"prompt_tokens_details":{"cached_tokens":1920},"completion_tokens_details":{"reasoning_tokens":192}}}`,
			attempt.Usage{InputTokens: 2006, OutputTokens: 300, CacheReadTokens: 1920, ReasoningTokens: 192},
			"gpt-real-2", "max_tokens"},
		{"anthropic client, openai stream", wire.Anthropic, config.ProviderOpenAI, true, openAIStreamFrames, "",
			attempt.Usage{InputTokens: 120, OutputTokens: 30, CacheReadTokens: 100},
			"gpt-real", "tool_use"},
	}
	e := newEngine(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reply := jsonReply(200, tc.json)
			if tc.stream {
				reply = sseReply(tc.frames, false)
			}
			up := newUpstream(t, reply)
			body := openAIReq(tc.stream, `"stream_options":{"include_usage":true},`)
			if tc.client == wire.Anthropic {
				body = anthropicReq(tc.stream)
			}
			rec := httptest.NewRecorder()
			start := time.Now()
			res := e.Do(context.Background(), request(tc.client, tc.provider, up.URL, tc.stream, body), rec)
			if !res.Committed || res.Status != 200 || res.Err != nil {
				t.Fatalf("result %+v", res)
			}
			if res.Usage != tc.want {
				t.Errorf("Usage = %+v, want %+v", res.Usage, tc.want)
			}
			if res.ResponseModel != tc.model {
				t.Errorf("ResponseModel = %q, want %q", res.ResponseModel, tc.model)
			}
			if got := strings.Join(res.FinishReasons, ","); got != tc.reasons {
				t.Errorf("FinishReasons = %q, want %q (the client's vocabulary)", got, tc.reasons)
			}
			if res.FirstByte.Before(start) || res.Done.Before(res.FirstByte) {
				t.Errorf("start %v FirstByte %v Done %v, want them in order", start, res.FirstByte, res.Done)
			}
			checkClientUsage(t, tc.client, tc.stream, rec.Body.String(), tc.want)
		})
	}
}

// checkClientUsage checks that the usage the client was shown agrees with the Result's: the
// same totals, in the client's own meaning.
func checkClientUsage(t *testing.T, client wire.Format, stream bool, body string, want attempt.Usage) {
	t.Helper()
	var u any
	if !stream {
		u = get(decode(t, body), "usage")
	} else {
		for _, ev := range parseSSE(t, body) {
			if ev.Data == "[DONE]" {
				continue
			}
			d := decode(t, ev.Data)
			if client == wire.Anthropic && ev.Event == "message_delta" {
				u = get(d, "usage")
			}
			if client == wire.OpenAI && get(d, "usage") != nil {
				u = get(d, "usage")
			}
		}
	}
	num := func(path ...any) int64 {
		f, _ := get(u, path...).(float64)
		return int64(f)
	}
	var in, out, cached int64
	if client == wire.OpenAI {
		in, out, cached = num("prompt_tokens"), num("completion_tokens"), num("prompt_tokens_details", "cached_tokens")
		if in != want.InputTokens || out != want.OutputTokens || cached != want.CacheReadTokens {
			t.Errorf("client saw usage %v, want prompt %d completion %d cached %d", u, want.InputTokens, want.OutputTokens, want.CacheReadTokens)
		}
		return
	}
	in = num("input_tokens") + num("cache_read_input_tokens") + num("cache_creation_input_tokens")
	if in != want.InputTokens || num("output_tokens") != want.OutputTokens || num("cache_read_input_tokens") != want.CacheReadTokens {
		t.Errorf("client saw usage %v, want input+cache %d output %d cache read %d", u, want.InputTokens, want.OutputTokens, want.CacheReadTokens)
	}
}

// Failed attempts report no usage; a stream cut after commit reports what it had (Bifrost
// carries usage only on the final chunk, so nothing) and when it ended.
func TestTranslatedUsageOfFailures(t *testing.T) {
	e := newEngine(t)
	t.Run("provider error", func(t *testing.T) {
		up := newUpstream(t, jsonReply(529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`))
		start := time.Now()
		res := e.Do(context.Background(), request(wire.OpenAI, config.ProviderAnthropic, up.URL, false, openAIReq(false, "")), httptest.NewRecorder())
		if res.Committed || res.Usage != (attempt.Usage{}) || res.FinishReasons != nil || res.ResponseModel != "" {
			t.Errorf("result %+v, want uncommitted without usage", res)
		}
		if res.FirstByte.Before(start) || res.Done.Before(res.FirstByte) {
			t.Errorf("FirstByte %v Done %v: the provider answered, want both set", res.FirstByte, res.Done)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		res := e.Do(context.Background(), request(wire.Anthropic, config.ProviderOpenAI, "http://127.0.0.1:1", true, anthropicReq(true)), httptest.NewRecorder())
		if res.Committed || res.Usage != (attempt.Usage{}) || !res.FirstByte.IsZero() || res.Done.IsZero() {
			t.Errorf("result %+v, want no usage, no FirstByte, Done set", res)
		}
	})
	t.Run("stream cut after commit", func(t *testing.T) {
		up := newUpstream(t, sseReply(anthropicCacheStream("14", "10240", "2051", "128")[:3], true))
		res := e.Do(context.Background(), request(wire.OpenAI, config.ProviderAnthropic, up.URL, true, openAIReq(true, "")), httptest.NewRecorder())
		if !res.Committed || res.Err == nil || res.FinishReasons != nil || res.FirstByte.IsZero() || res.Done.Before(res.FirstByte) {
			t.Errorf("result %+v, want committed with an error, no finish reason, FirstByte ≤ Done", res)
		}
	})
}
