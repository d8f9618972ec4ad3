package fakeprovider

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

const respBody = `{"model":"gpt-test","input":"hi MARK"%s}`

func rs(extra string) string { return fmt.Sprintf(respBody, extra) }

const (
	weatherRS = `,"tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}},{"type":"function","name":"other"},{"type":"custom","name":"apply_patch"}]`
	customRS  = `,"tools":[{"type":"web_search"},{"type":"custom","name":"apply_patch","format":{"type":"text"}},{"type":"function","name":"get_weather"}]`
)

// respCase is one Responses request and the answer it must get.
type respCase struct {
	name, extra string
	text        string // expected output_text ("" = no message item)
	tool, kind  string // expected tool name and item type ("" = no tool call)
}

var respCases = []respCase{
	{"plain", "", DefaultText, "", ""},
	{"function", weatherRS, "", "get_weather", "function_call"},
	{"choice none", weatherRS + `,"tool_choice":"none"`, DefaultText, "", ""},
	{"choice auto", weatherRS + `,"tool_choice":"auto"`, "", "get_weather", "function_call"},
	{"choice required", weatherRS + `,"tool_choice":"required"`, "", "get_weather", "function_call"},
	{"choice function", weatherRS + `,"tool_choice":{"type":"function","name":"other"}`, "", "other", "function_call"},
	{"choice custom", weatherRS + `,"tool_choice":{"type":"custom","name":"apply_patch"}`, "", "apply_patch", "custom_tool_call"},
	{"allowed tools", weatherRS + `,"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"custom","name":"apply_patch"}]}`, "", "apply_patch", "custom_tool_call"},
	{"custom first", customRS, "", "apply_patch", "custom_tool_call"},
	{"hosted only", `,"tools":[{"type":"web_search"}]`, DefaultText, "", ""},
}

