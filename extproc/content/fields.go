package content

import (
	"strings"

	"github.com/tidwall/gjson"
)

// RequestText lists every string of a request body a provider might read as text: every
// string leaf but the members that only name or encode things (model, role, type, ids,
// signatures, base64 data, data: URLs). It is what request guardrails inspect. It does not
// walk each format's shape, on purpose: a shape-aware walk misses what a provider still
// reads — a key spelled "Content" that a case-insensitive decoder downstream accepts, a
// text member on a part of an unexpected type, a document block, a future field.
func RequestText(body []byte) []Field {
	w := walker{}
	w.text(gjson.ParseBytes(body), root, "")
	return w.fields
}

// notText are members whose string values are never text a model reads as content.
var notText = map[string]bool{
	"model": true, "role": true, "type": true, "id": true, "tool_call_id": true, "tool_use_id": true,
	"call_id": true, "media_type": true, "signature": true, "encrypted_content": true, "service_tier": true,
	"reasoning_effort": true, "detail": true, "format": true, "mime_type": true, "previous_response_id": true,
}

// text records the string leaves under v, which is member key of its parent.
func (w *walker) text(v gjson.Result, p path, key string) {
	switch {
	case v.Type == gjson.String:
		k := strings.ToLower(key)
		if notText[k] || k == "url" && strings.HasPrefix(v.Str, "data:") {
			return
		}
		w.str(v, p)
	case v.IsObject() || v.IsArray():
		if w.depth >= maxDepth {
			w.fields = append(w.fields, Field{Text: v.Raw})
			return
		}
		w.depth++
		if v.IsObject() {
			// Base64 payloads ({"type":"base64","data":…}) are not text; a text source's
			// data ({"type":"text","data":…}) is.
			skipData := hasType(v, "base64", "image", "input_image", "input_audio", "input_file")
			w.members(v, p, func(k string, v gjson.Result, p path) {
				if skipData && (strings.EqualFold(k, "data") || strings.EqualFold(k, "file_data")) {
					return
				}
				w.text(v, p, k)
			})
		} else {
			w.elements(v, p, func(v gjson.Result, p path) { w.text(v, p, key) })
		}
		w.depth--
	}
}

// ResponseFields lists the text of a non-streamed response body, in document order.
//
//   - OpenAIChat: choices[].message: content, refusal, tool_calls[].function.arguments
//     (and the legacy function_call.arguments).
//   - AnthropicMessages: content[]: text → .text, tool_use → every string leaf of .input,
//     thinking → .thinking.
//   - OpenAIResponses: output[]: message content[] .text (output_text) or .refusal,
//     function_call .arguments, custom_tool_call .input, reasoning summary[].text; and the
//     top-level output_text when present.
//
// Rewriting thinking or reasoning text invalidates its signature; the provider then
// refuses it when the client sends it back.
func ResponseFields(s Shape, body []byte) []Field {
	w := walker{}
	doc := gjson.ParseBytes(body)
	switch s {
	case OpenAIChat:
		w.members(doc, root, func(k string, v gjson.Result, p path) {
			if k == "choices" {
				w.elements(v, p, func(c gjson.Result, p path) {
					w.members(c, p, func(k string, v gjson.Result, p path) {
						if k == "message" {
							w.members(v, p, w.chatMessage)
						}
					})
				})
			}
		})
	case AnthropicMessages:
		w.members(doc, root, func(k string, v gjson.Result, p path) {
			if k == "content" {
				w.elements(v, p, func(b gjson.Result, p path) { w.anthropicBlock(b, p, true) })
			}
		})
	case OpenAIResponses:
		w.members(doc, root, func(k string, v gjson.Result, p path) {
			switch k {
			case "output":
				w.elements(v, p, w.responsesOutputItem)
			case "output_text":
				w.str(v, p)
			}
		})
	}
	return w.fields
}

// maxDepth bounds the recursion into tool arguments and schemas. Deeper text is listed as
// the raw JSON of the subtree, unaddressable, so it is still seen but never rewritten.
const maxDepth = 128

// walker collects fields in document order.
type walker struct {
	fields []Field
	depth  int
}

// str records v if it is a non-empty string.
func (w *walker) str(v gjson.Result, p path) {
	if v.Type == gjson.String && v.Str != "" {
		w.fields = append(w.fields, Field{Path: p.String(), Text: v.Str})
	}
}

