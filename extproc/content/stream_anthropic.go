package content

import (
	"strconv"

	"github.com/tidwall/gjson"
)

// anthropicDelta maps a content_block_delta type to the member that carries its text.
func anthropicDelta(typ string) string {
	switch typ {
	case "text_delta":
		return "text"
	case "input_json_delta":
		return "partial_json"
	case "thinking_delta":
		return "thinking"
	}
	return ""
}

// anthropic handles one Anthropic Messages event.
//
// Each content block is one channel, fed by its content_block_delta events (text_delta,
// input_json_delta, thinking_delta) and by text already present in content_block_start. A
// block's channel ends at its content_block_stop; all end at message_stop and at the end
// of the stream. A delta event whose released text is empty carries nothing else and is
// dropped.
func (r *Rewriter) anthropic(ev *event) bool {
	r.edits = r.edits[:0]
	// One pass over the event: each Get would scan it again.
	var typ string
	var index int64
	var delta, block gjson.Result
	gjson.Parse(ev.data).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			typ = v.Str
		case "index":
			index = v.Int()
		case "delta":
			delta = v
		case "content_block":
			block = v
		}
		return true
	})
	switch typ {
	case "content_block_delta":
		var field string
		var text, json, thinking gjson.Result
		delta.ForEach(func(k, x gjson.Result) bool {
			switch k.Str {
			case "type":
				field = x.Str
			case "text":
				text = x
			case "partial_json":
				json = x
			case "thinking":
				thinking = x
			}
			return true
		})
		var v gjson.Result
		switch field {
		case "text_delta":
			v = text
		case "input_json_delta":
			v = json
		case "thinking_delta":
			v = thinking
		}
		if v.Type != gjson.String || v.Str == "" {
			break
		}
		c := r.channel(chanKey{kind: kindBlock, a: index})
		rel, ok := r.push(c, v.Str)
		if !ok {
			return false
		}
		c.tmpl, c.field = ev.raw, field
		if rel == "" {
			return true
		}
		if rel != v.Str && !r.stringEdit(ev.data, v, rel) {
			return false
		}
	case "content_block_start":
		// Blocks normally start empty; text that arrives here is filtered like a delta.
		btyp := block.Get("type").Str
		var v gjson.Result
		switch btyp {
		case "text":
			v = block.Get("text")
		case "thinking":
			v = block.Get("thinking")
		}
		if v.Type != gjson.String || v.Str == "" {
			break
		}
		c := r.channel(chanKey{kind: kindBlock, a: index})
		c.field = btyp + "_delta"
		rel, ok := r.push(c, v.Str)
		if !ok {
			return false
		}
		if rel != v.Str && !r.stringEdit(ev.data, v, rel) {
			return false
		}
	case "content_block_stop":
		if i := r.find(chanKey{kind: kindBlock, a: index}); i >= 0 {
			if !r.flushInto(r.chans[i]) {
				return false
			}
		}
	case "message_stop":
		if !r.flushAll() {
			return false
		}
	}
	r.emitEvent(ev, r.edits)
	return true
}

// anthropicSynth sends text for c in a content_block_delta event of its own: a copy of
// the block's last delta event (same event: line) with the text replaced.
func (r *Rewriter) anthropicSynth(c *channel, text string) bool {
	if c.tmpl != "" {
		tev := parseEvent(c.tmpl)
		v := gjson.Get(tev.data, "delta."+anthropicDelta(c.field))
		e, ok := editString(tev.data, v, text)
		if !ok {
			return false
		}
		r.synthEdits = append(r.synthEdits[:0], e)
		r.emitRendered(tev.raw, tev.data, r.synthEdits)
		return true
	}
	// The block's only text came in content_block_start: there is no delta to copy.
	b := make([]byte, 0, len(text)+96)
	b = append(b, `{"type":"content_block_delta","index":`...)
	b = strconv.AppendInt(b, c.key.a, 10)
	b = append(b, `,"delta":{"type":`...)
	b = appendJSONString(b, c.field)
	b = append(b, ',')
	b = appendJSONString(b, anthropicDelta(c.field))
	b = append(b, ':')
	b = appendJSONString(b, text)
	b = append(b, "}}"...)
	r.emitRendered("event: content_block_delta\n", string(b), nil)
	return true
}
