package translate

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// fakeUsage is the usage every fake answer below reports, cache included; want is the
// Result's usage for it: all input counted once, cache parts named.
var (
	fakeUsage = &fakeprovider.Usage{InputTokens: 21, CacheReadTokens: 8192, CacheCreationTokens: 1536, OutputTokens: 393}
	wantUsage = attempt.Usage{InputTokens: 21 + 8192 + 1536, OutputTokens: 393, CacheReadTokens: 8192, CacheCreationTokens: 1536}
)

// A Responses request answered by the fake Anthropic provider, streamed and not: text,
// a function call, a custom tool call; the answer in OpenAI's shape with the fake's usage.
func TestResponsesAnthropic(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	tests := []struct {
		name   string
		script fakeprovider.Script
		tools  []string
		// want describes the output items: "message:<text>", "function_call:<name>",
		// "custom_tool_call:<name>".
		want []string
	}{
		{"text", fakeprovider.Script{Text: "Done: the bug was an off-by-one <i> & fixed."}, nil,
			[]string{"message:Done: the bug was an off-by-one <i> & fixed."}},
		{"function call", fakeprovider.Script{Text: "Let me look."}, []string{shellTool},
			[]string{"message:Let me look.", "function_call:shell"}},
		{"custom tool call", fakeprovider.Script{}, []string{applyPatchTool, shellTool},
			[]string{"custom_tool_call:apply_patch"}},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run(name, func(t *testing.T) {
				marker := "resp-" + strings.ReplaceAll(name, " ", "-")
				sc := tc.script
				sc.Usage = fakeUsage
				fake.Script(marker, sc)
				res, rec := doResponses(t, e, responsesRequest(url, stream, responsesBody(marker, stream, tc.tools, "")))

				var final map[string]any
				if stream {
					wantCommitted(t, res, rec, "text/event-stream")
					var evs []respEv
					evs, final = checkResponsesStream(t, rec.Body.String())
					if last := evs[len(evs)-1].typ; last != "response.completed" {
						t.Fatalf("terminal %s", last)
					}
					if tc.name == "text" {
						want := []string{"response.created", "response.in_progress", "response.output_item.added",
							"response.content_part.added", "response.output_text.delta", "response.output_text.done",
							"response.content_part.done", "response.output_item.done", "response.completed"}
						if got := collapse(types(evs)); !slices.Equal(got, want) {
							t.Fatalf("events %v, want %v", got, want)
						}
					}
				} else {
					wantCommitted(t, res, rec, "application/json")
					final = decode(t, rec.Body.String())
				}
				checkResponseObject(t, final, "completed")
				out := final["output"].([]any)
				if len(out) != len(tc.want) {
					t.Fatalf("output %v, want %v", out, tc.want)
				}
				for i, w := range tc.want {
					kind, arg, _ := strings.Cut(w, ":")
					it := out[i].(map[string]any)
					if it["type"] != kind || it["status"] != "completed" || it["id"] == "" {
						t.Fatalf("output[%d] %v, want %s", i, it, w)
					}
					switch kind {
					case "message":
						if it["role"] != "assistant" || get(it, "content", 0, "type") != "output_text" || get(it, "content", 0, "text") != arg {
							t.Fatalf("message %v, want text %q", it, arg)
						}
					case "function_call":
						if it["name"] != arg || it["call_id"] == "" || it["arguments"] != fakeprovider.ToolArguments {
							t.Fatalf("function call %v", it)
						}
					case "custom_tool_call":
						// The fake answers any tool with its fixed JSON arguments, not the
						// {"input": …} object the tool asks for: the arguments are relayed as the
						// input (TestResponsesCustomToolInput pins the unwrapping).
						if it["name"] != arg || it["call_id"] == "" || it["input"] != fakeprovider.ToolArguments {
							t.Fatalf("custom tool call %v", it)
						}
					}
				}
				if res.Usage != wantUsage {
					t.Errorf("Result.Usage %+v, want %+v", res.Usage, wantUsage)
				}
				checkUsage(t, final["usage"], wantUsage)
				if res.ResponseModel != "upstream-model" || final["model"] != "upstream-model" {
					t.Errorf("model: Result %q, response %v", res.ResponseModel, final["model"])
				}
				if !slices.Equal(res.FinishReasons, []string{"completed"}) {
					t.Errorf("FinishReasons %v", res.FinishReasons)
				}
				if final["instructions"] != "You are Codex. ["+marker+"]" || final["parallel_tool_calls"] != false || final["store"] != false {
					t.Errorf("request parameters not echoed: %v", final)
				}
				if len(tc.tools) > 0 && get(final, "tools", 0, "type") != gjsonType(tc.tools[0]) {
					t.Errorf("tools not echoed as the client sent them: %v", final["tools"])
				}
				assertNoSecrets(t, rec.Body.String())

				up := fake.Requests(marker)
				if len(up) != 1 || up[0].Path != "/v1/messages" || up[0].Header.Get("x-api-key") != testKey {
					t.Fatalf("upstream requests %+v", up)
				}
				var ub map[string]any
				_ = json.Unmarshal(up[0].Body, &ub)
				if ub["model"] != "upstream-model" || !strings.Contains(string(mustJSON(ub["system"])), "You are Codex. ["+marker+"]") ||
					get(ub, "messages", 0, "content", 0, "text") != "Fix the bug." || (ub["stream"] == true) != stream {
					t.Errorf("upstream body %s", up[0].Body)
				}
			})
		}
	}
}

