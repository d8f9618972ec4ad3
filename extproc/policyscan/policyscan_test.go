package policyscan

import (
	"os"
	"slices"
	"testing"

	"github.com/sluice-gateway/sluice/extproc/content"
)

// collect runs a visitor and returns what it reported.
func collect(visit func(fn func(string) bool)) []string {
	var got []string
	visit(func(s string) bool {
		got = append(got, s)
		return true
	})
	return got
}

func tools(body string, s content.Shape) []string {
	return collect(func(fn func(string) bool) { Tools([]byte(body), s, fn) })
}

func servers(body string) []string {
	return collect(func(fn func(string) bool) { MCPServers([]byte(body), fn) })
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestToolsFixtures(t *testing.T) {
	for _, c := range []struct {
		file  string
		shape content.Shape
		want  []string
	}{
		{"claude_code.json", content.AnthropicMessages, []string{"Task", "Bash", "Glob", "Grep", "ExitPlanMode",
			"Read", "Edit", "Write", "NotebookEdit", "WebFetch", "TodoWrite", "WebSearch", "BashOutput", "KillShell",
			"SlashCommand", "mcp__github__get_issue", "mcp__github__create_pull_request"}},
		{"codex_responses.json", content.OpenAIResponses, []string{"shell", "update_plan", "apply_patch", "web_search",
			"view_image", "mcp__github__", "get_issue", "search_code"}},
	} {
		t.Run(c.file, func(t *testing.T) {
			got := collect(func(fn func(string) bool) { Tools(fixture(t, c.file), c.shape, fn) })
			if !slices.Equal(got, c.want) {
				t.Errorf("Tools = %q\nwant %q", got, c.want)
			}
			if got := collect(func(fn func(string) bool) { MCPServers(fixture(t, c.file), fn) }); len(got) != 0 {
				t.Errorf("MCPServers = %q, want none", got)
			}
		})
	}
}

func TestTools(t *testing.T) {
	for _, c := range []struct {
		name  string
		shape content.Shape
		body  string
		want  []string
	}{
		// OpenAI chat completions (OpenAI SDK shapes).
		{"chat/function and custom", content.OpenAIChat, `{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}],
			"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather.","parameters":{"type":"object","properties":{"name":{"type":"string"}}}}},
			{"type":"custom","custom":{"name":"run_sql","format":{"type":"text"}}}]}`, []string{"get_weather", "run_sql"}},
		{"chat/legacy functions", content.OpenAIChat, `{"functions":[{"name":"lookup","parameters":{}}],"function_call":{"name":"lookup"}}`,
			[]string{"lookup", "lookup"}},
		{"chat/function_call mode", content.OpenAIChat, `{"functions":[{"name":"a"}],"function_call":"auto"}`, []string{"a"}},
		{"chat/tool_choice only", content.OpenAIChat, `{"tool_choice":{"type":"function","function":{"name":"delete_repo"}}}`,
			[]string{"delete_repo"}},
		{"chat/tool_choice custom", content.OpenAIChat, `{"tool_choice":{"type":"custom","custom":{"name":"run_sql"}}}`, []string{"run_sql"}},
		{"chat/tool_choice mode", content.OpenAIChat, `{"tools":[{"type":"function","function":{"name":"a"}}],"tool_choice":"required"}`,
			[]string{"a"}},
		{"chat/allowed_tools", content.OpenAIChat, `{"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto",
			"tools":[{"type":"function","function":{"name":"get_weather"}},{"type":"custom","custom":{"name":"x"}}]}}}`,
			[]string{"get_weather", "x"}},
		{"chat/mcp entry is no tool", content.OpenAIChat, `{"tools":[{"type":"mcp","server_label":"wiki","server_url":"https://wiki.example/mcp"}]}`, nil},
		{"chat/history not checked", content.OpenAIChat, `{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"rm_rf","arguments":"{}"}}]}]}`, nil},

		// OpenAI Responses (Codex and SDK shapes).
		{"responses/built-ins", content.OpenAIResponses, `{"tools":[{"type":"web_search_preview","search_context_size":"low"},
			{"type":"file_search","vector_store_ids":["vs_1"]},{"type":"code_interpreter","container":{"type":"auto"}},
			{"type":"computer_use_preview","display_width":1024},{"type":"image_generation"},{"type":"local_shell"},
			{"type":"shell"},{"type":"apply_patch"}]}`,
			[]string{"web_search_preview", "file_search", "code_interpreter", "computer_use_preview", "image_generation", "local_shell", "shell", "apply_patch"}},
		{"responses/function and custom", content.OpenAIResponses, `{"tools":[{"type":"function","name":"shell","parameters":{"properties":{"name":{"type":"string"}}}},
			{"type":"custom","name":"apply_patch","format":{"type":"grammar","syntax":"lark","definition":"start: x"}}]}`,
			[]string{"shell", "apply_patch"}},
		{"responses/namespace", content.OpenAIResponses, `{"tools":[{"type":"namespace","name":"mcp__github__","description":"d",
			"tools":[{"type":"function","name":"get_issue"},{"type":"custom","name":"exec"}]}]}`,
			[]string{"mcp__github__", "get_issue", "exec"}},
		{"responses/name before type", content.OpenAIResponses, `{"tools":[{"name":"ns","tools":[{"name":"inner"}],"type":"namespace"}]}`,
			[]string{"ns", "inner"}},
		{"responses/mcp entry is no tool", content.OpenAIResponses, `{"tools":[{"type":"mcp","server_label":"deepwiki","server_url":"https://mcp.deepwiki.com/mcp","allowed_tools":["ask_question"],"require_approval":"never"}]}`, nil},
		{"responses/tool_choice only", content.OpenAIResponses, `{"tool_choice":{"type":"function","name":"deploy"}}`, []string{"deploy"}},
		{"responses/tool_choice built-in", content.OpenAIResponses, `{"tool_choice":{"type":"web_search_preview"}}`, []string{"web_search_preview"}},
		{"responses/tool_choice mcp", content.OpenAIResponses, `{"tool_choice":{"type":"mcp","server_label":"deepwiki","name":"ask_question"}}`, nil},
		{"responses/allowed_tools", content.OpenAIResponses, `{"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[
			{"type":"function","name":"get_weather"},{"type":"mcp","server_label":"deepwiki"},{"type":"image_generation"}]}}`,
			[]string{"get_weather", "image_generation"}},
		{"responses/additional_tools", content.OpenAIResponses, `{"input":[{"type":"additional_tools","role":"developer","tools":[
			{"type":"namespace","name":"functions","tools":[{"type":"function","name":"exec_command"}]}]},
			{"role":"user","content":"Inspect git status."}]}`, []string{"functions", "exec_command"}},
		{"responses/history not checked", content.OpenAIResponses, `{"input":[{"type":"function_call","name":"rm_rf","arguments":"{}","call_id":"c"},
			{"type":"mcp_call","server_label":"x","name":"y"}]}`, nil},

		// Anthropic Messages (Claude Code and SDK shapes).
		{"messages/custom and server tools", content.AnthropicMessages, `{"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"name":{"type":"string"}}}},
			{"type":"custom","name":"Bash","input_schema":{}},{"type":"web_search_20250305","name":"web_search","max_uses":5},
			{"type":"text_editor_20250728","name":"str_replace_based_edit_tool"}]}`,
			[]string{"get_weather", "Bash", "web_search", "str_replace_based_edit_tool"}},
		{"messages/mcp_toolset is no tool", content.AnthropicMessages, `{"tools":[{"type":"mcp_toolset","mcp_server_name":"github"}]}`, nil},
		{"messages/tool_choice only", content.AnthropicMessages, `{"tool_choice":{"type":"tool","name":"Write"}}`, []string{"Write"}},
		{"messages/tool_choice any", content.AnthropicMessages, `{"tools":[{"name":"a"}],"tool_choice":{"type":"any"}}`, []string{"a"}},
		{"messages/history not checked", content.AnthropicMessages, `{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"rm_rf","input":{"name":"x"}}]}]}`, nil},

		// Evasions.
		{"duplicate tools member", content.AnthropicMessages, `{"tools":[{"name":"Read"}],"tools":[{"name":"Bash"}]}`, []string{"Read", "Bash"}},
		{"duplicate name member", content.OpenAIResponses, `{"tools":[{"type":"function","name":"ok","name":"evil"}]}`, []string{"ok", "evil"}},
		{"duplicate type member", content.OpenAIResponses, `{"tools":[{"type":"mcp","name":"evil","type":"function"}]}`, []string{"evil"}},
		{"case-folded keys", content.OpenAIChat, `{"Tools":[{"Type":"function","Function":{"Name":"evil"}}]}`, []string{"evil"}},
		{"escaped keys and values", content.AnthropicMessages, `{"t\u006fols":[{"n\u0061me":"B\u0061sh"}]}`, []string{"Bash"}},
		{"escaped built-in type", content.OpenAIResponses, `{"tools":[{"type":"web\u005fsearch"}]}`, []string{"web_search"}},

		// Odd values.
		{"non-string names", content.AnthropicMessages, `{"tools":[{"name":7},{"name":null},{"name":""},{"name":["x"]},"str",3,null]}`, nil},
		{"tools not an array", content.OpenAIResponses, `{"tools":{"name":"x"},"tool_choice":7}`, nil},
		{"non-object tool", content.OpenAIChat, `{"tools":["get_weather",null,[{"type":"function","function":{"name":"x"}}]]}`, nil},
		{"not an object", content.OpenAIChat, `[{"tools":[{"type":"web_search"}]}]`, nil},
		{"empty", content.OpenAIChat, ``, nil},
		{"unknown shape reads all", content.Shape(0), `{"tools":[{"name":"a"},{"type":"function","function":{"name":"b"}}],"functions":[{"name":"c"}]}`,
			[]string{"a", "b", "c"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := tools(c.body, c.shape); !slices.Equal(got, c.want) {
				t.Errorf("Tools = %q, want %q", got, c.want)
			}
		})
	}
}

func TestMCPServers(t *testing.T) {
	for _, c := range []struct {
		name string
		body string
		want []string
	}{
		{"anthropic connector", `{"mcp_servers":[{"type":"url","url":"https://mcp.example.com/sse","name":"example","authorization_token":"secret"}],
			"tools":[{"type":"mcp_toolset","mcp_server_name":"example","default_config":{"enabled":false}}]}`,
			[]string{"https://mcp.example.com/sse", "example", "example"}},
		{"responses mcp tool", `{"tools":[{"type":"function","name":"f"},{"type":"mcp","server_label":"deepwiki","server_url":"https://mcp.deepwiki.com/mcp","require_approval":"never"},
			{"type":"mcp","server_label":"Dropbox","connector_id":"connector_dropbox","authorization":"tok"}]}`,
			[]string{"deepwiki", "https://mcp.deepwiki.com/mcp", "Dropbox", "connector_dropbox"}},
		{"chat mcp tool", `{"messages":[],"tools":[{"type":"mcp","server_label":"wiki","server_url":"https://wiki.example/mcp"}]}`,
			[]string{"wiki", "https://wiki.example/mcp"}},
		{"tool_choice", `{"tool_choice":{"type":"mcp","server_label":"deepwiki","name":"ask_question"}}`, []string{"deepwiki"}},
		{"allowed_tools", `{"tool_choice":{"type":"allowed_tools","mode":"auto","tools":[{"type":"mcp","server_label":"a"}]}}`, []string{"a"}},
		{"additional_tools", `{"input":[{"type":"additional_tools","tools":[{"type":"mcp","server_label":"b","server_url":"https://b.example"}]}]}`,
			[]string{"b", "https://b.example"}},
		{"history not checked", `{"input":[{"type":"mcp_call","server_label":"x","name":"y"},{"type":"mcp_list_tools","server_label":"x","tools":[]}]}`, nil},
		{"escaped and duplicated", `{"mcp_servers":[{"url":"https:\/\/a.example","url":"https://b.example"}]}`,
			[]string{"https://a.example", "https://b.example"}},
		{"odd values", `{"mcp_servers":[{"url":5,"name":null},"x",null],"tools":[1,{"server_label":{}}],"tool_choice":"auto"}`, nil},
		{"invalid", `{"mcp_servers":[{"url":"https://a.example"`, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := servers(c.body); !slices.Equal(got, c.want) {
				t.Errorf("MCPServers = %q, want %q", got, c.want)
			}
		})
	}
}

