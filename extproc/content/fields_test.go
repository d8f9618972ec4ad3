package content

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
)

const chatRequest = `{
  "model": "gpt-4.1",
  "messages": [
    {"role": "system", "content": "You are terse."},
    {"role": "developer", "content": [{"type": "text", "text": "Prefer metric units."}]},
    {"role": "user", "content": [
      {"type": "text", "text": "Weather for alice@example.com\u0021 \ud83d\ude00 \"quoted\"\n"},
      {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
      {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
      {"type": "text", "text": "é"}
    ]},
    {"role": "assistant", "content": null, "tool_calls": [
      {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
    {"role": "assistant", "content": ""}
  ],
  "tools": [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather.",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name"},
        "a.b": {"enum": ["x*y", "z"]},
        "@odd:key": {"description": "needs escaping"}
      }, "required": ["city"]}}}
  ],
  "stream": true
}`

const anthropicRequest = `{
  "model": "claude-sonnet-4-5",
  "max_tokens": 1024,
  "system": [
    {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
    {"type": "text", "text": "Project rules: no secrets."}
  ],
  "messages": [
    {"role": "system", "content": "inline system"},
    {"role": "user", "content": [
      {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
      {"type": "text", "text": "Mail alice@example.com", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    ]},
    {"role": "assistant", "content": [
      {"type": "thinking", "thinking": "hidden", "signature": "EqQB"},
      {"type": "tool_use", "id": "toolu_1", "name": "send", "input": {"to": "alice@example.com", "cc": ["bob@example.com"], "n": 3, "user.name": "A"}}
    ]},
    {"role": "user", "content": [
      {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sent"},
      {"type": "tool_result", "tool_use_id": "toolu_2", "content": [
        {"type": "text", "text": "page 1"},
        {"type": "image", "source": {"type": "url", "url": "https://example.org/x.png"}}
      ], "cache_control": {"type": "ephemeral"}}
    ]}
  ],
  "tools": [
    {"name": "send", "description": "Send mail.", "input_schema": {"type": "object", "properties": {"to": {"type": "string", "description": "Recipient"}}}, "defer_loading": true},
    {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}
  ],
  "thinking": {"type": "adaptive"},
  "metadata": {"user_id": "{\"session\":\"s1\"}"}
}`

const responsesRequest = `{
  "model": "gpt-5-codex",
  "instructions": "Be brief.",
  "input": [
    {"type": "message", "role": "developer", "id": "m0", "content": [{"type": "input_text", "text": "You are Codex."}]},
    {"role": "user", "content": "plain easy message"},
    {"type": "message", "role": "user", "content": [
      {"type": "input_text", "text": "fix alice@example.com"},
      {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
      {"type": "input_file", "file_id": "file-1"}
    ]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok", "annotations": []}]},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell", "arguments": "{\"cmd\":[\"ls\"]}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "README.md"},
    {"type": "custom_tool_call", "id": "ct_1", "call_id": "call_2", "name": "apply_patch", "input": "*** Begin Patch"},
    {"type": "custom_tool_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "Done!"}]}
  ],
  "tools": [
    {"type": "function", "name": "shell", "description": "Run a command.", "parameters": {"type": "object", "properties": {"cmd": {"type": "array", "items": {"type": "string"}}}}, "strict": false},
    {"type": "custom", "name": "apply_patch", "description": "Apply a patch.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
    {"type": "web_search"}
  ],
  "store": false,
  "include": ["reasoning.encrypted_content"],
  "prompt_cache_key": "k"
}`

const chatResponse = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4.1","choices":[
 {"index":0,"message":{"role":"assistant","content":"Mail alice@example.com","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"},
 {"index":1,"message":{"role":"assistant","content":null,"refusal":"I can't.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"x\":\"\\u00e9\"}"}}]},"finish_reason":"tool_calls"}],
 "usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`

const anthropicResponse = `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[
 {"type":"thinking","thinking":"Let me think.","signature":"EqQB"},
 {"type":"redacted_thinking","data":"opaque"},
 {"type":"text","text":"Mail alice@example.com","citations":null},
 {"type":"tool_use","id":"toolu_1","name":"send","input":{"to":"alice@example.com","opts":{"cc":["b@example.com"],"urgent":true}}}
],"stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":2048,"output_tokens":20}}`

