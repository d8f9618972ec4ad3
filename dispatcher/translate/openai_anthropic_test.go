package translate

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

const openAIToolRequest = `{"model":"gpt-4o","stream":%s,%s
 "messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"}],
 "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
 "max_tokens":256,"temperature":0.2}`

func openAIReq(stream bool, extra string) string {
	s := "false"
	if stream {
		s = "true"
	}
	return strings.Replace(strings.Replace(openAIToolRequest, "%s", s, 1), "%s", extra, 1)
}

func TestOpenAIClientAnthropicProviderNonStream(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		finish  string
		content any
		tool    string // expected tool name, "" for none
		args    string
	}{
		{"text", `{"id":"msg_01","type":"message","role":"assistant","model":"claude-real","content":[{"type":"text","text":"It is sunny."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":5}}`,
			"stop", "It is sunny.", "", ""},
		{"tool use", `{"id":"msg_02","type":"message","role":"assistant","model":"claude-real","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":12}}`,
			"tool_calls", "Checking.", "get_weather", `{"city":"Paris"}`},
		{"max tokens", `{"id":"msg_03","type":"message","role":"assistant","model":"claude-real","content":[{"type":"text","text":"It is"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":21,"output_tokens":2}}`,
			"length", "It is", "", ""},
	}
	e := newEngine(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, jsonReply(200, tc.reply))
			req := request(wire.OpenAI, config.ProviderAnthropic, up.URL, false, openAIReq(false, ""))
			req.Header.Set("anthropic-beta", "prompt-caching-2024-07-31")
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), req, rec)
			if !res.Committed || res.Status != 200 {
				t.Fatalf("result %+v", res)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			got := up.last(t)
			if got.Path != "/v1/messages" || got.Header.Get("x-api-key") != testKey {
				t.Errorf("upstream got path %q key %q", got.Path, got.Header.Get("x-api-key"))
			}
			if got.Header.Get("anthropic-version") == "" {
				t.Error("no anthropic-version upstream")
			}
			if !strings.Contains(got.Header.Get("anthropic-beta"), "prompt-caching-2024-07-31") {
				t.Errorf("anthropic-beta not forwarded: %q", got.Header.Get("anthropic-beta"))
			}
			if get(got.Body, "model") != "upstream-model" || get(got.Body, "max_tokens") != float64(256) {
				t.Errorf("upstream body model/max_tokens: %s", got.Raw)
			}
			if get(got.Body, "tools", 0, "name") != "get_weather" || get(got.Body, "tools", 0, "input_schema", "type") != "object" {
				t.Errorf("tools not translated: %s", got.Raw)
			}
			if !strings.Contains(string(got.Raw), "Be brief.") || get(got.Body, "messages", 0, "role") != "user" {
				t.Errorf("system prompt/messages not translated: %s", got.Raw)
			}

			out := decode(t, rec.Body.String())
			if get(out, "object") != "chat.completion" || get(out, "choices", 0, "finish_reason") != tc.finish {
				t.Fatalf("response %s", rec.Body)
			}
			if get(out, "choices", 0, "message", "role") != "assistant" || get(out, "choices", 0, "message", "content") != tc.content {
				t.Errorf("message %s", rec.Body)
			}
			if get(out, "usage", "prompt_tokens") == nil || get(out, "usage", "completion_tokens") == nil || get(out, "usage", "total_tokens") == nil {
				t.Errorf("usage %s", rec.Body)
			}
			if tc.tool != "" {
				tcall := get(out, "choices", 0, "message", "tool_calls", 0)
				if get(tcall, "id") != "toolu_01A" || get(tcall, "type") != "function" ||
					get(tcall, "function", "name") != tc.tool || get(tcall, "function", "arguments") != tc.args {
					t.Errorf("tool call %v", tcall)
				}
			}
			assertNoSecrets(t, rec.Body.String())
		})
	}
}

// anthropicStreamFrames is a recorded Anthropic stream with text and a tool call whose
// input arrives in fragments.
var anthropicStreamFrames = []string{
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_S1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-real\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":40,\"cache_read_input_tokens\":10,\"output_tokens\":1}}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
	"event: ping\ndata: {\"type\":\"ping\"}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Let me \"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"check.\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_S1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":25}}\n\n",
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
}

