package policyscan

import (
	"encoding/json"
	"slices"
	"testing"
	"unicode/utf8"

	"github.com/sluice-gateway/sluice/extproc/content"
)

// FuzzScan: no input makes a visitor panic, and on valid JSON URLs agrees with the
// encoding/json reference.
func FuzzScan(f *testing.F) {
	// The fixtures are too big for seeds: the fuzzer's mutator crawls on 30 KB inputs.
	for _, s := range []string{
		`{"model":"claude-sonnet-4-5","system":[{"type":"text","text":"You are Claude Code.\nSee https://docs.claude.com.","cache_control":{"type":"ephemeral"}}],` +
			`"messages":[{"role":"user","content":[{"type":"text","text":"Fix [it](https://github.com/o/r/issues/1)"},{"type":"image","source":{"type":"url","url":"https://i.example/a.png"}}]},` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"Bash","input":{"command":"curl https://x.example"}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"\u001b[31mFAIL\u001b[0m"}]}]}],` +
			`"tools":[{"name":"Bash","description":"Run","input_schema":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object"}},` +
			`{"type":"web_search_20250305","name":"web_search"},{"type":"mcp_toolset","mcp_server_name":"gh"}],"mcp_servers":[{"type":"url","url":"https://mcp.example/sse","name":"gh"}],` +
			`"tool_choice":{"type":"tool","name":"Bash"}}`,
		`{"model":"gpt-5-codex","instructions":"You are Codex.\n","input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"see HTTPS://A.EXAMPLE/x."}]},` +
			`{"type":"function_call","name":"shell","arguments":"{\"command\":[\"curl\",\"https:\\/\\/b.example\"]}","call_id":"c"}],` +
			`"tools":[{"type":"function","name":"shell","parameters":{"type":"object"}},{"type":"custom","name":"apply_patch"},{"type":"web_search"},` +
			`{"type":"mcp","server_label":"wiki","server_url":"https://wiki.example/mcp"}],"tool_choice":"auto"}`,
		`{"tools":[{"type":"namespace","name":"n","tools":[{"type":"function","name":"f"}]}],"tool_choice":{"type":"allowed_tools","tools":[{"type":"mcp","server_label":"x"}]}}`,
		`{"messages":[{"content":"see https:\/\/a.example\/x. and \u0068ttp://b.example)"}],"mcp_servers":[{"url":"https://m.example","name":"m"}]}`,
		`{"input":[{"type":"additional_tools","tools":[{"type":"web_search"}]}],"functions":[{"name":"x"}],"function_call":{"name":"x"}}`,
		`{"tools":[{"name":"a"`, `{"a":"\`, `{"messages":[[[[[`, `{"messages":"\ud800"}`, `{"":}`, `{"tools":[1,"x",{}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		all := func(string) bool { return true }
		for _, s := range []content.Shape{0, content.OpenAIChat, content.AnthropicMessages, content.OpenAIResponses} {
			Tools(body, s, all)
		}
		MCPServers(body, all)
		got := collect(func(fn func(string) bool) { URLs(body, fn) })
		if json.Valid(body) && utf8.Valid(body) {
			if want := referenceURLs(t, body); !slices.Equal(got, want) {
				t.Fatalf("URLs = %q\nreference %q", got, want)
			}
		}
	})
}

// FuzzUnescape: unescape decodes every valid JSON string as encoding/json does.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`a\"b`, `\u00e9\ud83d\ude00`, `\ud83d\u0041`, `\/\b\f\n\r\t`, `\ude00`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := string(unescape(nil, s))
		var want string
		if !utf8.ValidString(s) || json.Unmarshal([]byte(`"`+s+`"`), &want) != nil {
			return
		}
		if got != want {
			t.Fatalf("unescape(%q) = %q, want %q", s, got, want)
		}
	})
}
