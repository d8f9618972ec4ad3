package fakeprovider

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

const (
	oaKey = "sk-test-openai"
	anKey = "sk-ant-test"
)

func newTest(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	fake := New(Config{OpenAIKey: oaKey, AnthropicKey: anKey})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, ts
}

type event struct {
	name string
	data string
}

func (e event) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("event data %q: %v", e.data, err)
	}
	return m
}

// readSSE parses an SSE body; it returns the events and the read error, if any.
func readSSE(r io.Reader) ([]event, error) {
	var evs []event
	var cur event
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" || cur.name != "" {
				evs = append(evs, cur)
			}
			cur = event{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data = strings.TrimPrefix(line, "data: ")
		}
	}
	return evs, sc.Err()
}

func post(t *testing.T, ctx context.Context, url, body string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decode(t *testing.T, resp *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// get walks a decoded JSON value: keys for objects, ints for arrays.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			a, _ := v.([]any)
			if k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func num(v any) int { f, _ := v.(float64); return int(f) }

const chatBody = `{"model":"gpt-test","messages":[{"role":"user","content":"hi MARK"}]%s}`

func oa(extra string) string     { return fmt.Sprintf(chatBody, extra) }
func oaAuth() []string           { return []string{"Authorization", "Bearer " + oaKey} }
func anAuth() []string           { return []string{"x-api-key", anKey, "anthropic-version", "2023-06-01"} }
func an(extra string) string     { return fmt.Sprintf(msgBody, extra) }
func tokens(body string) int     { return max(1, (len(body)+3)/4) }
func pieces(s string, n int) int { return len(split(s, n)) }

const msgBody = `{"model":"claude-test","max_tokens":64,"messages":[{"role":"user","content":"hi MARK"}]%s}`

const weatherOA = `,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}},{"type":"function","function":{"name":"other"}}]`
const weatherAN = `,"tools":[{"name":"get_weather","input_schema":{"type":"object"}},{"name":"other","input_schema":{}}]`

func TestOpenAIChat(t *testing.T) {
	_, ts := newTest(t)
	body := oa("")
	resp := post(t, t.Context(), ts.URL+"/v1/chat/completions", body, oaAuth()...)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	m := decode(t, resp)
	if m["object"] != "chat.completion" || m["model"] != "gpt-test" || !strings.HasPrefix(m["id"].(string), "chatcmpl-") {
		t.Fatalf("bad completion %v", m)
	}
	if got := get(m, "choices", 0, "message", "content"); got != DefaultText {
		t.Fatalf("content %v", got)
	}
	if get(m, "choices", 0, "finish_reason") != "stop" {
		t.Fatalf("finish %v", get(m, "choices", 0, "finish_reason"))
	}
	u := get(m, "usage")
	if num(get(u, "prompt_tokens")) != tokens(body) || num(get(u, "completion_tokens")) != pieces(DefaultText, ChunkSize) ||
		num(get(u, "total_tokens")) != tokens(body)+pieces(DefaultText, ChunkSize) {
		t.Fatalf("usage %v", u)
	}
}

func TestOpenAIStream(t *testing.T) {
	_, ts := newTest(t)
	for _, includeUsage := range []bool{false, true} {
		extra := `,"stream":true`
		if includeUsage {
			extra += `,"stream_options":{"include_usage":true}`
		}
		resp := post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(extra), oaAuth()...)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("content-type %q", ct)
		}
		evs, err := readSSE(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if evs[len(evs)-1].data != "[DONE]" {
			t.Fatalf("last event %q", evs[len(evs)-1].data)
		}
		first := evs[0].json(t)
		if get(first, "choices", 0, "delta", "role") != "assistant" || first["object"] != "chat.completion.chunk" {
			t.Fatalf("first chunk %v", first)
		}
		var text strings.Builder
		var finish any
		var usageChunks int
		for _, e := range evs[1 : len(evs)-1] {
			c := e.json(t)
			if e.name != "" {
				t.Fatalf("OpenAI events have no event line: %q", e.name)
			}
			if c["model"] != "gpt-test" {
				t.Fatalf("model %v", c["model"])
			}
			if s, ok := get(c, "choices", 0, "delta", "content").(string); ok {
				if len(s) > ChunkSize {
					t.Fatalf("piece %q too long", s)
				}
				text.WriteString(s)
			}
			if f := get(c, "choices", 0, "finish_reason"); f != nil {
				finish = f
			}
			if u, ok := c["usage"].(map[string]any); ok {
				usageChunks++
				if len(c["choices"].([]any)) != 0 || num(u["completion_tokens"]) != pieces(DefaultText, ChunkSize) {
					t.Fatalf("usage chunk %v", c)
				}
			}
		}
		if text.String() != DefaultText || finish != "stop" {
			t.Fatalf("text %q finish %v", text.String(), finish)
		}
		if want := map[bool]int{false: 0, true: 1}[includeUsage]; usageChunks != want {
			t.Fatalf("include_usage=%v: %d usage chunks", includeUsage, usageChunks)
		}
	}
}

func TestOpenAIStreamToolCall(t *testing.T) {
	_, ts := newTest(t)
	resp := post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(weatherOA+`,"stream":true`), oaAuth()...)
	evs, err := readSSE(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var args strings.Builder
	var firstFrag map[string]any
	var finish any
	for _, e := range evs[:len(evs)-1] {
		c := e.json(t)
		if tc, ok := get(c, "choices", 0, "delta", "tool_calls", 0).(map[string]any); ok {
			if firstFrag == nil {
				firstFrag = tc
			} else if tc["id"] != nil || get(tc, "function", "name") != nil {
				t.Fatalf("later fragment repeats id/name: %v", tc)
			}
			if num(tc["index"]) != 0 || tc["index"] == nil {
				t.Fatalf("fragment without index 0: %v", tc)
			}
			args.WriteString(get(tc, "function", "arguments").(string))
		}
		if f := get(c, "choices", 0, "finish_reason"); f != nil {
			finish = f
		}
	}
	if firstFrag == nil || !strings.HasPrefix(fmt.Sprint(firstFrag["id"]), "call_") || firstFrag["type"] != "function" ||
		get(firstFrag, "function", "name") != "get_weather" || get(firstFrag, "function", "arguments") != "" {
		t.Fatalf("first tool fragment %v", firstFrag)
	}
	if args.String() != ToolArguments || finish != "tool_calls" {
		t.Fatalf("args %q finish %v", args.String(), finish)
	}
}

func TestOpenAIToolChoice(t *testing.T) {
	_, ts := newTest(t)
	cases := map[string]string{ // extra -> expected tool ("" = text answer)
		weatherOA:                           "get_weather",
		weatherOA + `,"tool_choice":"none"`: "",
		weatherOA + `,"tool_choice":"auto"`: "get_weather",
		weatherOA + `,"tool_choice":{"type":"function","function":{"name":"other"}}`: "other",
	}
	for extra, want := range cases {
		m := decode(t, post(t, t.Context(), ts.URL+"/v1/chat/completions", oa(extra), oaAuth()...))
		got, _ := get(m, "choices", 0, "message", "tool_calls", 0, "function", "name").(string)
		if got != want {
			t.Errorf("%s: tool %q, want %q", extra, got, want)
		}
		if want != "" {
			if get(m, "choices", 0, "message", "tool_calls", 0, "function", "arguments") != ToolArguments ||
				get(m, "choices", 0, "finish_reason") != "tool_calls" || get(m, "choices", 0, "message", "content") != nil {
				t.Errorf("%s: %v", extra, m)
			}
		}
	}
}

func TestAuth(t *testing.T) {
	_, ts := newTest(t)
	cases := []struct {
		path, body string
		hdr        []string
		status     int
	}{
		{"/v1/chat/completions", oa(""), nil, 401},
		{"/v1/chat/completions", oa(""), []string{"Authorization", "Bearer nope"}, 401},
		{"/v1/chat/completions", oa(""), []string{"x-api-key", oaKey}, 401},
		{"/v1/chat/completions", oa(""), oaAuth(), 200},
		{"/v1/messages", an(""), []string{"x-api-key", "nope"}, 401},
		{"/v1/messages", an(""), []string{"x-api-key", anKey}, 200},
		{"/v1/messages?beta=true", an(""), []string{"Authorization", "Bearer " + anKey}, 200},
	}
	for _, c := range cases {
		resp := post(t, t.Context(), ts.URL+c.path, c.body, c.hdr...)
		if resp.StatusCode != c.status {
			t.Fatalf("%s %v: status %d, want %d", c.path, c.hdr, resp.StatusCode, c.status)
		}
		if c.status != 401 {
			continue
		}
		m := decode(t, resp)
		if strings.HasPrefix(c.path, "/v1/messages") {
			if m["type"] != "error" || get(m, "error", "type") != "authentication_error" {
				t.Fatalf("anthropic 401 body %v", m)
			}
		} else if get(m, "error", "code") != "invalid_api_key" || get(m, "error", "message") == nil {
			t.Fatalf("openai 401 body %v", m)
		}
		if strings.Contains(fmt.Sprint(m), "nope") {
			t.Fatalf("error body echoes the key: %v", m)
		}
	}
	// No configured keys: anything goes.
	open := httptest.NewServer(New(Config{}))
	defer open.Close()
	if resp := post(t, t.Context(), open.URL+"/v1/messages", an("")); resp.StatusCode != 200 {
		t.Fatalf("open server status %d", resp.StatusCode)
	}
}

func TestAnthropicMessages(t *testing.T) {
	_, ts := newTest(t)
	body := an("")
	m := decode(t, post(t, t.Context(), ts.URL+"/v1/messages", body, anAuth()...))
	if m["type"] != "message" || m["role"] != "assistant" || m["model"] != "claude-test" || m["stop_reason"] != "end_turn" ||
		get(m, "content", 0, "type") != "text" || get(m, "content", 0, "text") != DefaultText {
		t.Fatalf("message %v", m)
	}
	u := m["usage"]
	if num(get(u, "input_tokens")) != tokens(body) || num(get(u, "output_tokens")) != pieces(DefaultText, ChunkSize) ||
		get(u, "cache_read_input_tokens") == nil || get(u, "cache_creation_input_tokens") == nil {
		t.Fatalf("usage %v", u)
	}
	m = decode(t, post(t, t.Context(), ts.URL+"/v1/messages", an(weatherAN), anAuth()...))
	if m["stop_reason"] != "tool_use" || get(m, "content", 0, "type") != "tool_use" || get(m, "content", 0, "name") != "get_weather" ||
		get(m, "content", 0, "input", "city") != "Paris" || !strings.HasPrefix(fmt.Sprint(get(m, "content", 0, "id")), "toolu_") {
		t.Fatalf("tool message %v", m)
	}
	m = decode(t, post(t, t.Context(), ts.URL+"/v1/messages", an(weatherAN+`,"tool_choice":{"type":"none"}`), anAuth()...))
	if m["stop_reason"] != "end_turn" {
		t.Fatalf("tool_choice none: %v", m)
	}
	resp := post(t, t.Context(), ts.URL+"/v1/messages", `{"model":"x","messages":[]}`, anAuth()...)
	if resp.StatusCode != 400 || get(decode(t, resp), "error", "type") != "invalid_request_error" {
		t.Fatalf("missing max_tokens: status %d", resp.StatusCode)
	}
}

func TestAnthropicStream(t *testing.T) {
	_, ts := newTest(t)
	for _, tools := range []bool{false, true} {
		extra := `,"stream":true`
		if tools {
			extra = weatherAN + extra
		}
		body := an(extra)
		resp := post(t, t.Context(), ts.URL+"/v1/messages?beta=true", body, append(anAuth(), "Accept", "application/json")...)
		evs, err := readSSE(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		var text, partial strings.Builder
		for _, e := range evs {
			d := e.json(t)
			if d["type"] != e.name {
				t.Fatalf("event %q carries type %v", e.name, d["type"])
			}
			if e.name != "ping" && e.name != "content_block_delta" {
				names = append(names, e.name)
			}
			switch e.name {
			case "message_start":
				if num(get(d, "message", "usage", "input_tokens")) != tokens(body) || get(d, "message", "model") != "claude-test" {
					t.Fatalf("message_start %v", d)
				}
			case "content_block_start":
				if tools && get(d, "content_block", "name") != "get_weather" {
					t.Fatalf("block start %v", d)
				}
			case "content_block_delta":
				switch get(d, "delta", "type") {
				case "text_delta":
					text.WriteString(get(d, "delta", "text").(string))
				case "input_json_delta":
					partial.WriteString(get(d, "delta", "partial_json").(string))
				}
			case "message_delta":
				want := map[bool]string{false: "end_turn", true: "tool_use"}[tools]
				if get(d, "delta", "stop_reason") != want || num(get(d, "usage", "output_tokens")) == 0 {
					t.Fatalf("message_delta %v", d)
				}
			}
		}
		want := "message_start content_block_start content_block_stop message_delta message_stop"
		if got := strings.Join(names, " "); got != want {
			t.Fatalf("events %q", got)
		}
		if !tools && text.String() != DefaultText {
			t.Fatalf("text %q", text.String())
		}
		if tools && partial.String() != ToolArguments {
			t.Fatalf("partial json %q", partial.String())
		}
	}
}

func TestModels(t *testing.T) {
	_, ts := newTest(t)
	for _, anth := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+oaKey)
		if anth {
			req.Header.Set("anthropic-version", "2023-06-01")
			req.Header.Set("x-api-key", anKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		m := decode(t, resp)
		resp.Body.Close()
		if len(m["data"].([]any)) != len(Models) {
			t.Fatalf("models %v", m)
		}
		if anth && (get(m, "data", 0, "type") != "model" || m["has_more"] != false) {
			t.Fatalf("anthropic models %v", m)
		}
		if !anth && (m["object"] != "list" || get(m, "data", 0, "object") != "model") {
			t.Fatalf("openai models %v", m)
		}
	}
}

func TestSplit(t *testing.T) {
	for _, s := range []string{"", "abc", DefaultText, "héllo wörld ✓✓✓ 日本語テキスト", "🙂🙂"} {
		parts := split(s, 3)
		if strings.Join(parts, "") != s {
			t.Fatalf("split(%q) = %q", s, parts)
		}
		for _, p := range parts {
			if !utf8.ValidString(p) || p == "" {
				t.Fatalf("split(%q): bad piece %q", s, p)
			}
		}
	}
}

func TestNotFoundAndMethod(t *testing.T) {
	_, ts := newTest(t)
	if resp := post(t, t.Context(), ts.URL+"/v1/nope", "{}", oaAuth()...); resp.StatusCode != 404 || get(decode(t, resp), "error", "message") == nil {
		t.Fatalf("404: %d", resp.StatusCode)
	}
	resp, err := http.Get(ts.URL + "/v1/messages")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 405 || decode(t, resp)["type"] != "error" {
		t.Fatalf("405: %d", resp.StatusCode)
	}
}

// After a tool's result the fake answers in text, unless a tool is forced: an agent loop
// against the demo provider ends.
func TestAnswerAfterToolResult(t *testing.T) {
	for _, tc := range []struct {
		name, body, choice string
		wantTool           bool
	}{
		{"chat first turn", `{"messages":[{"role":"user","content":"hi"}]}`, "", true},
		{"chat after tool", `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[]},{"role":"tool","content":"sunny"}]}`, "", false},
		{"chat after tool, forced", `{"messages":[{"role":"tool","content":"sunny"}]}`, "get_weather", true},
		{"anthropic after tool", `{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"sunny"}]}]}`, "", false},
		{"anthropic user text", `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, "", true},
		{"responses after tool", `{"input":[{"role":"user","content":"hi"},{"type":"function_call_output","call_id":"c","output":"sunny"}]}`, "", false},
		{"responses custom after tool", `{"input":[{"type":"custom_tool_call_output","call_id":"c","output":"ok"}]}`, "", false},
		{"responses first turn", `{"input":"hi"}`, "", true},
	} {
		a := plan([]byte(tc.body), Script{}, []string{"get_weather"}, tc.choice, "call_")
		if (a.tool != "") != tc.wantTool {
			t.Errorf("%s: tool %q, want a tool call %v", tc.name, a.tool, tc.wantTool)
		}
	}
}