// TestStop: each visitor stops at the first false, wherever it is.
func TestStop(t *testing.T) {
	cc, cx := fixture(t, "claude_code.json"), fixture(t, "codex_responses.json")
	mcp := []byte(`{"mcp_servers":[{"name":"a","url":"b"}],"tools":[{"server_label":"c"}]}`)
	for name, visit := range map[string]func(fn func(string) bool){
		"Tools/messages":  func(fn func(string) bool) { Tools(cc, content.AnthropicMessages, fn) },
		"Tools/responses": func(fn func(string) bool) { Tools(cx, content.OpenAIResponses, fn) },
		"MCPServers":      func(fn func(string) bool) { MCPServers(mcp, fn) },
		"URLs/messages":   func(fn func(string) bool) { URLs(cc, fn) },
		"URLs/responses":  func(fn func(string) bool) { URLs(cx, fn) },
	} {
		all := collect(visit)
		if len(all) < 2 {
			t.Fatalf("%s: want at least 2 items, got %q", name, all)
		}
		for stop := 1; stop <= len(all); stop++ {
			var got []string
			visit(func(s string) bool {
				got = append(got, s)
				return len(got) < stop
			})
			if !slices.Equal(got, all[:stop]) {
				t.Errorf("%s: stopping after %d gave %q", name, stop, got)
			}
		}
	}
}

func TestUnescape(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`plain`, "plain"},
		{`a\"b\\c\/d\b\f\n\r\t`, "a\"b\\c/d\b\f\n\r\t"},
		{`\u0041\u00e9\u20ac`, "Aé€"},
		{`\ud83d\ude00`, "😀"},
		{`\ud83d`, "\ufffd"},
		{`\ud83dx`, "\ufffdx"},
		{`\ude00\ud83d`, "\ufffd\ufffd"},
		{`\ud83d\u0041`, "\ufffdA"},
		{`\uZZZZ`, `\uZZZZ`},
		{`\u12`, `\u12`},
		{`trailing\`, `trailing\`},
		{`\x`, `\x`},
	} {
		if got := string(unescape(nil, c.in)); got != c.want {
			t.Errorf("unescape(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