// checkResponse checks a Responses API response object against c.
func checkResponse(t *testing.T, c respCase, m map[string]any, body string) {
	t.Helper()
	if m["object"] != "response" || m["status"] != "completed" || m["model"] != "gpt-test" ||
		!strings.HasPrefix(fmt.Sprint(m["id"]), "resp_") || num(m["created_at"]) == 0 || num(m["completed_at"]) == 0 {
		t.Fatalf("response fields %v", m)
	}
	for _, k := range []string{"error", "incomplete_details", "instructions", "previous_response_id", "max_output_tokens"} {
		if v, ok := m[k]; !ok || v != nil {
			t.Fatalf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if m["parallel_tool_calls"] != true || m["tools"] == nil || m["tool_choice"] == nil || m["metadata"] == nil ||
		m["store"] != true || m["truncation"] != "disabled" || get(m, "text", "format", "type") != "text" {
		t.Fatalf("echoed request fields %v", m)
	}
	out, _ := m["output"].([]any)
	want := 0
	if c.text != "" {
		want++
		msg := get(out, 0)
		if get(msg, "type") != "message" || get(msg, "role") != "assistant" || get(msg, "status") != "completed" ||
			!strings.HasPrefix(fmt.Sprint(get(msg, "id")), "msg_") || get(msg, "content", 0, "type") != "output_text" ||
			get(msg, "content", 0, "text") != c.text || get(msg, "content", 0, "annotations") == nil {
			t.Fatalf("message item %v", msg)
		}
	}
	if c.tool != "" {
		want++
		call := get(out, want-1)
		if get(call, "type") != c.kind || get(call, "name") != c.tool || !strings.HasPrefix(fmt.Sprint(get(call, "call_id")), "call_") {
			t.Fatalf("tool item %v", call)
		}
		switch c.kind {
		case "function_call":
			if get(call, "arguments") != ToolArguments || get(call, "status") != "completed" ||
				!strings.HasPrefix(fmt.Sprint(get(call, "id")), "fc_") {
				t.Fatalf("function_call %v", call)
			}
		case "custom_tool_call":
			if get(call, "input") != ToolArguments || !strings.HasPrefix(fmt.Sprint(get(call, "id")), "ctc_") {
				t.Fatalf("custom_tool_call %v", call)
			}
		}
	}
	if len(out) != want {
		t.Fatalf("%d output items, want %d: %v", len(out), want, out)
	}
	outTokens := pieces(c.text, ChunkSize)
	if c.tool != "" {
		outTokens += pieces(ToolArguments, ArgChunkSize)
	}
	u := m["usage"]
	if num(get(u, "input_tokens")) != tokens(body) || num(get(u, "output_tokens")) != outTokens ||
		num(get(u, "total_tokens")) != tokens(body)+outTokens || get(u, "input_tokens_details", "cached_tokens") != 0.0 ||
		get(u, "output_tokens_details", "reasoning_tokens") != 0.0 {
		t.Fatalf("usage %v", u)
	}
}

func TestResponses(t *testing.T) {
	_, ts := newTest(t)
	for _, c := range respCases {
		t.Run(c.name, func(t *testing.T) {
			body := rs(c.extra)
			resp := post(t, t.Context(), ts.URL+"/v1/responses", body, oaAuth()...)
			if resp.StatusCode != 200 || resp.Header.Get("x-request-id") == "" {
				t.Fatalf("status %d", resp.StatusCode)
			}
			checkResponse(t, c, decode(t, resp), body)
		})
	}
}

func TestResponsesEcho(t *testing.T) {
	_, ts := newTest(t)
	body := rs(weatherRS + `,"instructions":"be brief","store":false,"metadata":{"k":"v"},"prompt_cache_key":"pck","parallel_tool_calls":false,"tool_choice":"required","reasoning":{"effort":"low"}`)
	m := decode(t, post(t, t.Context(), ts.URL+"/v1/responses", body, oaAuth()...))
	if m["instructions"] != "be brief" || m["store"] != false || get(m, "metadata", "k") != "v" || m["prompt_cache_key"] != "pck" ||
		m["parallel_tool_calls"] != false || m["tool_choice"] != "required" || get(m, "reasoning", "effort") != "low" {
		t.Fatalf("echo %v", m)
	}
	tools := m["tools"].([]any)
	if len(tools) != 3 || get(tools, 0, "strict") != true || get(tools, 0, "parameters", "type") != "object" ||
		get(tools, 1, "parameters") != nil || get(tools, 2, "type") != "custom" || get(tools, 2, "strict") != nil {
		t.Fatalf("tools %v", tools)
	}
	resp := post(t, t.Context(), ts.URL+"/v1/responses", `{"input":"x"}`, oaAuth()...)
	if resp.StatusCode != 400 || get(decode(t, resp), "error", "type") != "invalid_request_error" {
		t.Fatalf("missing model: %d", resp.StatusCode)
	}
}

// respStream reads a Responses stream, checking the rules every stream obeys; it returns
// the events' types, the concatenated text and argument deltas, and the terminal event's
// response (nil when there is none).
func respStream(t *testing.T, evs []event) (types []string, text, args string, final map[string]any) {
	t.Helper()
	var tb, ab strings.Builder
	for i, e := range evs {
		d := e.json(t)
		if d["type"] != e.name || e.name == "" {
			t.Fatalf("event %d: name %q, type %v", i, e.name, d["type"])
		}
		if seq, ok := d["sequence_number"].(float64); !ok || int(seq) != i {
			t.Fatalf("event %d (%s): sequence_number %v", i, e.name, d["sequence_number"])
		}
		types = append(types, e.name)
		switch e.name {
		case "response.output_text.delta":
			tb.WriteString(d["delta"].(string))
		case "response.function_call_arguments.delta", "response.custom_tool_call_input.delta":
			ab.WriteString(d["delta"].(string))
		case "response.created", "response.in_progress":
			if get(d, "response", "status") != "in_progress" || get(d, "response", "usage") != nil {
				t.Fatalf("%s: %v", e.name, d)
			}
		case "response.completed", "response.failed", "response.incomplete":
			if final != nil {
				t.Fatalf("second terminal event %s", e.name)
			}
			if i != len(evs)-1 {
				t.Fatalf("terminal event %s is not last", e.name)
			}
			final, _ = d["response"].(map[string]any)
		}
	}
	return types, tb.String(), ab.String(), final
}

func TestResponsesStream(t *testing.T) {
	_, ts := newTest(t)
	textEvents := []string{"response.output_item.added", "response.content_part.added", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done"}
	for _, c := range respCases {
		t.Run(c.name, func(t *testing.T) {
			body := rs(c.extra + `,"stream":true`)
			resp := post(t, t.Context(), ts.URL+"/v1/responses", body, append(oaAuth(), "Accept", "application/json")...)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("content-type %q", ct)
			}
			evs, err := readSSE(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			types, text, args, final := respStream(t, evs)
			if final == nil {
				t.Fatal("no terminal event")
			}
			checkResponse(t, c, final, body)
			if text != c.text {
				t.Fatalf("deltas %q, want %q", text, c.text)
			}
			want := []string{"response.created", "response.in_progress"}
			if c.text != "" {
				want = append(want, textEvents...)
			}
			if c.tool != "" {
				delta, done := "response.function_call_arguments.delta", "response.function_call_arguments.done"
				if c.kind == "custom_tool_call" {
					delta, done = "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"
				}
				want = append(want, "response.output_item.added", delta, done, "response.output_item.done")
				if args != ToolArguments {
					t.Fatalf("argument deltas %q", args)
				}
			}
			want = append(want, "response.completed")
			if got := strings.Join(dedupRuns(types), " "); got != strings.Join(want, " ") {
				t.Fatalf("events\n got %s\nwant %s", got, strings.Join(want, " "))
			}
			// Item events carry the item IDs of the final output.
			for _, e := range evs {
				d := e.json(t)
				if id, ok := d["item_id"]; ok && id != get(final, "output", num(d["output_index"]), "id") {
					t.Fatalf("%s: item_id %v, output_index %v", e.name, id, d["output_index"])
				}
			}
		})
	}
}

// dedupRuns drops repeated consecutive names (delta runs).
func dedupRuns(names []string) []string {
	var out []string
	for i, n := range names {
		if i == 0 || n != names[i-1] {
			out = append(out, n)
		}
	}
	return out
}

func TestResponsesScripted(t *testing.T) {
	fake, ts := newTest(t)
	u := &Usage{InputTokens: 11, OutputTokens: 22, CacheReadTokens: 33}
	fake.Script("MARK", Script{Text: "Bonjour, ça va ?", ToolCall: true, Usage: u})
	for _, stream := range []bool{false, true} {
		resp := post(t, t.Context(), ts.URL+"/v1/responses", rs(fmt.Sprintf(`,"stream":%v`, stream)), oaAuth()...)
		var m map[string]any
		if stream {
			evs, err := readSSE(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			var text string
			_, text, _, m = respStream(t, evs)
			if text != "Bonjour, ça va ?" {
				t.Fatalf("streamed text %q", text)
			}
		} else {
			m = decode(t, resp)
		}
		if get(m, "output", 0, "content", 0, "text") != "Bonjour, ça va ?" || get(m, "output", 1, "type") != "function_call" ||
			get(m, "output", 1, "name") != DefaultToolName {
			t.Fatalf("stream=%v: output %v", stream, m["output"])
		}
		if us := m["usage"]; num(get(us, "input_tokens")) != 44 || num(get(us, "input_tokens_details", "cached_tokens")) != 33 ||
			num(get(us, "output_tokens")) != 22 || num(get(us, "total_tokens")) != 66 {
			t.Fatalf("stream=%v: usage %v", stream, us)
		}
	}

	fake.Script("MARK", Script{Status: 429, Header: map[string]string{"retry-after": "3"}})
	resp := post(t, t.Context(), ts.URL+"/v1/responses", rs(`,"stream":true`), oaAuth()...)
	if m := decode(t, resp); resp.StatusCode != 429 || resp.Header.Get("retry-after") != "3" ||
		get(m, "error", "code") != "rate_limit_exceeded" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("scripted 429: %d %v", resp.StatusCode, m)
	}

	fake.Script("MARK", Script{CutAfterEvents: 4})
	resp = post(t, t.Context(), ts.URL+"/v1/responses", rs(`,"stream":true`), oaAuth()...)
	evs, err := readSSE(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || len(evs) != 4 {
		t.Fatalf("cut stream: %d events, error %v", len(evs), err)
	}
	if _, _, _, final := respStream(t, evs); final != nil {
		t.Fatal("cut stream has a terminal event")
	}
	resp = post(t, t.Context(), ts.URL+"/v1/responses", rs(""), oaAuth()...)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("non-streamed cut: body read without error")
	}
}

func TestResponsesWebSocketProbe(t *testing.T) {
	_, ts := newTest(t)
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/responses", nil)
	req.Header.Set("Authorization", "Bearer "+oaKey)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusUpgradeRequired || get(decode(t, resp), "error", "message") == nil {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestCompact(t *testing.T) {
	fake, ts := newTest(t)
	input := `[{"type":"message","role":"developer","content":"sys","id":"m0"},` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"first MARK"}],"id":"m1"},` +
		`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]},` +
		`{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},` +
		`{"role":"user","content":"second"}]`
	cases := []struct {
		name, body string
		users      []string
	}{
		{"items", `{"model":"gpt-5-codex","input":` + input + `}`, []string{"first MARK", "second"}},
		{"string", `{"model":"gpt-5-codex","input":"just MARK"}`, []string{"just MARK"}},
		{"no input", `{"model":"gpt-5-codex","previous_response_id":"resp_x","x":"MARK"}`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := post(t, t.Context(), ts.URL+"/v1/responses/compact", c.body, oaAuth()...)
			m := decode(t, resp)
			if resp.StatusCode != 200 || m["object"] != "response.compaction" || !strings.HasPrefix(fmt.Sprint(m["id"]), "resp_") ||
				num(m["created_at"]) == 0 {
				t.Fatalf("status %d: %v", resp.StatusCode, m)
			}
			out := m["output"].([]any)
			if len(out) != len(c.users)+1 {
				t.Fatalf("output %v", out)
			}
			for i, want := range c.users {
				if get(out, i, "type") != "message" || get(out, i, "role") != "user" || get(out, i, "status") != "completed" ||
					get(out, i, "content", 0, "type") != "input_text" || get(out, i, "content", 0, "text") != want ||
					!strings.HasPrefix(fmt.Sprint(get(out, i, "id")), "msg_") {
					t.Fatalf("user item %d: %v", i, get(out, i))
				}
			}
			cmp := out[len(out)-1]
			enc, err := base64.URLEncoding.DecodeString(fmt.Sprint(get(cmp, "encrypted_content")))
			if get(cmp, "type") != "compaction" || !strings.HasPrefix(fmt.Sprint(get(cmp, "id")), "cmp_") || err != nil ||
				len(enc) < 41 || enc[0] != 0x80 {
				t.Fatalf("compaction item %v (%v)", cmp, err)
			}
			u := m["usage"]
			if num(get(u, "input_tokens")) != tokens(c.body) || num(get(u, "output_tokens")) != pieces(DefaultText, ChunkSize) ||
				get(u, "input_tokens_details", "cached_tokens") == nil || get(u, "output_tokens_details", "reasoning_tokens") == nil {
				t.Fatalf("usage %v", u)
			}
		})
	}
	fake.Script("MARK", Script{Usage: &Usage{InputTokens: 7, OutputTokens: 3, CacheReadTokens: 2}})
	m := decode(t, post(t, t.Context(), ts.URL+"/v1/responses/compact", cases[1].body, oaAuth()...))
	if u := m["usage"]; num(get(u, "input_tokens")) != 9 || num(get(u, "output_tokens")) != 3 || num(get(u, "total_tokens")) != 12 {
		t.Fatalf("scripted usage %v", u)
	}
	resp := post(t, t.Context(), ts.URL+"/v1/responses/compact", `{"input":"x"}`, oaAuth()...)
	if resp.StatusCode != 400 {
		t.Fatalf("missing model: %d", resp.StatusCode)
	}
}
