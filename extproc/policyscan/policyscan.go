// Package policyscan lists what a request body asks the provider to use: the tools it
// offers or forces, the remote MCP servers it connects, and the URLs in what the model
// reads. It only extracts; the caller matches the names against its allow and deny lists.
//
// Every function visits items in body order (within one tools[] entry, a built-in type
// before names) and stops as soon as the callback returns false. The string given to a callback may share memory with body: it stays
// valid as long as body is not modified (clone it to keep it longer). Nothing is allocated
// per item unless the item is JSON-escaped in the body.
//
// The scan is built to be hard to slip past, so that a deny list holds:
//   - Member names match case-insensitively ("Tools" counts as "tools"): Sluice's own
//     translators decode bodies with encoding/json, which does the same.
//   - A member that appears twice is read every time: decoders disagree on which one wins.
//   - Escapes are decoded ("https:\/\/", "\u0074ools"). Values (types, names) match exactly.
//
// Only what a request offers or forces is reported, not the tool calls and MCP calls in its
// history: those were offered, and checked, by the request that produced them.
package policyscan

import (
	"strings"

	"github.com/sluice-gateway/sluice/extproc/content"

	"github.com/sluice-gateway/sluice/internal/jsonscan"
)

// maxNesting bounds how deep namespace tools may nest in one another (Codex uses one level).
const maxNesting = 4

// Tools calls fn with the name of every tool the request offers or forces, per shape s:
//
//   - OpenAIChat: tools[].function.name and tools[].custom.name; the legacy functions[].name;
//     tool_choice.function.name / tool_choice.custom.name, every tool of an "allowed_tools"
//     tool_choice, and the legacy function_call.name.
//   - OpenAIResponses: tools[].name; a built-in tool (web_search, file_search,
//     code_interpreter, computer_use_preview, image_generation, local_shell, shell,
//     apply_patch, …) is reported by its type, so that a deny list can say "^web_search".
//     A namespace (Codex: {"type":"namespace","name":"mcp__github__","tools":[…]}) is
//     reported by its name and then by the name of each tool in it, so rules can match the
//     whole namespace or one tool. tool_choice is read like a tools[] entry, and an
//     "allowed_tools" tool_choice like a tools list. Codex "Responses Lite" offers tools in
//     input[] items of type "additional_tools"; they count as tools[] entries.
//   - AnthropicMessages: tools[].name of every entry, custom or server tool
//     ({"type":"web_search_20250305","name":"web_search"} is "web_search": the API fixes
//     server tool names); tool_choice.name.
//
// Remote MCP servers are not tools: entries of type "mcp" (OpenAI) and "mcp_toolset"
// (Anthropic) are left to [MCPServers]. An entry naming several types (a duplicated
// "type" member) counts as each of them. OpenAIChat and OpenAIResponses bodies are read
// by the same tools[] and tool_choice rules (OpenAI-compatible servers mix the shapes); a
// shape this package does not know is read as both, which also covers every Anthropic
// name.
func Tools(body []byte, s content.Shape, fn func(name string) bool) {
	if s == content.AnthropicMessages {
		eachMember(jsonscan.String(body), func(k, v string) bool {
			switch {
			case strings.EqualFold(k, "tools"):
				return eachElement(v, func(e string) bool { return anthropicTool(e, fn) })
			case strings.EqualFold(k, "tool_choice"):
				return stringMembers(v, fn, "name")
			}
			return true
		})
		return
	}
	chat, responses := s != content.OpenAIResponses, s != content.OpenAIChat
	offered := func(e string) bool { return openAITool(e, 0, fn) }
	eachMember(jsonscan.String(body), func(k, v string) bool {
		switch {
		case strings.EqualFold(k, "tools"):
			return eachElement(v, offered)
		case strings.EqualFold(k, "tool_choice"):
			return openAIChoice(v, offered)
		case chat && strings.EqualFold(k, "functions"):
			return eachElement(v, func(e string) bool { return stringMembers(e, fn, "name") })
		case chat && strings.EqualFold(k, "function_call"):
			return stringMembers(v, fn, "name")
		case responses && strings.EqualFold(k, "input"):
			return eachAdditionalTools(v, offered)
		}
		return true
	})
}

// anthropicTool reports the names of an Anthropic tools[] entry unless it is an MCP
// toolset.
func anthropicTool(e string, fn func(string) bool) bool {
	if !isObject(e) {
		return true
	}
	typed, tool := false, false
	eachMember(e, func(k, v string) bool {
		if strings.EqualFold(k, "type") {
			typed = true
			if t, _ := str(v); t != "mcp_toolset" {
				tool = true
			}
		}
		return true
	})
	if typed && !tool {
		return true
	}
	return stringMembers(e, fn, "name")
}

