package content

import (
	"strconv"

	"github.com/tidwall/gjson"
)

// responsesEvent holds the top-level members of a Responses event that matter here,
// read in one pass: each Get would scan the event again.
type responsesEvent struct {
	typ, itemID                   string
	contentIndex, summaryIndex    int64
	seq                           gjson.Result
	delta, text, arguments, input gjson.Result
	refusal, part, item, response gjson.Result
}

func readResponsesEvent(data string) responsesEvent {
	var e responsesEvent
	gjson.Parse(data).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			e.typ = v.Str
		case "sequence_number":
			e.seq = v
		case "item_id":
			e.itemID = v.Str
		case "content_index":
			e.contentIndex = v.Int()
		case "summary_index":
			e.summaryIndex = v.Int()
		case "delta":
			e.delta = v
		case "text":
			e.text = v
		case "arguments":
			e.arguments = v
		case "input":
			e.input = v
		case "refusal":
			e.refusal = v
		case "part":
			e.part = v
		case "item":
			e.item = v
		case "response":
			e.response = v
		}
		return true
	})
	return e
}

// What a Responses event carries for its channel.
const (
	textDelta  = iota + 1 // the next piece of the text
	textAdded             // the start of the text: normally nothing
	textRepeat            // the full text again; the channel has ended
)

// channel returns the channel an event's text belongs to, the text, and its role.
func (e *responsesEvent) channel() (k chanKey, v gjson.Result, role int) {
	switch e.typ {
	case "response.output_text.delta", "response.refusal.delta":
		k, v, role = chanKey{kind: kindPart}, e.delta, textDelta
	case "response.output_text.done":
		k, v, role = chanKey{kind: kindPart}, e.text, textRepeat
	case "response.refusal.done":
		k, v, role = chanKey{kind: kindPart}, e.refusal, textRepeat
	case "response.function_call_arguments.delta":
		k, v, role = chanKey{kind: kindArgs}, e.delta, textDelta
	case "response.function_call_arguments.done":
		k, v, role = chanKey{kind: kindArgs}, e.arguments, textRepeat
	case "response.custom_tool_call_input.delta":
		k, v, role = chanKey{kind: kindInput}, e.delta, textDelta
	case "response.custom_tool_call_input.done":
		k, v, role = chanKey{kind: kindInput}, e.input, textRepeat
	case "response.reasoning_summary_text.delta":
		k, v, role = chanKey{kind: kindSummary}, e.delta, textDelta
	case "response.reasoning_summary_text.done":
		k, v, role = chanKey{kind: kindSummary}, e.text, textRepeat
	case "response.content_part.done":
		k, v, role = chanKey{kind: kindPart}, partText(e.part), textRepeat
	case "response.reasoning_summary_part.done":
		k, v, role = chanKey{kind: kindSummary}, partText(e.part), textRepeat
	case "response.content_part.added":
		k, v, role = chanKey{kind: kindPart}, partText(e.part), textAdded
	case "response.reasoning_summary_part.added":
		k, v, role = chanKey{kind: kindSummary}, partText(e.part), textAdded
	default:
		return chanKey{}, gjson.Result{}, 0
	}
	k.id = e.itemID
	switch k.kind {
	case kindPart:
		k.a = e.contentIndex
	case kindSummary:
		k.a = e.summaryIndex
	}
	return k, v, role
}

// responses handles one OpenAI Responses event.
//
// Channels are output text and refusal parts (item_id + content_index), function call
// arguments and custom tool call input (item_id), and reasoning summary parts (item_id +
// summary_index), fed by their .delta events. A channel ends before its .done event, before
// its item's response.output_item.done, and before response.completed / .incomplete /
// .failed. The events that repeat the full text (.done, content_part.done,
// output_item.done, the final response) carry the released text. Text that reaches such an
// event without having been streamed is filtered there, whole, by a filter of its own.
//
// Synthesized deltas shift every later sequence_number by one so that they stay strictly
// increasing.
func (r *Rewriter) responses(ev *event) bool {
	r.edits = r.edits[:0]
	e := readResponsesEvent(ev.data)
	k, v, role := e.channel()
	end := false
	switch {
	case role == textDelta:
		if v.Type != gjson.String || v.Str == "" {
			break
		}
		c := r.channel(k)
		rel, ok := r.push(c, v.Str)
		if !ok {
			return false
		}
		c.tmpl = ev.raw
		if rel != v.Str && !r.stringEdit(ev.data, v, rel) {
			return false
		}
	case role == textAdded:
		// Parts start empty; text found here is filtered whole.
		if !r.finalEdit(ev.data, k, v) {
			return false
		}
	case role == textRepeat:
		if i := r.find(k); i >= 0 && !r.flushInto(r.chans[i]) {
			return false
		}
		if !r.finalEdit(ev.data, k, v) {
			return false
		}
	case e.typ == "response.output_item.added":
		// Items start empty; text found here is filtered whole.
		if !r.itemFinals(ev.data, e.item) {
			return false
		}
	case e.typ == "response.output_item.done":
		id := e.item.Get("id").Str
		for i := 0; i < len(r.chans); {
			if r.chans[i].key.id == id {
				if !r.flushInto(r.chans[i]) {
					return false
				}
				continue
			}
			i++
		}
		if !r.itemFinals(ev.data, e.item) {
			return false
		}
	case e.typ == "response.completed" || e.typ == "response.incomplete" || e.typ == "response.failed":
		if !r.flushAll() {
			return false
		}
		ok := true
		e.response.Get("output").ForEach(func(_, item gjson.Result) bool {
			ok = r.itemFinals(ev.data, item)
			return ok
		})
		if !ok || !r.finalEdit(ev.data, chanKey{kind: kindOutputText}, e.response.Get("output_text")) {
			return false
		}
		// The response is complete: nothing repeats its texts any more.
		end = true
	}
	if e.seq.Type == gjson.Number {
		n := e.seq.Int() + r.seqShift
		if r.seqShift != 0 {
			ed, ok := editRaw(ev.data, e.seq, strconv.FormatInt(n, 10))
			if !ok {
				return false
			}
			r.edits = append(r.edits, ed)
		}
		r.lastSeq = n
	}
	r.emitEvent(ev, r.edits)
	if end {
		r.finals = nil
	}
	return true
}