func gjsonType(tool string) any {
	var m map[string]any
	_ = json.Unmarshal([]byte(tool), &m)
	return m["type"]
}

// Instructions reach Anthropic's system prompt ahead of the developer messages, which Codex
// sends alongside them (Bifrost alone keeps only the developer messages), and history in
// OpenAI's item shapes becomes Anthropic turns.
func TestResponsesInstructionsAndHistory(t *testing.T) {
	e := newEngine(t)
	up := newUpstream(t, jsonReply(200, anthropicCacheJSON("1", "0", "0", "1", "end_turn")))
	body := `{"model":"gpt-5-codex","instructions":"You are Codex.","tools":[` + shellTool + `],"input":[` +
		`{"type":"message","role":"developer","content":[{"type":"input_text","text":"<environment_context>cwd</environment_context>"}]},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"List files."}]},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Listing."}]},` +
		`{"type":"function_call","call_id":"call_9","name":"shell","arguments":"{\"command\":[\"ls\"]}"},` +
		`{"type":"function_call_output","call_id":"call_9","output":"a.go"}],"store":false,"include":["reasoning.encrypted_content"],` +
		`"prompt_cache_key":"k1","text":{"verbosity":"low"},"tool_choice":"auto","parallel_tool_calls":false}`
	res, rec := doResponses(t, e, responsesRequest(up.URL, false, body))
	wantCommitted(t, res, rec, "application/json")
	sent := up.last(t)
	sys, _ := json.Marshal(sent.Body["system"])
	if i, j := strings.Index(string(sys), "You are Codex."), strings.Index(string(sys), "environment_context"); i < 0 || j < i {
		t.Fatalf("system %s", sys)
	}
	msgs := sent.Body["messages"].([]any)
	if len(msgs) != 3 || get(msgs, 0, "content", 0, "text") != "List files." ||
		get(msgs, 1, "content", 0, "text") != "Listing." || get(msgs, 1, "content", 1, "type") != "tool_use" ||
		get(msgs, 1, "content", 1, "input", "command", 0) != "ls" || get(msgs, 2, "content", 0, "tool_use_id") != "call_9" {
		t.Fatalf("messages %s", sent.Raw)
	}
	if get(decode(t, rec.Body.String()), "prompt_cache_key") != "k1" {
		t.Errorf("prompt_cache_key not echoed: %s", rec.Body)
	}
}

