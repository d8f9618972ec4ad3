// Package cachectl applies a prompt-cache mode to a request body: leave the client's
// cache_control breakpoints alone, strip them all, or add breakpoints where the client set
// none, as the X-Sluice-Cache header's respect, disable and force ask.
//
// Bodies are edited by splicing bytes: everything but the removed or inserted members
// reaches the provider byte for byte, and the input slice is never written to.
package cachectl

import (
	"slices"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/internal/jsonscan"
)

// Strip removes every cache_control member from an Anthropic Messages body (and from an
// OpenAI chat body, whose OpenAI-compatible providers accept the same member on content
// parts), and reports whether it removed any. A member is removed with the comma that
// separated it; all other bytes stay as they were. When nothing is removed, or body cannot
// be read as a JSON object, body itself is returned; otherwise a new slice.
//
// Where it looks:
//   - the top-level cache_control (Anthropic's automatic caching);
//   - anywhere inside the top-level messages, system and tools values, at any depth up to
//     64: system blocks, messages (OpenRouter and LiteLLM accept one on a message), content
//     blocks, the content blocks nested in a tool_result, tool definitions;
//   - but not inside input_schema, parameters, input, input_examples, arguments or
//     configs: those hold a tool's JSON schema, tool-call arguments or maps keyed by tool
//     names, where "cache_control" can be a property of the client's own data. Nor in any
//     other top-level member, nor inside strings.
//
// Member names match case-insensitively and after unescaping ("Cache_Control",
// "cache\u005fcontrol"): Sluice's translators decode with encoding/json, which accepts
// both. Every copy of a duplicated member goes.
func Strip(body []byte) ([]byte, bool) {
	w := walker{s: jsonscan.String(body)}
	if !w.walk() || w.n == 0 {
		return body, false
	}
	cuts := [2][]span{w.cuts[:w.n], w.more}
	n := len(body)
	for _, cs := range cuts {
		for _, c := range cs {
			n -= c.end - c.start
		}
	}
	out := make([]byte, 0, n)
	pos := 0
	for _, cs := range cuts {
		for _, c := range cs {
			out = append(out, body[pos:c.start]...)
			pos = c.end
		}
	}
	return append(out, body[pos:]...), true
}

// HasCacheControl reports whether the body has a cache_control member anywhere [Strip]
// would remove one.
func HasCacheControl(body []byte) bool {
	w := walker{s: jsonscan.String(body), first: true}
	w.walk()
	return w.found
}

// breakpoint is the member Force adds.
const breakpoint = `"cache_control":{"type":"ephemeral"}`

// Force adds {"type":"ephemeral"} cache breakpoints to an Anthropic Messages body that has
// none ([HasCacheControl] is false) and reports whether it added any:
//
//   - on the last tools[] entry;
//   - on the last system block; a string system becomes one text block carrying it;
//   - on the last content block of the last message that can carry one (not thinking or
//     redacted_thinking); a string content becomes one text block carrying it.
//
// That is at most 3 breakpoints, within Anthropic's limit of 4. Empty strings, empty
// arrays and non-object entries get none. Where a member is duplicated, the last copy is
// edited: most decoders keep that one. A body that already has a breakpoint, or is not a
// JSON object it can read, is returned as is, so Force(Force(b)) equals Force(b).
func Force(body []byte) ([]byte, bool) {
	s := jsonscan.String(body)
	w := walker{s: s, first: true}
	if !w.walk() || w.found {
		return body, false
	}
	// One pass over the top level finds the members and the last tool and message.
	var system, lastTool, lastMessage span
	var hasTool, hasMessage bool
	members(s, jsonscan.SkipSpace(s, 0), func(key string, _, vs int) int {
		switch key {
		case "tools":
			var end int
			lastTool, hasTool, end = lastElement(s, vs, nil)
			return end
		case "messages":
			var end int
			lastMessage, hasMessage, end = lastElement(s, vs, nil)
			return end
		case "system":
			system = span{vs, jsonscan.ValueEnd(s, vs)}
			return system.end
		}
		return jsonscan.ValueEnd(s, vs)
	})
	var edits [3]edit
	n := 0
	add := func(e edit, ok bool) {
		if ok {
			edits[n] = e
			n++
		}
	}
	if hasTool {
		add(markObject(s, lastTool))
	}
	add(markBlocks(s, system))
	if hasMessage && s[lastMessage.start] == '{' {
		var content span
		members(s, lastMessage.start, func(key string, _, vs int) int {
			ve := jsonscan.ValueEnd(s, vs)
			if key == "content" {
				content = span{vs, ve}
			}
			return ve
		})
		add(markBlocks(s, content))
	}
	if n == 0 {
		return body, false
	}
	ed := edits[:n]
	slices.SortFunc(ed, func(a, b edit) int { return a.start - b.start })
	size := len(body)
	for _, e := range ed {
		size += len(e.pre) + len(e.keep) + len(e.post) - (e.end - e.start)
	}
	out := make([]byte, 0, size)
	pos := 0
	for _, e := range ed {
		out = append(out, body[pos:e.start]...)
		out = append(out, e.pre...)
		out = append(out, e.keep...)
		out = append(out, e.post...)
		pos = e.end
	}
	return append(out, body[pos:]...), true
}

