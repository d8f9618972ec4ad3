package content

import (
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// chat handles one OpenAI chat completion chunk.
//
// Channels are choices[i].delta.content and .refusal per choice, and
// choices[i].delta.tool_calls[k].function.arguments per choice and tool call index. A
// choice's channels end at the chunk that carries its finish_reason; all channels end at
// [DONE] and at the end of the stream. Chunks are never dropped, so a tool call's first
// fragment (id, name) always reaches the client.
func (r *Rewriter) chat(ev *event) bool {
	if strings.TrimSpace(ev.data) == "[DONE]" {
		if !r.flushAll() {
			return false
		}
		r.emitEvent(ev, nil)
		return true
	}
	choices := gjson.Get(ev.data, "choices")
	if !choices.IsArray() {
		r.emitEvent(ev, nil)
		return true
	}
	r.slots, r.fins = r.slots[:0], r.fins[:0]
	pos := int64(0)
	choices.ForEach(func(_, c gjson.Result) bool {
		// One pass over the choice: each Get would scan it again.
		i, finishing := pos, false
		var delta gjson.Result
		c.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "index":
				if v.Type == gjson.Number {
					i = v.Int()
				}
			case "finish_reason":
				finishing = v.Exists() && v.Type != gjson.Null
			case "delta":
				delta = v
			}
			return true
		})
		pos++
		if finishing {
			r.fins = append(r.fins, i)
		}
		delta.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "content":
				r.addSlot(chanKey{kind: kindContent, a: i}, v)
			case "refusal":
				r.addSlot(chanKey{kind: kindRefusal, a: i}, v)
			case "tool_calls":
				tpos := int64(0)
				v.ForEach(func(_, tc gjson.Result) bool {
					k := tpos
					if ix := tc.Get("index"); ix.Type == gjson.Number {
						k = ix.Int()
					}
					tpos++
					r.addSlot(chanKey{kind: kindTool, a: i, b: k}, tc.Get("function.arguments"))
					return true
				})
			}
			return true
		})
		return true
	})

	// Channels of finishing choices that this chunk does not carry are flushed into
	// synthesized chunks before it.
	if len(r.fins) > 0 {
		for i := 0; i < len(r.chans); {
			c := r.chans[i]
			if slices.Contains(r.fins, c.key.a) && !r.carries(c.key) {
				if !r.flushInto(c) {
					return false
				}
				continue
			}
			i++
		}
	}

	r.edits = r.edits[:0]
	for _, s := range r.slots {
		text := s.v.Str
		rel := ""
		if text != "" {
			c := r.channel(s.key)
			var ok bool
			if rel, ok = r.push(c, text); !ok {
				return false
			}
			c.tmpl = ev.raw
		}
		if slices.Contains(r.fins, s.key.a) {
			if i := r.find(s.key); i >= 0 {
				more, ok := r.flush(r.chans[i])
				if !ok {
					return false
				}
				rel += more
			}
		}
		if rel != text && !r.stringEdit(ev.data, s.v, rel) {
			return false
		}
	}
	r.emitEvent(ev, r.edits)
	return true
}

func (r *Rewriter) addSlot(k chanKey, v gjson.Result) {
	if v.Type == gjson.String {
		r.slots = append(r.slots, slot{key: k, v: v})
	}
}

// carries reports whether the current event has a slot for k.
func (r *Rewriter) carries(k chanKey) bool {
	for _, s := range r.slots {
		if s.key == k {
			return true
		}
	}
	return false
}

// chatSynth sends text for c in a chunk of its own: a copy of the channel's last chunk
// with only this choice, a minimal delta and no finish_reason or usage. Ids, names and
// roles are left out: SDKs that accumulate deltas by concatenation would double them.
func (r *Rewriter) chatSynth(c *channel, text string) bool {
	tev := parseEvent(c.tmpl)
	choices := gjson.Get(tev.data, "choices")
	b := make([]byte, 0, len(text)+96)
	b = append(b, `[{"index":`...)
	b = strconv.AppendInt(b, c.key.a, 10)
	switch c.key.kind {
	case kindContent:
		b = append(b, `,"delta":{"content":`...)
		b = appendJSONString(b, text)
		b = append(b, '}')
	case kindRefusal:
		b = append(b, `,"delta":{"refusal":`...)
		b = appendJSONString(b, text)
		b = append(b, '}')
	default:
		b = append(b, `,"delta":{"tool_calls":[{"index":`...)
		b = strconv.AppendInt(b, c.key.b, 10)
		b = append(b, `,"function":{"arguments":`...)
		b = appendJSONString(b, text)
		b = append(b, `}}]}`...)
	}
	b = append(b, `,"logprobs":null,"finish_reason":null}]`...)
	e, ok := editRaw(tev.data, choices, string(b))
	if !ok {
		return false
	}
	edits := append(r.synthEdits[:0], e)
	if u := gjson.Get(tev.data, "usage"); u.Exists() && u.Type != gjson.Null {
		if e, ok := editRaw(tev.data, u, "null"); ok {
			edits = append(edits, e)
		}
	}
	r.synthEdits = edits
	r.emitRendered(tev.raw, tev.data, edits)
	return true
}