// A custom tool survives the round trip through Anthropic: it is offered as a tool taking
// one "input" string (its grammar shown to the model), earlier custom calls and outputs
// reach Anthropic as tool_use and tool_result, and a call comes back as custom_tool_call.
func TestResponsesCustomToolRoundTrip(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	const patch = "*** Begin Patch\n*** Update File: a.go\n@@\n-x := 1\n+x := 2\n*** End Patch\n"
	history, _ := json.Marshal(patch)
	body := `{"model":"gpt-5-codex","instructions":"[custom-rt]","tool_choice":{"type":"custom","name":"apply_patch"},` +
		`"tools":[` + shellTool + `,` + applyPatchTool + `],"input":[` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Fix it."}]},` +
		`{"type":"custom_tool_call","id":"ctc_1","call_id":"call_P1","name":"apply_patch","input":` + string(history) + `},` +
		`{"type":"custom_tool_call_output","call_id":"call_P1","output":"Success. Updated a.go"},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Again."}]}]}`
	fake.Script("[custom-rt]", fakeprovider.Script{Usage: fakeUsage})
	for _, stream := range []bool{false, true} {
		res, rec := doResponses(t, e, responsesRequest(url, stream, body))
		var out []any
		if stream {
			wantCommitted(t, res, rec, "text/event-stream")
			_, final := checkResponsesStream(t, rec.Body.String())
			out = final["output"].([]any)
		} else {
			wantCommitted(t, res, rec, "application/json")
			out = decode(t, rec.Body.String())["output"].([]any)
		}
		if len(out) != 1 || get(out[0], "type") != "custom_tool_call" || get(out[0], "name") != "apply_patch" {
			t.Fatalf("stream %v: output %v", stream, out)
		}
	}

	up := fake.Requests("[custom-rt]")
	if len(up) != 2 {
		t.Fatalf("%d upstream requests", len(up))
	}
	for _, r := range up {
		var ub map[string]any
		_ = json.Unmarshal(r.Body, &ub)
		var tool any
		for _, x := range ub["tools"].([]any) {
			if get(x, "name") == "apply_patch" {
				tool = x
			}
		}
		desc, _ := get(tool, "description").(string)
		if get(tool, "input_schema", "properties", "input", "type") != "string" ||
			!slices.Equal(toStrings(get(tool, "input_schema", "required")), []string{"input"}) ||
			!strings.HasPrefix(desc, "Use apply_patch to edit files.") || !strings.Contains(desc, "start: begin_patch hunk+ end_patch") {
			t.Fatalf("custom tool offered as %v", tool)
		}
		if get(ub, "tool_choice", "type") != "tool" || get(ub, "tool_choice", "name") != "apply_patch" {
			t.Errorf("tool_choice %v", ub["tool_choice"])
		}
		// Anthropic merges the consecutive user turns (tool result, then text).
		msgs := ub["messages"].([]any)
		if len(msgs) != 4 || get(msgs, 3, "content", 0, "text") != "Again." {
			t.Fatalf("messages %s", r.Body)
		}
		use := get(msgs, 1, "content", 0)
		if get(msgs, 1, "role") != "assistant" || get(use, "type") != "tool_use" || get(use, "id") != "call_P1" ||
			get(use, "name") != "apply_patch" || get(use, "input", "input") != patch {
			t.Fatalf("custom call history sent as %v", msgs[1])
		}
		result := get(msgs, 2, "content", 0)
		if get(result, "type") != "tool_result" || get(result, "tool_use_id") != "call_P1" ||
			!strings.Contains(string(mustJSON(result)), "Success. Updated a.go") {
			t.Fatalf("custom call output sent as %v", msgs[2])
		}
	}
}

func toStrings(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// anthropicPatchStream is an Anthropic stream calling apply_patch the way the custom tool
// asks: {"input": "<patch>"}, in fragments that split an escape sequence.
var anthropicPatchStream = []string{
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_P\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-real\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":50,\"output_tokens\":1}}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_P\",\"name\":\"apply_patch\",\"input\":{}}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"input\\\": \\\"*** Begin Patch\\\\\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"n+x := \\\\\\\"<a&b>\\\\\\\"\\\\n*** End Patch\\\"}\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":30}}\n\n",
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
}

const patchInput = "*** Begin Patch\n+x := \"<a&b>\"\n*** End Patch"