const responsesResponse = `{"id":"resp_1","object":"response","status":"completed","output":[
 {"id":"rs_1","type":"reasoning","summary":[{"type":"summary_text","text":"Thought about mail."}],"encrypted_content":"gAAAA"},
 {"id":"msg_1","type":"message","role":"assistant","status":"completed","content":[
   {"type":"output_text","text":"Mail alice@example.com","annotations":[],"logprobs":[]},
   {"type":"refusal","refusal":"Not that."}]},
 {"id":"fc_1","type":"function_call","call_id":"call_1","name":"send","arguments":"{\"to\":\"alice@example.com\"}","status":"completed"},
 {"id":"ct_1","type":"custom_tool_call","call_id":"call_2","name":"apply_patch","input":"*** Begin Patch"}
],"output_text":"Mail alice@example.com","usage":{"input_tokens":1,"output_tokens":2}}`

func TestResponseFields(t *testing.T) {
	tests := []struct {
		name  string
		shape Shape
		body  string
		want  []Field
	}{
		{"chat", OpenAIChat, chatResponse, []Field{
			{"choices.0.message.content", "Mail alice@example.com"},
			{"choices.1.message.refusal", "I can't."},
			{"choices.1.message.tool_calls.0.function.arguments", `{"x":"\u00e9"}`},
		}},
		{"anthropic", AnthropicMessages, anthropicResponse, []Field{
			{"content.0.thinking", "Let me think."},
			{"content.2.text", "Mail alice@example.com"},
			{"content.3.input.to", "alice@example.com"},
			{"content.3.input.opts.cc.0", "b@example.com"},
		}},
		{"responses", OpenAIResponses, responsesResponse, []Field{
			{"output.0.summary.0.text", "Thought about mail."},
			{"output.1.content.0.text", "Mail alice@example.com"},
			{"output.1.content.1.refusal", "Not that."},
			{"output.2.arguments", `{"to":"alice@example.com"}`},
			{"output.3.input", "*** Begin Patch"},
			{"output_text", "Mail alice@example.com"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResponseFields(tt.shape, []byte(tt.body)); !slices.Equal(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestReplaceRoundTrip rewrites every field and checks that the new texts read back and
// that nothing outside the replaced strings moved.
func TestReplaceRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		shape  Shape
		body   string
		fields func(Shape, []byte) []Field
	}{
		{"chat request", OpenAIChat, chatRequest, requestText},
		{"anthropic request", AnthropicMessages, anthropicRequest, requestText},
		{"responses request", OpenAIResponses, responsesRequest, requestText},
		{"chat response", OpenAIChat, chatResponse, ResponseFields},
		{"anthropic response", AnthropicMessages, anthropicResponse, ResponseFields},
		{"responses response", OpenAIResponses, responsesResponse, ResponseFields},
	}
	rewrite := func(s string) string {
		return "«" + strings.ReplaceAll(s, "alice@example.com", "[REDACTED:EMAIL]") + "\"\\\n\t\u2028\x01\xff»"
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := []byte(tt.body)
			orig := tt.fields(tt.shape, body)
			changed := slices.Clone(orig)
			for i := range changed {
				changed[i].Text = rewrite(changed[i].Text)
			}
			out, err := Replace(body, changed)
			if err != nil {
				t.Fatal(err)
			}
			if string(body) != tt.body {
				t.Fatal("Replace modified its input")
			}
			if !json.Valid(out) {
				t.Fatalf("invalid JSON: %s", out)
			}
			got := tt.fields(tt.shape, out)
			want := slices.Clone(changed)
			for i := range want {
				want[i].Text = validUTF8(want[i].Text)
			}
			if !slices.Equal(got, want) {
				t.Errorf("read back\n%q\nwant\n%q", got, want)
			}
			if a, b := skeleton(t, body, orig), skeleton(t, out, orig); a != b {
				t.Errorf("bytes outside the replaced strings changed:\n%s\n%s", a, b)
			}
			if strings.Contains(tt.body, "cache_control") && strings.Count(string(out), `"cache_control": {"type": "ephemeral"`) != strings.Count(tt.body, `"cache_control": {"type": "ephemeral"`) {
				t.Error("cache_control changed")
			}
		})
	}
}

// validUTF8 replaces every byte that is not valid UTF-8 with U+FFFD, as encoding/json does.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// skeleton returns body with the strings at the fields' paths blanked out.
func skeleton(t *testing.T, body []byte, fields []Field) string {
	t.Helper()
	var edits []edit
	for _, f := range fields {
		r := gjson.GetBytes(body, f.Path)
		if !rawAt(body, r) {
			t.Fatalf("%q not found", f.Path)
		}
		edits = append(edits, edit{start: r.Index, end: r.Index + len(r.Raw), text: "…", raw: true})
	}
	return string(appendEdited(nil, string(body), edits))
}

func TestReplace(t *testing.T) {
	body := []byte(`{"a":"x","b":{"c":"y"},"n":1,"s":"\u0041"}`)
	tests := []struct {
		name    string
		fields  []Field
		want    string
		wantErr string
	}{
		{"unchanged returns the input", []Field{{"a", "x"}, {"s", "A"}}, string(body), ""},
		{"no fields", nil, string(body), ""},
		{"one field", []Field{{"b.c", "z\"q"}}, `{"a":"x","b":{"c":"z\"q"},"n":1,"s":"\u0041"}`, ""},
		{"later field wins", []Field{{"a", "1"}, {"a", "2"}}, `{"a":"2","b":{"c":"y"},"n":1,"s":"\u0041"}`, ""},
		{"out of order", []Field{{"s", "B"}, {"a", "<>&"}}, `{"a":"<>&","b":{"c":"y"},"n":1,"s":"B"}`, ""},
		{"not a string", []Field{{"n", "2"}}, "", `no string at path "n"`},
		{"object", []Field{{"b", "2"}}, "", `no string at path "b"`},
		{"missing", []Field{{"zz", "2"}}, "", `no string at path "zz"`},
		{"gjson query syntax", []Field{{"b.#", "2"}}, "", `no string at path "b.#"`},
		{"duplicate key", []Field{{"", "x"}}, "", "duplicate JSON key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Replace(body, tt.fields)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(out) != tt.want {
				t.Fatalf("got (%s, %v), want %s", out, err, tt.want)
			}
			if tt.want == string(body) && len(out) > 0 && &out[0] != &body[0] {
				t.Error("unchanged input should come back as the same slice")
			}
		})
	}
}