// edit replaces body[start:end] with pre + keep + post.
type edit struct {
	start, end      int
	pre, keep, post string
}

// markBlocks returns the edit that puts a breakpoint on the blocks v (a system or a
// message content): on its last block that can carry one, or, for a non-empty string, by
// turning it into a text block.
func markBlocks(s string, v span) (edit, bool) {
	if v.end <= v.start {
		return edit{}, false
	}
	if s[v.start] == '"' {
		if v.end-v.start <= 2 {
			return edit{}, false // "": Anthropic refuses an empty text block
		}
		return edit{start: v.start, end: v.end, pre: `[{"type":"text","text":`, keep: s[v.start:v.end], post: "," + breakpoint + "}]"}, true
	}
	last, ok, _ := lastElement(s, v.start, cacheable)
	if !ok {
		return edit{}, false
	}
	return markObject(s, last)
}

// markObject returns the edit that adds a breakpoint as the last member of the object v.
func markObject(s string, v span) (edit, bool) {
	if v.end-v.start < 2 || s[v.start] != '{' || s[v.end-1] != '}' {
		return edit{}, false
	}
	at := v.end - 1
	if jsonscan.SkipSpace(s, v.start+1) == at {
		return edit{start: at, end: at, pre: breakpoint}, true
	}
	return edit{start: at, end: at, pre: "," + breakpoint}, true
}

// cacheable reports whether a content block can carry a breakpoint: an object that is not
// a thinking block (the API refuses cache_control on those).
func cacheable(s string, block span) bool {
	if s[block.start] != '{' {
		return false
	}
	ok := true
	members(s, block.start, func(key string, _, vs int) int {
		ve := jsonscan.ValueEnd(s, vs)
		if key == "type" && ve > vs {
			if t := gjson.Parse(s[vs:ve]); t.Str == "thinking" || t.Str == "redacted_thinking" {
				ok = false
			}
		}
		return ve
	})
	return ok
}

// lastElement returns the last element of the array at s[i] for which keep (if non-nil)
// is true, and the end of the array. A value that is no array has no elements.
func lastElement(s string, i int, keep func(s string, e span) bool) (last span, found bool, end int) {
	if i >= len(s) || s[i] != '[' {
		return span{}, false, jsonscan.ValueEnd(s, i)
	}
	for i++; ; {
		i = jsonscan.SkipSpace(s, i)
		if i >= len(s) {
			return last, found, -1
		}
		switch s[i] {
		case ']':
			return last, found, i + 1
		case ',':
			i++
			continue
		}
		end := jsonscan.ValueEnd(s, i)
		if end < 0 {
			return last, found, -1
		}
		if e := (span{i, end}); keep == nil || keep(s, e) {
			last, found = e, true
		}
		i = end
	}
}

// members calls fn with the decoded key, the key's start and the value's start of every
// member of the object opening at s[i]; see [jsonscan.Members].
func members(s string, i int, fn func(key string, ks, vs int) int) int {
	return jsonscan.Members(s, i, func(raw string, ks, vs int) int { return fn(memberName(s, raw, ks), ks, vs) })
}

// memberName decodes a raw member name (at s[ks]) only when it has escapes.
func memberName(s, raw string, ks int) string {
	if strings.IndexByte(raw, '\\') < 0 {
		return raw
	}
	return gjson.Parse(s[ks : ks+len(raw)+2]).Str
}