// A custom tool call's input is the "input" string of the arguments Anthropic streamed,
// decoded, whole, in the custom_tool_call item and its input events.
func TestResponsesCustomToolInput(t *testing.T) {
	e := newEngine(t)
	tools := []string{applyPatchTool}
	t.Run("stream", func(t *testing.T) {
		up := newUpstream(t, sseReply(anthropicPatchStream, false))
		res, rec := doResponses(t, e, responsesRequest(up.URL, true, responsesBody("x", true, tools, "")))
		wantCommitted(t, res, rec, "text/event-stream")
		evs, final := checkResponsesStream(t, rec.Body.String())
		want := []string{"response.created", "response.in_progress", "response.output_item.added",
			"response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "response.output_item.done",
			"response.completed"}
		if got := types(evs); !slices.Equal(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
		if it := get(final, "output", 0); get(it, "input") != patchInput || get(it, "call_id") != "toolu_P" {
			t.Fatalf("custom call %v", it)
		}
		if !strings.Contains(rec.Body.String(), `<a&b>`) {
			t.Errorf("HTML-escaped output: %s", rec.Body.String())
		}
	})
	t.Run("json", func(t *testing.T) {
		args, _ := json.Marshal(map[string]string{"input": patchInput})
		up := newUpstream(t, jsonReply(200, `{"id":"msg_P","type":"message","role":"assistant","model":"claude-real","content":[{"type":"tool_use","id":"toolu_P","name":"apply_patch","input":`+string(args)+`}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":30}}`))
		res, rec := doResponses(t, e, responsesRequest(up.URL, false, responsesBody("x", false, tools, "")))
		wantCommitted(t, res, rec, "application/json")
		if it := get(decode(t, rec.Body.String()), "output", 0); get(it, "type") != "custom_tool_call" || get(it, "input") != patchInput {
			t.Fatalf("custom call %v", it)
		}
	})
}

// Usage reaches the Result and the client with Anthropic's cache counted into the input
// once, for whole answers and streams, with cache writes at the 1-hour TTL and thinking
// tokens; an answer cut at max_tokens is incomplete.
func TestResponsesUsageAndStatus(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name       string
		stream     bool
		reply      http.HandlerFunc
		want       attempt.Usage
		status     string
		incomplete any
		reason     string
	}{
		{"json, mostly cached, reasoning", false, jsonReply(200, anthropicCacheJSON("21", "8192", "1536", "393", "end_turn")),
			attempt.Usage{InputTokens: 21 + 8192 + 1536, OutputTokens: 393, CacheReadTokens: 8192, CacheCreationTokens: 1536, ReasoningTokens: 7},
			"completed", nil, "completed"},
		{"json, max tokens", false, jsonReply(200, anthropicCacheJSON("5000", "100", "0", "12", "max_tokens")),
			attempt.Usage{InputTokens: 5100, OutputTokens: 12, CacheReadTokens: 100, ReasoningTokens: 7},
			"incomplete", "max_output_tokens", "max_output_tokens"},
		{"json, 1h cache writes", false, jsonReply(200, `{"id":"msg_H","type":"message","role":"assistant","model":"claude-real-1","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"cache_creation_input_tokens":2048,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":2048},"output_tokens":4}}`),
			attempt.Usage{InputTokens: 2051, OutputTokens: 4, CacheCreationTokens: 2048, CacheCreation1hTokens: 2048},
			"completed", nil, "completed"},
		{"json, refusal", false, jsonReply(200, anthropicCacheJSON("40", "0", "0", "3", "refusal")),
			attempt.Usage{InputTokens: 40, OutputTokens: 3, ReasoningTokens: 7},
			"incomplete", "content_filter", "content_filter"},
		{"stream, mostly cached", true, sseReply(anthropicCacheStream("14", "10240", "2051", "128"), false),
			attempt.Usage{InputTokens: 14 + 10240 + 2051, OutputTokens: 128, CacheReadTokens: 10240, CacheCreationTokens: 2051},
			"completed", nil, "completed"},
		{"stream, max tokens", true, sseReply(strings.Split(strings.Replace(strings.Join(anthropicCacheStream("3000", "0", "64", "9"), "\x00"),
			`"end_turn"`, `"max_tokens"`, 1), "\x00"), false),
			attempt.Usage{InputTokens: 3064, OutputTokens: 9, CacheCreationTokens: 64},
			"incomplete", "max_output_tokens", "max_output_tokens"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newUpstream(t, tc.reply)
			res, rec := doResponses(t, e, responsesRequest(up.URL, tc.stream, responsesBody("u", tc.stream, nil, "")))
			var final map[string]any
			if tc.stream {
				wantCommitted(t, res, rec, "text/event-stream")
				var evs []respEv
				evs, final = checkResponsesStream(t, rec.Body.String())
				if want := "response." + tc.status; evs[len(evs)-1].typ != want {
					t.Fatalf("terminal %s, want %s", evs[len(evs)-1].typ, want)
				}
			} else {
				wantCommitted(t, res, rec, "application/json")
				final = decode(t, rec.Body.String())
			}
			checkResponseObject(t, final, tc.status)
			if got := get(final, "incomplete_details", "reason"); got != tc.incomplete {
				t.Errorf("incomplete_details %v, want reason %v", final["incomplete_details"], tc.incomplete)
			}
			if res.Usage != tc.want {
				t.Errorf("Result.Usage %+v, want %+v", res.Usage, tc.want)
			}
			checkUsage(t, final["usage"], tc.want)
			if res.ResponseModel != "claude-real-1" || !slices.Equal(res.FinishReasons, []string{tc.reason}) {
				t.Errorf("ResponseModel %q FinishReasons %v", res.ResponseModel, res.FinishReasons)
			}
			if res.FirstByte.IsZero() || res.Done.Before(res.FirstByte) {
				t.Errorf("FirstByte %v Done %v", res.FirstByte, res.Done)
			}
		})
	}
}

