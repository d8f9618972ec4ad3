package translate

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// anthropicToolRequest is a second turn: the assistant called a tool, the user returns
// its result. stream is substituted.
const anthropicToolRequest = `{"model":"claude-sonnet","max_tokens":300,"stream":%s,
 "system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}}],
 "stop_sequences":["END"],
 "messages":[
  {"role":"user","content":"Weather in Paris?"},
  {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_9","name":"get_weather","input":{"city":"Paris"}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":"sunny, 21C"}]}],
 "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]}`

func anthropicReq(stream bool) string {
	s := "false"
	if stream {
		s = "true"
	}
	return strings.Replace(anthropicToolRequest, "%s", s, 1)
}

// checkOpenAIUpstream asserts the translated request an OpenAI provider received.
func checkOpenAIUpstream(t *testing.T, got received, stream bool) {
	t.Helper()
	if got.Path != "/v1/chat/completions" || got.Header.Get("Authorization") != "Bearer "+testKey {
		t.Errorf("upstream path %q auth %q", got.Path, got.Header.Get("Authorization"))
	}
	if got.Header.Get("x-api-key") != "" {
		t.Error("Anthropic credential header sent to an OpenAI provider")
	}
	b := got.Body
	if get(b, "model") != "upstream-model" {
		t.Errorf("model %v", get(b, "model"))
	}
	if stream && (get(b, "stream") != true || get(b, "stream_options", "include_usage") != true) {
		t.Errorf("stream flags: %s", got.Raw)
	}
	msgs, _ := get(b, "messages").([]any)
	var roles []string
	for _, m := range msgs {
		roles = append(roles, get(m, "role").(string))
	}
	if strings.Join(roles, ",") != "system,user,assistant,tool" {
		t.Fatalf("roles %v: %s", roles, got.Raw)
	}
	if get(msgs[0], "content") != "You are terse." {
		t.Errorf("system %v", get(msgs[0], "content"))
	}
	if get(msgs[2], "content") != "Checking." || get(msgs[2], "tool_calls", 0, "id") != "toolu_9" ||
		get(msgs[2], "tool_calls", 0, "function", "name") != "get_weather" {
		t.Errorf("assistant turn %v", msgs[2])
	}
	var args map[string]any
	if err := json.Unmarshal([]byte(get(msgs[2], "tool_calls", 0, "function", "arguments").(string)), &args); err != nil || args["city"] != "Paris" {
		t.Errorf("tool arguments %v", get(msgs[2], "tool_calls", 0, "function", "arguments"))
	}
	if get(msgs[3], "tool_call_id") != "toolu_9" || get(msgs[3], "content") != "sunny, 21C" {
		t.Errorf("tool result %v", msgs[3])
	}
	if get(b, "tools", 0, "type") != "function" || get(b, "tools", 0, "function", "name") != "get_weather" ||
		get(b, "tools", 0, "function", "parameters", "type") != "object" {
		t.Errorf("tools %v", get(b, "tools"))
	}
	if get(b, "stop", 0) != "END" {
		t.Errorf("stop_sequences lost: %s", got.Raw)
	}
	if mt := get(b, "max_completion_tokens"); mt != float64(300) && get(b, "max_tokens") != float64(300) {
		t.Errorf("max tokens lost: %s", got.Raw)
	}
}