// members calls fn for every member of obj in document order. A key that repeats an
// earlier key of the object gets an unaddressable path.
func (w *walker) members(obj gjson.Result, p path, fn func(k string, v gjson.Result, p path)) {
	if !obj.IsObject() {
		return
	}
	var seen []string
	obj.ForEach(func(k, v gjson.Result) bool {
		cp := p.key(k.Str)
		for _, s := range seen {
			if s == k.Str {
				cp.ok = false
				break
			}
		}
		seen = append(seen, k.Str)
		fn(k.Str, v, cp)
		return true
	})
}

// elements calls fn for every element of arr.
func (w *walker) elements(arr gjson.Result, p path, fn func(v gjson.Result, p path)) {
	if !arr.IsArray() {
		return
	}
	i := 0
	arr.ForEach(func(_, v gjson.Result) bool {
		fn(v, p.index(i))
		i++
		return true
	})
}

// leaves records every string under v.
func (w *walker) leaves(v gjson.Result, p path) {
	switch {
	case v.Type == gjson.String:
		w.str(v, p)
	case v.IsObject() || v.IsArray():
		if w.depth >= maxDepth {
			w.fields = append(w.fields, Field{Text: v.Raw})
			return
		}
		w.depth++
		if v.IsObject() {
			w.members(v, p, func(_ string, v gjson.Result, p path) { w.leaves(v, p) })
		} else {
			w.elements(v, p, w.leaves)
		}
		w.depth--
	}
}

// hasType reports whether obj has a "type" member equal to one of types. Every "type"
// member counts, so a duplicated key cannot hide a text part.
func hasType(obj gjson.Result, types ...string) bool {
	found := false
	obj.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "type" && v.Type == gjson.String {
			for _, t := range types {
				if v.Str == t {
					found = true
					return false
				}
			}
		}
		return true
	})
	return found
}

// textParts records the .text of parts whose type is one of types, or v itself when it
// is a string.
func (w *walker) textParts(v gjson.Result, p path, types ...string) {
	if v.Type == gjson.String {
		w.str(v, p)
		return
	}
	w.elements(v, p, func(part gjson.Result, p path) {
		if hasType(part, types...) {
			w.members(part, p, func(k string, v gjson.Result, p path) {
				if k == "text" {
					w.str(v, p)
				}
			})
		}
	})
}

// member records the string members of obj named in keys.
func (w *walker) member(obj gjson.Result, p path, keys ...string) {
	w.members(obj, p, func(k string, v gjson.Result, p path) {
		for _, want := range keys {
			if k == want {
				w.str(v, p)
				return
			}
		}
	})
}

// chatMessage reads one chat message, request or response.
func (w *walker) chatMessage(k string, v gjson.Result, p path) {
	switch k {
	case "content":
		w.textParts(v, p, "text")
	case "refusal":
		w.str(v, p)
	case "tool_calls":
		w.elements(v, p, func(tc gjson.Result, p path) {
			w.members(tc, p, func(k string, v gjson.Result, p path) {
				if k == "function" {
					w.member(v, p, "arguments")
				}
			})
		})
	case "function_call":
		w.member(v, p, "arguments")
	}
}

// anthropicBlock reads one content block of a request message or a response. Thinking
// counts only in responses: sent back in a request it is signed, and a rewrite would make
// the provider refuse it.
func (w *walker) anthropicBlock(b gjson.Result, p path, response bool) {
	text := hasType(b, "text")
	toolUse := hasType(b, "tool_use")
	toolResult := hasType(b, "tool_result")
	thinking := response && hasType(b, "thinking")
	w.members(b, p, func(k string, v gjson.Result, p path) {
		switch {
		case k == "text" && text, k == "thinking" && thinking:
			w.str(v, p)
		case k == "input" && toolUse:
			w.leaves(v, p)
		case k == "content" && toolResult:
			w.textParts(v, p, "text")
		}
	})
}

func (w *walker) responsesOutputItem(it gjson.Result, p path) {
	message := hasType(it, "message")
	call := hasType(it, "function_call")
	custom := hasType(it, "custom_tool_call")
	reasoning := hasType(it, "reasoning")
	w.members(it, p, func(k string, v gjson.Result, p path) {
		switch {
		case k == "content" && message:
			w.elements(v, p, func(part gjson.Result, p path) {
				text := hasType(part, "output_text")
				refusal := hasType(part, "refusal")
				w.members(part, p, func(k string, v gjson.Result, p path) {
					if k == "text" && text || k == "refusal" && refusal {
						w.str(v, p)
					}
				})
			})
		case k == "arguments" && call, k == "input" && custom:
			w.str(v, p)
		case k == "summary" && reasoning:
			w.textParts(v, p, "summary_text")
		}
	})
}