// partText returns the text of an output or summary part.
func partText(part gjson.Result) gjson.Result {
	if part.Get("type").Str == "refusal" {
		return part.Get("refusal")
	}
	return part.Get("text")
}

// itemFinals edits the texts of an output item (found in data) to their released form.
func (r *Rewriter) itemFinals(data string, item gjson.Result) bool {
	id := item.Get("id").Str
	ok := true
	switch item.Get("type").Str {
	case "message":
		i := int64(0)
		item.Get("content").ForEach(func(_, part gjson.Result) bool {
			ok = r.finalEdit(data, chanKey{kind: kindPart, id: id, a: i}, partText(part))
			i++
			return ok
		})
	case "function_call":
		ok = r.finalEdit(data, chanKey{kind: kindArgs, id: id}, item.Get("arguments"))
	case "custom_tool_call":
		ok = r.finalEdit(data, chanKey{kind: kindInput, id: id}, item.Get("input"))
	case "reasoning":
		i := int64(0)
		item.Get("summary").ForEach(func(_, part gjson.Result) bool {
			ok = r.finalEdit(data, chanKey{kind: kindSummary, id: id, a: i}, part.Get("text"))
			i++
			return ok
		})
	}
	return ok
}

// finalEdit sets v, the full text of channel k found in data, to its released form.
// Text that does not match what the channel streamed (or whose channel never streamed) is
// filtered here, whole; the first such result is kept for the events that repeat it.
func (r *Rewriter) finalEdit(data string, k chanKey, v gjson.Result) bool {
	if v.Type != gjson.String || v.Str == "" {
		return true
	}
	f, seen := r.finals[k]
	text, ok := f.apply(v.Str)
	if !seen || !ok {
		flt := r.newFilter()
		a, blocked := flt.Push(v.Str)
		if blocked {
			return false
		}
		b, blocked := flt.Flush()
		if blocked {
			return false
		}
		text = a + b
		if !seen {
			f = final{n: len(v.Str), sum: fnvAdd(fnvOffset, v.Str)}
			if text != v.Str {
				f.changed, f.tail = true, text
			}
			if r.finals == nil {
				r.finals = map[chanKey]final{}
			}
			k.id = clone(k.id)
			r.finals[k] = f
		}
	}
	if text != v.Str {
		return r.stringEdit(data, v, text)
	}
	return true
}

// responsesSynth sends text for c in a delta event of its own: a copy of the channel's
// last delta with the text replaced, the next sequence number, and no logprobs.
func (r *Rewriter) responsesSynth(c *channel, text string) bool {
	tev := parseEvent(c.tmpl)
	e, ok := editString(tev.data, gjson.Get(tev.data, "delta"), text)
	if !ok {
		return false
	}
	edits := append(r.synthEdits[:0], e)
	if seq := gjson.Get(tev.data, "sequence_number"); seq.Type == gjson.Number {
		r.lastSeq++
		r.seqShift++
		if e, ok := editRaw(tev.data, seq, strconv.FormatInt(r.lastSeq, 10)); ok {
			edits = append(edits, e)
		}
	}
	if lp := gjson.Get(tev.data, "logprobs"); lp.IsArray() && lp.Raw != "[]" {
		if e, ok := editRaw(tev.data, lp, "[]"); ok {
			edits = append(edits, e)
		}
	}
	r.synthEdits = edits
	r.emitRendered(tev.raw, tev.data, edits)
	return true
}