func TestAnthropicClientOpenAIProviderNonStream(t *testing.T) {
	tests := []struct {
		name    string
		reply   string
		stop    string
		blocks  []string
		toolArg string
		usage   [3]float64 // input, output, cache read
	}{
		{"text", `{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-real","choices":[{"index":0,"message":{"role":"assistant","content":"Sunny, 21C."},"finish_reason":"stop"}],"usage":{"prompt_tokens":80,"completion_tokens":6,"total_tokens":86,"prompt_tokens_details":{"cached_tokens":64}}}`,
			"end_turn", []string{"text"}, "", [3]float64{16, 6, 64}},
		{"tool call", `{"id":"chatcmpl-2","object":"chat.completion","created":1700000000,"model":"gpt-real","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_A","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Lyon\"}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":90,"completion_tokens":15,"total_tokens":105}}`,
			"tool_use", []string{"tool_use"}, "Lyon", [3]float64{90, 15, 0}},
		{"length", `{"id":"chatcmpl-3","object":"chat.completion","created":1700000000,"model":"gpt-real","choices":[{"index":0,"message":{"role":"assistant","content":"Sun"},"finish_reason":"length"}],"usage":{"prompt_tokens":80,"completion_tokens":1,"total_tokens":81}}`,
			"max_tokens", []string{"text"}, "", [3]float64{80, 1, 0}},
	}
	e := newEngine(t)
	for _, tc := range tests {
		for _, pt := range []config.ProviderType{config.ProviderOpenAI, config.ProviderOpenAICompatible} {
			t.Run(tc.name+" "+string(pt), func(t *testing.T) {
				up := newUpstream(t, jsonReply(200, tc.reply))
				rec := httptest.NewRecorder()
				res := e.Do(context.Background(), request(wire.Anthropic, pt, up.URL, false, anthropicReq(false)), rec)
				if !res.Committed || res.Status != 200 || res.Err != nil {
					t.Fatalf("result %+v", res)
				}
				checkOpenAIUpstream(t, up.last(t), false)
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				out := decode(t, rec.Body.String())
				if get(out, "type") != "message" || get(out, "role") != "assistant" || get(out, "stop_reason") != tc.stop {
					t.Fatalf("message %s", rec.Body)
				}
				content, _ := get(out, "content").([]any)
				if len(content) != len(tc.blocks) {
					t.Fatalf("content %s", rec.Body)
				}
				for i, typ := range tc.blocks {
					if get(content[i], "type") != typ {
						t.Errorf("block %d %v", i, content[i])
					}
				}
				if tc.toolArg != "" && (get(content[0], "id") != "call_A" || get(content[0], "name") != "get_weather" ||
					get(content[0], "input", "city") != tc.toolArg) {
					t.Errorf("tool_use %v", content[0])
				}
				u := get(out, "usage")
				if get(u, "input_tokens") != tc.usage[0] || get(u, "output_tokens") != tc.usage[1] {
					t.Errorf("usage %v", u)
				}
				if tc.usage[2] > 0 && get(u, "cache_read_input_tokens") != tc.usage[2] {
					t.Errorf("cache usage %v", u)
				}
			})
		}
	}
}