// Provider errors before the first byte leave the attempt uncommitted, with the provider's
// error in the OpenAI envelope and the retry classification of the other directions.
func TestResponsesProviderErrors(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	tests := []struct {
		status    int
		retryable bool
		header    map[string]string
	}{
		{429, true, map[string]string{"retry-after": "7"}},
		{529, true, nil},
		{500, true, nil},
		{400, false, nil},
		{401, false, nil},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			marker := "err-" + http.StatusText(tc.status)
			msg := "scripted " + http.StatusText(tc.status)
			fake.Script(marker, fakeprovider.Script{Status: tc.status, Text: msg, Header: tc.header})
			res, rec := doResponses(t, e, responsesRequest(url, stream, responsesBody(marker, stream, nil, "")))
			assertNothingWritten(t, rec)
			if res.Committed || res.Status != tc.status || res.Retryable != tc.retryable {
				t.Fatalf("%d stream %v: %+v", tc.status, stream, res)
			}
			b := decode(t, string(res.Body))
			if get(b, "error", "type") == nil || get(b, "error", "message") != msg {
				t.Fatalf("%d stream %v: body %s", tc.status, stream, res.Body)
			}
			if tc.status == 429 && res.Header.Get("Retry-After") != "7" {
				t.Errorf("retry-after not relayed: %v", res.Header)
			}
			assertNoSecrets(t, string(res.Body))
		}
	}
}

// Requests the lane cannot serve are refused before anything is sent: the endpoints it
// does not translate (400, not retryable, in the client's dialect) and unusable bodies.
func TestResponsesRefusals(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	tests := []struct {
		name     string
		format   wire.Format
		endpoint wire.Endpoint
		provider config.ProviderType
		body     string
		status   int
		contains string
	}{
		{"embeddings on anthropic", wire.OpenAI, wire.Embeddings, config.ProviderAnthropic, `{"model":"m","input":"hi"}`, 400, "/v1/embeddings"},
		{"compact on anthropic", wire.OpenAI, wire.ResponsesCompact, config.ProviderAnthropic, `{"model":"m","input":"hi"}`, 400, "/v1/responses/compact"},
		{"count_tokens on openai", wire.Anthropic, wire.CountTokens, config.ProviderOpenAI, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, 400, "/v1/messages/count_tokens"},
		{"responses on openai-compatible", wire.OpenAI, wire.Responses, config.ProviderOpenAICompatible, `{"model":"m","input":"hi"}`, 400, "/v1/responses"},
		{"models on anthropic", wire.OpenAI, wire.Models, config.ProviderAnthropic, ``, 400, "/v1/models"},
		{"malformed", wire.OpenAI, wire.Responses, config.ProviderAnthropic, `{"model":`, 400, "could not be parsed"},
		{"no input", wire.OpenAI, wire.Responses, config.ProviderAnthropic, `{"model":"m"}`, 400, "could not be parsed"},
		{"previous_response_id", wire.OpenAI, wire.Responses, config.ProviderAnthropic,
			`{"model":"m","input":"hi","previous_response_id":"resp_1"}`, 400, "previous_response_id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := request(tc.format, tc.provider, url, false, tc.body)
			req.Endpoint = tc.endpoint
			res, rec := doResponses(t, e, req)
			assertNothingWritten(t, rec)
			// The lane's own limits are retryable (a later provider of the chain may serve the
			// request); a body no provider could accept is not.
			clientFault := tc.name == "malformed" || tc.name == "no input"
			if res.Committed || res.Retryable == clientFault || res.Status != tc.status || res.Err == nil {
				t.Fatalf("result %+v", res)
			}
			b := decode(t, string(res.Body))
			msg, _ := get(b, "error", "message").(string)
			if tc.format == wire.Anthropic && get(b, "type") != "error" {
				t.Fatalf("not an Anthropic envelope: %s", res.Body)
			}
			if !strings.Contains(msg, tc.contains) || get(b, "error", "type") != "invalid_request_error" {
				t.Fatalf("body %s, want a message containing %q", res.Body, tc.contains)
			}
		})
	}
	if n := len(fake.Requests("")); n != 0 {
		t.Errorf("%d requests reached the provider", n)
	}
}