func TestOpenAIClientAnthropicProviderStream(t *testing.T) {
	e := newEngine(t)
	for _, includeUsage := range []bool{false, true} {
		t.Run(map[bool]string{false: "without usage", true: "with usage"}[includeUsage], func(t *testing.T) {
			up := newUpstream(t, sseReply(anthropicStreamFrames, false))
			extra := ""
			if includeUsage {
				extra = `"stream_options":{"include_usage":true},`
			}
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), request(wire.OpenAI, config.ProviderAnthropic, up.URL, true, openAIReq(true, extra)), rec)
			if !res.Committed || res.Status != 200 || res.Err != nil {
				t.Fatalf("result %+v", res)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type %q", ct)
			}
			if !rec.Flushed {
				t.Error("stream never flushed")
			}
			if get(up.last(t).Body, "stream") != true || get(up.last(t).Body, "model") != "upstream-model" {
				t.Errorf("upstream body %s", up.last(t).Raw)
			}
			evs := parseSSE(t, rec.Body.String())
			if evs[len(evs)-1].Data != "[DONE]" {
				t.Fatalf("stream does not end with [DONE]: %s", rec.Body)
			}
			var text, args, finish string
			var usage any
			seenTool := map[float64]bool{}
			id := ""
			for _, ev := range evs[:len(evs)-1] {
				if ev.Event != "" {
					t.Fatalf("OpenAI stream frame with event line: %+v", ev)
				}
				c := decode(t, ev.Data)
				if get(c, "object") != "chat.completion.chunk" {
					t.Fatalf("chunk %s", ev.Data)
				}
				if id == "" {
					id, _ = get(c, "id").(string)
				} else if get(c, "id") != id {
					t.Errorf("chunk id changed: %s", ev.Data)
				}
				if u := get(c, "usage"); u != nil {
					usage = u
					if n := len(get(c, "choices").([]any)); n != 0 {
						t.Errorf("usage chunk has %d choices", n)
					}
					continue
				}
				d := get(c, "choices", 0, "delta")
				if s, ok := get(d, "content").(string); ok {
					text += s
				}
				for i := 0; get(d, "tool_calls", i) != nil; i++ {
					tc := get(d, "tool_calls", i)
					idx, ok := get(tc, "index").(float64)
					if !ok {
						t.Fatalf("tool delta without index: %s", ev.Data)
					}
					if !seenTool[idx] {
						seenTool[idx] = true
						if get(tc, "id") != "toolu_S1" || get(tc, "type") != "function" || get(tc, "function", "name") != "get_weather" {
							t.Fatalf("first tool fragment lacks id/type/name: %s", ev.Data)
						}
					}
					if s, ok := get(tc, "function", "arguments").(string); ok {
						args += s
					}
				}
				if f, ok := get(c, "choices", 0, "finish_reason").(string); ok {
					finish = f
				}
			}
			if text != "Let me check." || args != `{"city": "Paris"}` || finish != "tool_calls" {
				t.Errorf("text %q args %q finish %q", text, args, finish)
			}
			if includeUsage != (usage != nil) {
				t.Fatalf("usage chunk present = %v, want %v", usage != nil, includeUsage)
			}
			if includeUsage && (get(usage, "completion_tokens") != float64(25) || get(usage, "prompt_tokens") != float64(50) ||
				get(usage, "prompt_tokens_details", "cached_tokens") != float64(10)) {
				t.Errorf("usage %v", usage)
			}
		})
	}
}

func TestOpenAIClientAnthropicStreamBreaksAfterCommit(t *testing.T) {
	mid := anthropicStreamFrames[:5] // message_start … first text deltas
	tests := []struct {
		name  string
		reply func() []string
		abort bool
	}{
		{"connection aborted", func() []string { return mid }, true},
		{"clean EOF without message_stop", func() []string { return mid }, false},
		{"upstream error event", func() []string {
			return append(append([]string{}, mid...),
				"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
		}, false},
	}
	e := newEngine(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, sseReply(tc.reply(), tc.abort))
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), request(wire.OpenAI, config.ProviderAnthropic, up.URL, true, openAIReq(true, "")), rec)
			if !res.Committed || res.Err == nil {
				t.Fatalf("want committed with an error, got %+v", res)
			}
			evs := parseSSE(t, rec.Body.String())
			last := evs[len(evs)-1]
			if strings.Contains(rec.Body.String(), "[DONE]") {
				t.Fatalf("broken stream ended with [DONE]: %s", rec.Body)
			}
			if get(decode(t, last.Data), "error", "message") == nil {
				t.Fatalf("last event is not an error: %s", rec.Body)
			}
			if !strings.Contains(rec.Body.String(), "Let me ") {
				t.Errorf("content before the break lost: %s", rec.Body)
			}
			assertNoSecrets(t, rec.Body.String())
		})
	}
}