// openAIStreamFrames is a recorded OpenAI stream: text, then two tool calls whose
// arguments arrive in fragments, then the finish and usage chunks.
var openAIStreamFrames = []string{
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"content":"Looking "},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"content":"up."},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]},"finish_reason":null}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}` + "\n\n",
	`data: {"id":"chatcmpl-S","object":"chat.completion.chunk","created":1,"model":"gpt-real","choices":[],"usage":{"prompt_tokens":120,"completion_tokens":30,"total_tokens":150,"prompt_tokens_details":{"cached_tokens":100}}}` + "\n\n",
	"data: [DONE]\n\n",
}

func TestAnthropicClientOpenAIProviderStream(t *testing.T) {
	e := newEngine(t)
	up := newUpstream(t, sseReply(openAIStreamFrames, false))
	rec := httptest.NewRecorder()
	res := e.Do(context.Background(), request(wire.Anthropic, config.ProviderOpenAICompatible, up.URL, true, anthropicReq(true)), rec)
	if !res.Committed || res.Status != 200 || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	checkOpenAIUpstream(t, up.last(t), true)
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" || !rec.Flushed {
		t.Errorf("Content-Type %q flushed %v", ct, rec.Flushed)
	}
	evs := parseSSE(t, rec.Body.String())
	var seq []string
	var text string
	args := map[float64]string{}
	open := map[float64]string{}
	var stop, lastType string
	var usage any
	for _, ev := range evs {
		d := decode(t, ev.Data)
		if ev.Event == "" || ev.Event != get(d, "type") {
			t.Fatalf("event line %q does not match data type %v", ev.Event, get(d, "type"))
		}
		lastType = ev.Event
		idx, _ := get(d, "index").(float64)
		switch ev.Event {
		case "message_start":
			// Clients track their context from it: never 0, an estimate until the upstream's
			// usage arrives with message_delta.
			if in, _ := get(d, "message", "usage", "input_tokens").(float64); in <= 0 || get(d, "message", "content") == nil {
				t.Errorf("message_start %s", ev.Data)
			}
			seq = append(seq, "start")
		case "content_block_start":
			typ := get(d, "content_block", "type").(string)
			if _, dup := open[idx]; dup {
				t.Fatalf("block %v started twice", idx)
			}
			open[idx] = typ
			seq = append(seq, "+"+typ)
			if typ == "tool_use" && (get(d, "content_block", "id") == nil || get(d, "content_block", "name") == nil) {
				t.Errorf("tool_use start without id/name: %s", ev.Data)
			}
		case "content_block_delta":
			if _, ok := open[idx]; !ok {
				t.Fatalf("delta for a block never started: %s", ev.Data)
			}
			switch get(d, "delta", "type") {
			case "text_delta":
				text += get(d, "delta", "text").(string)
			case "input_json_delta":
				args[idx] += get(d, "delta", "partial_json").(string)
			default:
				t.Errorf("delta %s", ev.Data)
			}
		case "content_block_stop":
			seq = append(seq, "-")
		case "message_delta":
			stop, _ = get(d, "delta", "stop_reason").(string)
			usage = get(d, "usage")
			seq = append(seq, "delta")
		case "message_stop":
			seq = append(seq, "stop")
		default:
			t.Errorf("unexpected event %s", ev.Event)
		}
	}
	if got := strings.Join(seq, " "); got != "start +text - +tool_use - +tool_use - delta stop" || lastType != "message_stop" {
		t.Fatalf("event sequence %q", got)
	}
	if text != "Looking up." || args[1] != `{"city":"Paris"}` || args[2] != "{}" || stop != "tool_use" {
		t.Errorf("text %q args %v stop %q", text, args, stop)
	}
	if get(usage, "output_tokens") != float64(30) || get(usage, "input_tokens") != float64(20) ||
		get(usage, "cache_read_input_tokens") != float64(100) {
		t.Errorf("usage %v", usage)
	}
	assertNoSecrets(t, rec.Body.String())
}

func TestAnthropicClientOpenAIStreamBreaksAfterCommit(t *testing.T) {
	mid := openAIStreamFrames[:5]
	tests := []struct {
		name  string
		abort bool
	}{
		{"connection aborted", true},
		{"clean EOF without finish or [DONE]", false},
	}
	e := newEngine(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, sseReply(mid, tc.abort))
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), request(wire.Anthropic, config.ProviderOpenAI, up.URL, true, anthropicReq(true)), rec)
			if !res.Committed || res.Err == nil {
				t.Fatalf("want committed with an error, got %+v", res)
			}
			evs := parseSSE(t, rec.Body.String())
			last := evs[len(evs)-1]
			d := decode(t, last.Data)
			if last.Event != "error" || get(d, "type") != "error" || get(d, "error", "message") == nil {
				t.Fatalf("stream does not end with an error event: %s", rec.Body)
			}
			for _, ev := range evs {
				if ev.Event == "message_stop" {
					t.Fatalf("broken stream reported message_stop: %s", rec.Body)
				}
			}
			if evs[0].Event != "message_start" || !strings.Contains(rec.Body.String(), "Looking ") {
				t.Errorf("content before the break lost: %s", rec.Body)
			}
			assertNoSecrets(t, rec.Body.String())
		})
	}
}
