package cachectl

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStrip(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
	}{
		{"system block last member",
			`{"system":[{"type":"text","text":"You are Claude Code.","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
			`{"system":[{"type":"text","text":"You are Claude Code."}],"messages":[]}`},
		{"first member",
			`{"system":[{"cache_control":{"type":"ephemeral","ttl":"1h"},"type":"text","text":"x"}]}`,
			`{"system":[{"type":"text","text":"x"}]}`},
		{"middle member",
			`{"tools":[{"name":"Bash","cache_control":{"type":"ephemeral"},"input_schema":{"type":"object"}}]}`,
			`{"tools":[{"name":"Bash","input_schema":{"type":"object"}}]}`},
		{"only member", `{"messages":[{"role":"user","content":[{"cache_control":null}]}]}`, `{"messages":[{"role":"user","content":[{}]}]}`},
		{"nested tool_result blocks",
			`{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"ok","cache_control":{"type":"ephemeral"}}],"cache_control":{"type":"ephemeral"}}]}]}`,
			`{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":[{"type":"text","text":"ok"}]}]}]}`},
		{"top level", `{"model":"claude-sonnet-4-5","cache_control":{"type":"ephemeral"},"messages":[]}`, `{"model":"claude-sonnet-4-5","messages":[]}`},
		{"top level first", `{"cache_control":{"type":"ephemeral"},"model":"m"}`, `{"model":"m"}`},
		{"message level (OpenRouter)", `{"messages":[{"role":"user","content":"hi","cache_control":{"type":"ephemeral"}}]}`,
			`{"messages":[{"role":"user","content":"hi"}]}`},
		{"OpenAI chat content part",
			`{"model":"anthropic/claude-sonnet-4.5","messages":[{"role":"system","content":[{"type":"text","text":"big","cache_control":{"type":"ephemeral"}}]}]}`,
			`{"model":"anthropic/claude-sonnet-4.5","messages":[{"role":"system","content":[{"type":"text","text":"big"}]}]}`},
		{"duplicates and runs",
			`{"system":[{"cache_control":1,"cache_control":2,"type":"text","cache_control":3,"text":"x","cache_control":4,"cache_control":5}]}`,
			`{"system":[{"type":"text","text":"x"}]}`},
		{"all duplicates", `{"system":[{"cache_control":1,"cache_control":2}]}`, `{"system":[{}]}`},
		{"case and escapes",
			`{"system":[{"type":"text","Cache_Control":{},"text":"x","cache\u005fcontrol":{}}]}`,
			`{"system":[{"type":"text","text":"x"}]}`},
		{"pretty printed, last",
			"{\n  \"system\": [\n    {\n      \"type\": \"text\",\n      \"text\": \"x\",\n      \"cache_control\": {\"type\": \"ephemeral\"}\n    }\n  ]\n}\n",
			"{\n  \"system\": [\n    {\n      \"type\": \"text\",\n      \"text\": \"x\"\n    }\n  ]\n}\n"},
		{"pretty printed, first",
			"{\n  \"system\": [\n    {\n      \"cache_control\": {\"type\": \"ephemeral\"},\n      \"type\": \"text\"\n    }\n  ]\n}",
			"{\n  \"system\": [\n    {\n      \"type\": \"text\"\n    }\n  ]\n}"},
		{"pretty printed, only", "{\"system\": [ { \"cache_control\" : { } } ]}", "{\"system\": [ {  } ]}"},
		{"schemas and arguments kept",
			`{"tools":[{"name":"cfg","input_schema":{"type":"object","properties":{"cache_control":{"type":"string"}}},"cache_control":{"type":"ephemeral"}},` +
				`{"type":"function","function":{"name":"f","parameters":{"properties":{"cache_control":{}}}}},` +
				`{"type":"mcp_toolset","mcp_server_name":"s","configs":{"cache_control":{"enabled":false}}}],` +
				`"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"cfg","input":{"cache_control":"on"}}]},` +
				`{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"cache_control":1}}}]}]}`,
			`{"tools":[{"name":"cfg","input_schema":{"type":"object","properties":{"cache_control":{"type":"string"}}}},` +
				`{"type":"function","function":{"name":"f","parameters":{"properties":{"cache_control":{}}}}},` +
				`{"type":"mcp_toolset","mcp_server_name":"s","configs":{"cache_control":{"enabled":false}}}],` +
				`"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"cfg","input":{"cache_control":"on"}}]},` +
				`{"role":"assistant","tool_calls":[{"function":{"name":"f","arguments":{"cache_control":1}}}]}]}`},
		{"other members and strings kept",
			`{"metadata":{"cache_control":1},"messages":[{"role":"user","content":"\"cache_control\":{}"}]}`,
			`{"metadata":{"cache_control":1},"messages":[{"role":"user","content":"\"cache_control\":{}"}]}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changed := Strip([]byte(c.in))
			if string(got) != c.want || changed != (c.in != c.want) {
				t.Fatalf("Strip = %s, %v\nwant  %s", got, changed, c.want)
			}
			if !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			if HasCacheControl(got) {
				t.Errorf("HasCacheControl after Strip")
			}
			if HasCacheControl([]byte(c.in)) != changed {
				t.Errorf("HasCacheControl(in) = %v, want %v", !changed, changed)
			}
		})
	}
}

func TestStripUnchanged(t *testing.T) {
	for _, in := range []string{``, `null`, `[{"cache_control":1}]`, `"x"`, `{}`, `{"messages":[]}`,
		`{"messages":[{"cache_control":1}]`, `{"messages":[{"cache_control":1}]]}`, `{"system":"cache_control"}`} {
		b := []byte(in)
		got, changed := Strip(b)
		if changed || len(got) != len(b) || len(b) > 0 && &got[0] != &b[0] {
			t.Errorf("Strip(%s) = %s, %v; want the input itself", in, got, changed)
		}
	}
}

func TestStripFixture(t *testing.T) {
	body := fixture(t, "claude_code.json")
	orig := bytes.Clone(body)
	got, changed := Strip(body)
	if !changed || !json.Valid(got) || HasCacheControl(got) {
		t.Fatalf("Strip: changed=%v valid=%v", changed, json.Valid(got))
	}
	if !bytes.Equal(body, orig) {
		t.Fatal("Strip wrote to its input")
	}
	// Exactly the members go: the rest, decoded, is what remains.
	if want := strings.ReplaceAll(string(body), `,"cache_control":{"type":"ephemeral"}`, ""); string(got) != want {
		t.Errorf("Strip removed more than the members")
	}
	if n := strings.Count(string(body), `"cache_control"`); n != 4 {
		t.Fatalf("fixture has %d breakpoints, want 4", n)
	}
}

func TestForce(t *testing.T) {
	const bp = `"cache_control":{"type":"ephemeral"}`
	for _, c := range []struct {
		name, in, want string
	}{
		{"blocks",
			`{"model":"m","system":[{"type":"text","text":"a"},{"type":"text","text":"b"}],"tools":[{"name":"A","input_schema":{}},{"name":"B","input_schema":{}}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"q1"}]},{"role":"assistant","content":[{"type":"text","text":"a1"}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"},{"type":"text","text":"q2"}]}]}`,
			`{"model":"m","system":[{"type":"text","text":"a"},{"type":"text","text":"b",` + bp + `}],"tools":[{"name":"A","input_schema":{}},{"name":"B","input_schema":{},` + bp + `}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"q1"}]},{"role":"assistant","content":[{"type":"text","text":"a1"}]},` +
				`{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"r"},{"type":"text","text":"q2",` + bp + `}]}]}`},
		{"strings",
			`{"system":"You are \"helpful\".\n","messages":[{"role":"user","content":"Hi \u00e9"}]}`,
			`{"system":[{"type":"text","text":"You are \"helpful\".\n",` + bp + `}],"messages":[{"role":"user","content":[{"type":"text","text":"Hi \u00e9",` + bp + `}]}]}`},
		{"messages only", `{"messages":[{"role":"user","content":"x"}]}`,
			`{"messages":[{"role":"user","content":[{"type":"text","text":"x",` + bp + `}]}]}`},
		{"tools only, empty object", `{"tools":[{}],"messages":[]}`, `{"tools":[{` + bp + `}],"messages":[]}`},
		{"skips thinking",
			`{"messages":[{"role":"assistant","content":[{"type":"text","text":"t"},{"type":"thinking","thinking":"h","signature":"s"},{"type":"redacted_thinking","data":"d"}]}]}`,
			`{"messages":[{"role":"assistant","content":[{"type":"text","text":"t",` + bp + `},{"type":"thinking","thinking":"h","signature":"s"},{"type":"redacted_thinking","data":"d"}]}]}`},
		{"pretty printed",
			"{\n  \"system\": \"s\",\n  \"messages\": [\n    {\"role\": \"user\", \"content\": [\n      {\"type\": \"text\", \"text\": \"x\"}\n    ]}\n  ]\n}",
			"{\n  \"system\": [{\"type\":\"text\",\"text\":\"s\"," + bp + "}],\n  \"messages\": [\n    {\"role\": \"user\", \"content\": [\n      {\"type\": \"text\", \"text\": \"x\"," + bp + "}\n    ]}\n  ]\n}"},
		{"last duplicate", `{"system":"a","system":"b"}`, `{"system":"a","system":[{"type":"text","text":"b",` + bp + `}]}`},
		{"nothing to mark", `{"system":"","tools":[],"messages":[{"role":"user","content":""}]}`, `{"system":"","tools":[],"messages":[{"role":"user","content":""}]}`},
		{"empty messages", `{"model":"m","messages":[]}`, `{"model":"m","messages":[]}`},
		{"non-object entries", `{"tools":["x"],"system":[1],"messages":[{"role":"user","content":[null,"y"]}]}`,
			`{"tools":["x"],"system":[1],"messages":[{"role":"user","content":[null,"y"]}]}`},
		{"last message not an object", `{"messages":[{"role":"user","content":"x"},7]}`, `{"messages":[{"role":"user","content":"x"},7]}`},
		{"already has one", `{"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`,
			`{"system":"s","messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}`},
		{"already has a top-level one", `{"cache_control":{"type":"ephemeral"},"system":"s"}`, `{"cache_control":{"type":"ephemeral"},"system":"s"}`},
		{"invalid", `{"system":"s","messages":[`, `{"system":"s","messages":[`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, changed := Force([]byte(c.in))
			if string(got) != c.want || changed != (c.in != c.want) {
				t.Fatalf("Force = %s, %v\nwant  %s", got, changed, c.want)
			}
			if json.Valid([]byte(c.in)) && !json.Valid(got) {
				t.Fatalf("invalid JSON: %s", got)
			}
			if again, changed := Force(got); changed || !bytes.Equal(again, got) {
				t.Errorf("Force is not idempotent: %s", again)
			}
			if changed {
				if back, _ := Strip(got); !json.Valid(back) || HasCacheControl(back) {
					t.Errorf("Strip(Force(x)) = %s", back)
				}
			}
		})
	}
}

func TestForceFixture(t *testing.T) {
	stripped, _ := Strip(fixture(t, "claude_code.json"))
	got, changed := Force(stripped)
	if !changed || !json.Valid(got) {
		t.Fatalf("Force: changed=%v valid=%v", changed, json.Valid(got))
	}
	if n := strings.Count(string(got), `"cache_control"`); n != 3 {
		t.Errorf("Force added %d breakpoints, want 3 (tools, system, last message)", n)
	}
	var req struct {
		System   []map[string]any `json:"system"`
		Tools    []map[string]any `json:"tools"`
		Messages []struct {
			Content []map[string]any `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(got, &req); err != nil {
		t.Fatal(err)
	}
	last := req.Messages[len(req.Messages)-1].Content
	for name, block := range map[string]map[string]any{
		"last tool":             req.Tools[len(req.Tools)-1],
		"last system block":     req.System[len(req.System)-1],
		"last block of message": last[len(last)-1],
	} {
		if _, ok := block["cache_control"]; !ok {
			t.Errorf("%s has no breakpoint", name)
		}
	}
}
