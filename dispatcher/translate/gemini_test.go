package translate

import (
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// geminiUsage is the usageMetadata of the fake's final answers, and geminiWantUsage the
// Result's usage for it. Gemini's promptTokenCount already includes the cached content, and
// candidatesTokenCount excludes the thoughts, which are output too (billed as such).
const geminiUsage = `"usageMetadata":{"promptTokenCount":1200,"cachedContentTokenCount":1000,"candidatesTokenCount":50,"thoughtsTokenCount":30,"totalTokenCount":1280}`

var geminiWantUsage = attempt.Usage{InputTokens: 1200, CacheReadTokens: 1000, OutputTokens: 50 + 30, ReasoningTokens: 30}

// geminiPartialUsage is what Gemini reports on a stream's chunks before the last.
const geminiPartialUsage = `"usageMetadata":{"promptTokenCount":1200,"cachedContentTokenCount":1000,"totalTokenCount":1200}`

// geminiAnswer is a GenerateContentResponse (or stream chunk) with one candidate.
func geminiAnswer(parts, finish, usage string) string {
	s := `{"candidates":[{"content":{"role":"model","parts":[` + parts + `]},"index":0`
	if finish != "" {
		s += `,"finishReason":"` + finish + `"`
	}
	s += `}]`
	if usage != "" {
		s += `,` + usage
	}
	return s + `,"modelVersion":"gemini-2.5-flash-001","responseId":"resp-G1"}`
}

// geminiCalls are two parallel calls of one function, the first with a thought signature
// ("sig-1"), as Gemini sends them: without IDs.
const geminiCalls = `{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2lnLTE="},` +
	`{"functionCall":{"name":"get_weather","args":{"city":"London"}}}`

var (
	geminiTextJSON     = geminiAnswer(`{"text":"It is sunny in Paris."}`, "STOP", geminiUsage)
	geminiToolJSON     = geminiAnswer(`{"text":"Checking."},`+geminiCalls, "STOP", geminiUsage)
	geminiTextChunks   = []string{geminiAnswer(`{"text":"It is "}`, "", geminiPartialUsage), geminiAnswer(`{"text":"sunny "}`, "", geminiPartialUsage), geminiAnswer(`{"text":"in Paris."}`, "STOP", geminiUsage)}
	geminiToolChunks   = []string{geminiAnswer(`{"text":"Checking."}`, "", geminiPartialUsage), geminiAnswer(geminiCalls, "STOP", geminiUsage)}
	geminiCallIDRE     = regexp.MustCompile(`^call_[0-9a-f]{12}_[0-9]+(_ts_[A-Za-z0-9_-]+)?$`)
	geminiWantCalls    = []clientCall{{name: "get_weather", args: `{"city":"Paris"}`}, {name: "get_weather", args: `{"city":"London"}`}}
	geminiClientBodies = map[wire.Endpoint]func(stream bool) string{
		wire.ChatCompletions: func(stream bool) string { return openAIReq(stream, `"stream_options":{"include_usage":true},`) },
		wire.Messages:        anthropicReq,
		wire.Responses: func(stream bool) string {
			return responsesBody("g", stream, []string{strings.Replace(shellTool, `"shell"`, `"get_weather"`, 1)}, "")
		},
	}
)

// clientCall is one tool call as a client received it.
type clientCall struct{ id, name, args string }

// clientAnswer is what a client of any format was told.
type clientAnswer struct {
	text   string
	calls  []clientCall
	finish string // finish_reason, stop_reason or the response status
	usage  any
}

// geminiClients are the client formats a Gemini provider serves.
var geminiClients = []struct {
	name   string
	format wire.Format
	ep     wire.Endpoint
}{
	{"openai chat", wire.OpenAI, wire.ChatCompletions},
	{"anthropic messages", wire.Anthropic, wire.Messages},
	{"openai responses", wire.OpenAI, wire.Responses},
}

// Every client format, streamed and not, text and parallel tool calls, answered by the fake
// Gemini API: the request Gemini receives, the answer each client reads, the usage pinned
// to Gemini's raw figures.
func TestGeminiClients(t *testing.T) {
	e := newEngine(t)
	fake := newFakeGemini(t, "", nil)
	tests := []struct {
		name   string
		json   string
		chunks []string
		want   clientAnswer
		// finish is the finish reason each client is told, by endpoint.
		finish map[wire.Endpoint]string
	}{
		{"text", geminiTextJSON, geminiTextChunks, clientAnswer{text: "It is sunny in Paris."},
			map[wire.Endpoint]string{wire.ChatCompletions: "stop", wire.Messages: "end_turn", wire.Responses: "completed"}},
		{"tool calls", geminiToolJSON, geminiToolChunks, clientAnswer{text: "Checking.", calls: geminiWantCalls},
			map[wire.Endpoint]string{wire.ChatCompletions: "tool_calls", wire.Messages: "tool_use", wire.Responses: "completed"}},
	}
	for _, c := range geminiClients {
		for _, tc := range tests {
			for _, stream := range []bool{false, true} {
				name := c.name + " " + tc.name
				if stream {
					name += " stream"
				}
				t.Run(name, func(t *testing.T) {
					if stream {
						fake.setReply(geminiSSE(tc.chunks, false))
					} else {
						fake.setReply(geminiJSON(tc.json))
					}
					rec := httptest.NewRecorder()
					res := e.Do(t.Context(), geminiRequest(c.format, c.ep, fake.baseURL(), stream, geminiClientBodies[c.ep](stream)), rec)
					ct := "application/json"
					if stream {
						ct = "text/event-stream"
					}
					wantCommitted(t, res, rec, ct)
					checkGeminiUpstream(t, fake.last(t), c.ep, stream)

					got := readAnswer(t, c.format, c.ep, stream, rec.Body.String())
					want := tc.want
					want.finish = tc.finish[c.ep]
					compareAnswers(t, got, want)
					if res.Usage != geminiWantUsage {
						t.Errorf("Usage = %+v, want %+v", res.Usage, geminiWantUsage)
					}
					if res.ResponseModel != "gemini-2.5-flash-001" || strings.Join(res.FinishReasons, ",") != want.finish {
						t.Errorf("ResponseModel %q FinishReasons %v, want gemini-2.5-flash-001 [%s]", res.ResponseModel, res.FinishReasons, want.finish)
					}
					if c.ep == wire.Responses {
						checkUsage(t, got.usage, geminiWantUsage)
					} else {
						checkClientUsage(t, c.format, stream, rec.Body.String(), geminiWantUsage)
					}
					assertNoSecrets(t, rec.Body.String())
				})
			}
		}
	}
}

// checkGeminiUpstream asserts the generateContent request the fake received for a client
// request of the given endpoint (see geminiClientBodies).
func checkGeminiUpstream(t *testing.T, got geminiCall, ep wire.Endpoint, stream bool) {
	t.Helper()
	if got.Model != "upstream-model" || got.Stream != stream {
		t.Errorf("upstream path %s, want model upstream-model, stream %v", got.Path, stream)
	}
	b := got.Body
	prompts := map[wire.Endpoint][2]string{ // system, first user text
		wire.ChatCompletions: {"Be brief.", "Weather in Paris?"},
		wire.Messages:        {"You are terse.", "Weather in Paris?"},
		wire.Responses:       {"You are Codex. [g]", "Fix the bug."},
	}[ep]
	system, user := prompts[0], prompts[1]
	if get(b, "systemInstruction", "parts", 0, "text") != system {
		t.Errorf("systemInstruction %v, want %q", get(b, "systemInstruction"), system)
	}
	if get(b, "contents", 0, "role") != "user" || get(b, "contents", 0, "parts", 0, "text") != user {
		t.Errorf("first content %v, want the user's %q", get(b, "contents", 0), user)
	}
	decl := get(b, "tools", 0, "functionDeclarations", 0)
	if get(decl, "name") != "get_weather" || get(decl, "parametersJsonSchema", "type") != "object" {
		t.Errorf("function declaration %v", decl)
	}
	if ep == wire.Messages {
		// The history's tool call and its result, matched by ID and by name.
		model, result := get(b, "contents", 1), get(b, "contents", 2)
		if get(model, "role") != "model" || get(model, "parts", 0, "text") != "Checking." ||
			get(model, "parts", 1, "functionCall", "name") != "get_weather" || get(model, "parts", 1, "functionCall", "args", "city") != "Paris" {
			t.Errorf("model turn %v", model)
		}
		fr := get(result, "parts", 0, "functionResponse")
		if get(result, "role") != "user" || get(fr, "name") != "get_weather" || get(fr, "id") != "toolu_9" ||
			get(fr, "response", "content") != "sunny, 21C" {
			t.Errorf("function response %v", result)
		}
		if get(b, "generationConfig", "maxOutputTokens") != float64(300) || get(b, "generationConfig", "stopSequences", 0) != "END" {
			t.Errorf("generationConfig %v", get(b, "generationConfig"))
		}
	}
	if ep == wire.ChatCompletions && (get(b, "generationConfig", "maxOutputTokens") != float64(256) || get(b, "generationConfig", "temperature") != 0.2) {
		t.Errorf("generationConfig %v", get(b, "generationConfig"))
	}
}

// readAnswer reads what a client of the format was sent, asserting the stream framing its
// SDK relies on.
func readAnswer(t *testing.T, format wire.Format, ep wire.Endpoint, stream bool, body string) clientAnswer {
	t.Helper()
	var a clientAnswer
	switch {
	case ep == wire.Responses:
		var r map[string]any
		if stream {
			_, r = checkResponsesStream(t, body)
		} else {
			r = decode(t, body)
		}
		checkResponseObject(t, r, r["status"].(string))
		a.finish, _ = r["status"].(string)
		a.usage = r["usage"]
		for _, it := range r["output"].([]any) {
			switch get(it, "type") {
			case "message":
				a.text += get(it, "content", 0, "text").(string)
			case "function_call":
				if get(it, "id") == "" {
					t.Errorf("function_call item without id: %v", it)
				}
				a.calls = append(a.calls, clientCall{get(it, "call_id").(string), get(it, "name").(string), get(it, "arguments").(string)})
			default:
				t.Errorf("unexpected output item %v", it)
			}
		}
	case format == wire.OpenAI && !stream:
		m := decode(t, body)
		a.finish, _ = get(m, "choices", 0, "finish_reason").(string)
		a.text, _ = get(m, "choices", 0, "message", "content").(string)
		a.usage = get(m, "usage")
		for i := 0; get(m, "choices", 0, "message", "tool_calls", i) != nil; i++ {
			tc := get(m, "choices", 0, "message", "tool_calls", i)
			a.calls = append(a.calls, clientCall{get(tc, "id").(string), get(tc, "function", "name").(string), get(tc, "function", "arguments").(string)})
		}
	case format == wire.OpenAI:
		evs := parseSSE(t, body)
		if evs[len(evs)-1].Data != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %s", body)
		}
		for _, ev := range evs[:len(evs)-1] {
			c := decode(t, ev.Data)
			if u := get(c, "usage"); u != nil {
				a.usage = u
			}
			d := get(c, "choices", 0, "delta")
			if s, ok := get(d, "content").(string); ok {
				a.text += s
			}
			for i := 0; get(d, "tool_calls", i) != nil; i++ {
				tc := get(d, "tool_calls", i)
				idx := int(get(tc, "index").(float64))
				if idx == len(a.calls) {
					id, _ := get(tc, "id").(string)
					name, _ := get(tc, "function", "name").(string)
					if id == "" || name == "" {
						t.Fatalf("first fragment of tool call %d lacks id or name: %s", idx, ev.Data)
					}
					a.calls = append(a.calls, clientCall{id: id, name: name})
				}
				args, _ := get(tc, "function", "arguments").(string)
				a.calls[idx].args += args
			}
			if f, ok := get(c, "choices", 0, "finish_reason").(string); ok {
				a.finish = f
			}
		}
	case !stream:
		m := decode(t, body)
		a.finish, _ = get(m, "stop_reason").(string)
		a.usage = get(m, "usage")
		for _, blk := range get(m, "content").([]any) {
			switch get(blk, "type") {
			case "text":
				a.text += get(blk, "text").(string)
			case "tool_use":
				in, _ := json.Marshal(get(blk, "input"))
				a.calls = append(a.calls, clientCall{get(blk, "id").(string), get(blk, "name").(string), string(in)})
			}
		}
	default:
		evs := parseSSE(t, body)
		if evs[0].Event != "message_start" || evs[len(evs)-1].Event != "message_stop" {
			t.Fatalf("Anthropic stream does not run message_start … message_stop: %s", body)
		}
		blocks := map[float64]int{} // content block index → call, -1 for text
		for _, ev := range evs {
			d := decode(t, ev.Data)
			if d["type"] != ev.Event {
				t.Fatalf("event %q carries type %v", ev.Event, d["type"])
			}
			switch ev.Event {
			case "content_block_start":
				idx := d["index"].(float64)
				blocks[idx] = -1
				if get(d, "content_block", "type") == "tool_use" {
					blocks[idx] = len(a.calls)
					a.calls = append(a.calls, clientCall{id: get(d, "content_block", "id").(string), name: get(d, "content_block", "name").(string)})
				}
			case "content_block_delta":
				i, ok := blocks[d["index"].(float64)]
				if !ok {
					t.Fatalf("delta for a block never started: %s", ev.Data)
				}
				if i < 0 {
					a.text += get(d, "delta", "text").(string)
				} else {
					a.calls[i].args += get(d, "delta", "partial_json").(string)
				}
			case "message_delta":
				a.finish, _ = get(d, "delta", "stop_reason").(string)
				a.usage = get(d, "usage")
			}
		}
	}
	return a
}

// compareAnswers checks a client's answer: text, calls (names and arguments; IDs unique,
// the first carrying the thought signature), finish reason.
func compareAnswers(t *testing.T, got, want clientAnswer) {
	t.Helper()
	if got.text != want.text || got.finish != want.finish || len(got.calls) != len(want.calls) {
		t.Fatalf("client got text %q finish %q %d calls, want %q %q %d", got.text, got.finish, len(got.calls),
			want.text, want.finish, len(want.calls))
	}
	ids := map[string]bool{}
	for i, c := range got.calls {
		if c.name != want.calls[i].name || !jsonEqual(c.args, want.calls[i].args) {
			t.Errorf("call %d: %s(%s), want %s(%s)", i, c.name, c.args, want.calls[i].name, want.calls[i].args)
		}
		if !geminiCallIDRE.MatchString(c.id) || ids[c.id] {
			t.Errorf("call %d: ID %q is not a unique call_… ID", i, c.id)
		}
		ids[c.id] = true
	}
	if len(got.calls) > 0 && (!strings.Contains(got.calls[0].id, "_ts_") || strings.Contains(got.calls[1].id, "_ts_")) {
		t.Errorf("thought signature not carried by the signed call's ID: %v", got.calls)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}