// openAITool reports the names of an OpenAI tools[] entry (chat or Responses shape), or of
// a tool_choice naming one tool.
func openAITool(e string, depth int, fn func(string) bool) bool {
	if !isObject(e) {
		return true
	}
	typed, tool, namespace := false, false, false
	ok := eachMember(e, func(k, v string) bool {
		if !strings.EqualFold(k, "type") {
			return true
		}
		typed = true
		t, _ := str(v)
		switch t {
		case "mcp":
		case "namespace":
			tool, namespace = true, true
		case "function", "custom", "":
			tool = true
		default: // a built-in tool: its type is its name
			tool = true
			return fn(t)
		}
		return true
	})
	if !ok || typed && !tool {
		return ok
	}
	return eachMember(e, func(k, v string) bool {
		switch {
		case strings.EqualFold(k, "name"):
			return emit(v, fn)
		case strings.EqualFold(k, "function"), strings.EqualFold(k, "custom"):
			return stringMembers(v, fn, "name")
		case namespace && depth < maxNesting && strings.EqualFold(k, "tools"):
			return eachElement(v, func(e string) bool { return openAITool(e, depth+1, fn) })
		}
		return true
	})
}

// openAIChoice reports the tools an OpenAI tool_choice forces or allows. A string
// ("auto", "none", "required") names none.
func openAIChoice(v string, offered func(string) bool) bool {
	if !isObject(v) {
		return true
	}
	allowed := false
	eachMember(v, func(k, v string) bool {
		if strings.EqualFold(k, "type") {
			if t, _ := str(v); t == "allowed_tools" {
				allowed = true
			}
		}
		return true
	})
	if !allowed {
		return offered(v)
	}
	return eachAllowedTool(v, offered)
}

// eachAllowedTool calls fn with each tool listed by an "allowed_tools" tool_choice:
// {"tools":[…]} in Responses, {"allowed_tools":{"tools":[…]}} in chat.
func eachAllowedTool(choice string, fn func(string) bool) bool {
	return eachMember(choice, func(k, v string) bool {
		switch {
		case strings.EqualFold(k, "tools"):
			return eachElement(v, fn)
		case strings.EqualFold(k, "allowed_tools"):
			return eachMember(v, func(k, v string) bool {
				if strings.EqualFold(k, "tools") {
					return eachElement(v, fn)
				}
				return true
			})
		}
		return true
	})
}

// eachAdditionalTools calls fn with each tool of the "additional_tools" items of a
// Responses input array.
func eachAdditionalTools(input string, fn func(string) bool) bool {
	return eachElement(input, func(item string) bool {
		if !isObject(item) {
			return true
		}
		additional := false
		eachMember(item, func(k, v string) bool {
			if strings.EqualFold(k, "type") {
				if t, _ := str(v); t == "additional_tools" {
					additional = true
					return false
				}
			}
			return true
		})
		if !additional {
			return true
		}
		return eachMember(item, func(k, v string) bool {
			if strings.EqualFold(k, "tools") {
				return eachElement(v, fn)
			}
			return true
		})
	})
}

// MCPServers calls fn with the identity of every remote MCP server the request connects
// the provider to. Each identifying member is reported, so rules can match a server by
// label or by address:
//
//   - Anthropic mcp_servers[] ({"type":"url","url":"https://…","name":"x"}): name and url.
//   - tools[] of type "mcp_toolset" (Anthropic MCP connector): mcp_server_name.
//   - tools[] of type "mcp" (OpenAI Responses; also accepted in chat bodies):
//     server_label, and server_url or connector_id.
//   - tool_choice {"type":"mcp","server_label":…} and the "mcp" tools of an
//     "allowed_tools" tool_choice; Codex "additional_tools" input items, as tools[].
//
// The shape does not matter: these members only ever name MCP servers, so every known
// place is read in every body, whatever the entry's type says. Client-side MCP tools (Claude
// Code's "mcp__github__get_issue", a Codex namespace) run in the client: they are tools,
// reported by [Tools].
func MCPServers(body []byte, fn func(id string) bool) {
	server := func(e string) bool {
		return stringMembers(e, fn, "server_label", "server_url", "connector_id", "mcp_server_name")
	}
	eachMember(jsonscan.String(body), func(k, v string) bool {
		switch {
		case strings.EqualFold(k, "mcp_servers"):
			return eachElement(v, func(e string) bool { return stringMembers(e, fn, "name", "url") })
		case strings.EqualFold(k, "tools"):
			return eachElement(v, server)
		case strings.EqualFold(k, "tool_choice"):
			return server(v) && eachAllowedTool(v, server)
		case strings.EqualFold(k, "input"):
			return eachAdditionalTools(v, server)
		}
		return true
	})
}

// stringMembers calls fn with the non-empty string value of every member of obj whose key
// is one of keys.
func stringMembers(obj string, fn func(string) bool, keys ...string) bool {
	if !isObject(obj) {
		return true
	}
	return eachMember(obj, func(k, v string) bool {
		for _, want := range keys {
			if strings.EqualFold(k, want) {
				return emit(v, fn)
			}
		}
		return true
	})
}

// emit calls fn with the JSON string raw if it is a non-empty string.
func emit(raw string, fn func(string) bool) bool {
	if s, ok := str(raw); ok && s != "" {
		return fn(s)
	}
	return true
}