// TestFieldsMalformed feeds bodies of the wrong shape: nothing panics, nothing is listed
// that is not a string.
func TestFieldsMalformed(t *testing.T) {
	bodies := []string{
		``, `null`, `[]`, `"str"`, `{`, `{"messages":`, `{"messages":{}}`, `{"messages":"hi"}`,
		`{"messages":[1,"x",null,[],{"content":42},{"content":{"text":"x"}},{"content":[1,{"type":1},{"type":"text","text":7}]}]}`,
		`{"tools":[{"function":"x"},{"function":{"parameters":"p"}},{"input_schema":[]}]}`,
		`{"system":7,"input":7,"instructions":[],"choices":[{"message":7}],"content":[{"type":"tool_use","input":"str"}],"output":{}}`,
		`{"messages":[{"content":[{"type":"tool_result","content":{"x":1}}]}]}`,
		`{"a":"` + strings.Repeat(`\`, 3) + `"}`,
		strings.Repeat(`{"input":`, 5000),
		`{"tools":[{"function":{"parameters":` + strings.Repeat(`[`, 1000) + `"deep"` + strings.Repeat(`]`, 1000) + `}}]}`,
	}
	for _, b := range bodies {
		for _, s := range []Shape{OpenAIChat, AnthropicMessages, OpenAIResponses} {
			for _, f := range append(RequestText([]byte(b)), ResponseFields(s, []byte(b))...) {
				if f.Text == "" {
					t.Errorf("%v %.40q: empty field %q", s, b, f.Path)
				}
			}
		}
	}
	// Text nested beyond maxDepth is still listed, as raw JSON that cannot be rewritten.
	deep := `{"tools":[{"function":{"parameters":` + strings.Repeat(`[`, 1000) + `"deep"` + strings.Repeat(`]`, 1000) + `}}]}`
	got := RequestText([]byte(deep))
	if len(got) != 1 || got[0].Path != "" || !strings.Contains(got[0].Text, `"deep"`) {
		t.Errorf("deep schema: %.80q", got)
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", "é ✓ 😀", "\"\\/\b\f\n\r\t\x00\x1f\x7f", "\u2028\u2029", "bad \xff\xfe utf8", "<script>&"} {
		enc := jsonString(s)
		var dec string
		if err := json.Unmarshal([]byte(enc), &dec); err != nil {
			t.Fatalf("%q → %s: %v", s, enc, err)
		}
		if want := validUTF8(s); dec != want {
			t.Errorf("%q → %s → %q", s, enc, dec)
		}
	}
	if got := jsonString("a\u2028\n\"<"); got != `"a\u2028\n\"<"` {
		t.Errorf("got %s", got)
	}
}

// requestText adapts RequestText to the shape-taking signature of ResponseFields.
func requestText(_ Shape, body []byte) []Field { return RequestText(body) }
