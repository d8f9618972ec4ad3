package content

import (
	"slices"

	"github.com/tidwall/gjson"
)

// Filter is asked about one channel of streamed text: one choice's content, one tool
// call's arguments, one Anthropic content block, one Responses output part. Each channel
// gets its own Filter, which may hold text back and release it later.
//
// A Rewriter calls a Filter from the goroutine that calls [Rewriter.Write], never
// concurrently. Push gets the channel's text in stream order and returns what may be sent
// now; Flush is called once when the channel ends and returns whatever is still held.
// After blocked is reported, the Rewriter drops release and makes no more calls.
type Filter interface {
	Push(text string) (release string, blocked bool)
	Flush() (release string, blocked bool)
}

// Rewriter re-frames one SSE response stream through Filters, keeping the framing valid
// for the client's SDK. It is not safe for concurrent use; one Rewriter serves one stream.
//
// An event whose text is released unchanged is sent as its original bytes, and events
// without text (comments, role chunks, usage, pings, [DONE], …) pass through untouched, so
// with filters that release everything at once the output is the input byte for byte.
// Memory is what the filters hold, one partial event, and per open channel the last
// event that carried its text (the template for synthesized events). OpenAIResponses
// streams also remember, per output text, how to repeat its released form in the events
// that carry the full text again (.done, output_item.done, response.completed) until the
// response completes; that costs a few words for text released unchanged.
type Rewriter struct {
	shape     Shape
	newFilter func() Filter

	buf  []byte // the start of an event whose end has not arrived
	scan int    // where in buf to resume looking for the end of that event
	out  []byte // what the current Write returns
	hint int    // initial capacity for out

	// chans are the open channels, in the order their first text arrived.
	chans []*channel
	// open reports that out ends with an event cut short by the end of the stream; an
	// event appended after it needs a blank line first.
	open    bool
	blocked bool

	// OpenAIResponses: released text of ended channels, and the renumbering that
	// synthesized events force on sequence_number.
	finals   map[chanKey]final
	seqShift int64
	lastSeq  int64

	// Scratch space, reused across events.
	slots      []slot
	edits      []edit
	synthEdits []edit // for synthesized events, which may be built while edits is in use
	data       []byte
	fins       []int64
}

// maxIdleBuf is the largest partial-event buffer kept while no event is pending.
const maxIdleBuf = 64 << 10

// NewRewriter returns a Rewriter for a stream of shape s. newFilter is called once per
// channel, when its first text arrives; for OpenAIResponses also once per full text that
// does not match what was streamed (normally none), which is then filtered whole. A nil
// newFilter, or a shape this package does not know, passes the stream through unchanged.
func NewRewriter(s Shape, newFilter func() Filter) *Rewriter {
	return &Rewriter{shape: s, newFilter: newFilter}
}

// Write takes the next chunk of upstream bytes and returns the bytes to send to the
// client now; out is newly allocated and belongs to the caller. end marks the last chunk:
// held text is flushed, and trailing bytes that do not form a complete event are treated
// as a final event if they hold a complete data line, or else passed through.
//
// When a Filter blocks, Write returns what was safe to send before the blocking event and
// blocked=true; from then on it returns (nil, true). The caller then appends its own error
// event. Write also stops the stream this way, failing closed, in the should-not-happen
// case that released text differs from the original but cannot be placed in the event.
func (r *Rewriter) Write(chunk []byte, end bool) (out []byte, blocked bool) {
	if r.blocked {
		return nil, true
	}
	if r.newFilter == nil || r.shape < OpenAIChat || r.shape > OpenAIResponses {
		if len(chunk) == 0 {
			return nil, false
		}
		return slices.Clone(chunk), false
	}
	data := chunk
	if len(r.buf) > 0 {
		r.buf = append(r.buf, chunk...)
		data = r.buf
	}
	r.hint = len(data) + 256
	start, resume := 0, r.scan
	for {
		n, next := eventEnd(data[start:], resume)
		if n < 0 {
			resume = next
			break
		}
		if !r.event(parseEvent(string(data[start : start+n]))) {
			return r.block()
		}
		start += n
		resume = 0
	}
	rest := data[start:]
	if !end {
		// Keep the partial event. When data is r.buf the copy moves it to the front.
		if len(rest) == 0 && cap(r.buf) > maxIdleBuf {
			r.buf = nil // one huge event is no reason to keep its buffer for the whole stream
		} else {
			r.buf = append(r.buf[:0], rest...)
		}
		r.scan = resume
		return r.take(), false
	}
	var tail []byte
	if len(rest) > 0 {
		if ev := parseEvent(string(rest)); ev.hasData {
			if !r.event(ev) {
				return r.block()
			}
			r.open = len(r.out) > 0 && !endsWithBlankLine(r.out)
		} else {
			tail = rest
		}
	}
	if !r.flushAll() {
		return r.block()
	}
	if len(tail) > 0 {
		r.emit(tail)
	}
	r.buf, r.scan, r.finals = nil, 0, nil
	return r.take(), false
}

func (r *Rewriter) take() []byte {
	out := r.out
	r.out = nil
	return out
}

// block ends the stream: what was emitted before the blocking event is returned, and
// everything else is dropped.
func (r *Rewriter) block() ([]byte, bool) {
	r.blocked = true
	r.buf, r.chans, r.finals = nil, nil, nil
	return r.take(), true
}

func (r *Rewriter) emit(b []byte) {
	if r.out == nil {
		r.out = make([]byte, 0, max(r.hint, len(b)))
	}
	r.out = append(r.out, b...)
}

func (r *Rewriter) emitString(s string) {
	if r.out == nil {
		r.out = make([]byte, 0, max(r.hint, len(s)))
	}
	r.out = append(r.out, s...)
}

// emitEvent sends ev: its original bytes without edits, otherwise re-rendered.
func (r *Rewriter) emitEvent(ev *event, edits []edit) {
	if len(edits) == 0 {
		r.emitString(ev.raw)
		return
	}
	r.emitRendered(ev.raw, ev.data, edits)
}

// emitRendered sends a new event with the non-data lines of raw and data with edits.
func (r *Rewriter) emitRendered(raw, data string, edits []edit) {
	if r.open {
		// The stream's last event had no blank line; end it before adding another.
		if r.out[len(r.out)-1] == '\n' {
			r.emitString("\n")
		} else {
			r.emitString("\n\n")
		}
		r.open = false
	}
	r.data = appendEdited(r.data[:0], data, edits)
	if r.out == nil {
		r.out = make([]byte, 0, max(r.hint, len(raw)+len(r.data)))
	}
	r.out = appendEvent(r.out, raw, r.data)
}

// event handles one complete event and reports false when a filter blocked.
func (r *Rewriter) event(ev event) bool {
	if !ev.hasData {
		r.emitString(ev.raw)
		return true
	}
	switch r.shape {
	case OpenAIChat:
		return r.chat(&ev)
	case AnthropicMessages:
		return r.anthropic(&ev)
	default:
		return r.responses(&ev)
	}
}

// Channel kinds.
const (
	kindContent    uint8 = iota + 1 // chat: a choice's content (a = choice index)
	kindRefusal                     // chat: a choice's refusal (a = choice index)
	kindTool                        // chat: a tool call's arguments (a = choice, b = tool_calls index)
	kindBlock                       // anthropic: a content block (a = index)
	kindPart                        // responses: an output content part (id = item, a = content_index)
	kindArgs                        // responses: function call arguments (id = item)
	kindInput                       // responses: custom tool call input (id = item)
	kindSummary                     // responses: a reasoning summary part (id = item, a = summary_index)
	kindOutputText                  // responses: the convenience output_text of a response
)

type chanKey struct {
	kind uint8
	a, b int64
	id   string
}

// channel is one stream of text through one Filter.
type channel struct {
	key chanKey
	f   Filter
	// tmpl is the last event that carried this channel's text; synthesized events are
	// copies of it.
	tmpl string
	// field is the delta type of an Anthropic block ("text_delta", …).
	field string

	// OpenAIResponses only: the original text's length and hash, and the released text
	// as the first sent bytes of the original followed by what was released after the
	// first change.
	n       int
	sum     uint64
	sent    int
	changed bool
	tail    []byte
}

// final is the released form of one ended OpenAIResponses text: its first sent bytes
// unchanged, then tail. Unchanged text is never copied. n and sum identify the original
// text, so that a repeat of some other text is never patched with this one's edits.
type final struct {
	n       int
	sum     uint64
	changed bool
	sent    int
	tail    string
}

// apply returns the released form of orig, or false when orig is not the text f was
// made from.
func (f final) apply(orig string) (string, bool) {
	if len(orig) != f.n || fnvAdd(fnvOffset, orig) != f.sum {
		return "", false
	}
	if !f.changed {
		return orig, true
	}
	return orig[:f.sent] + f.tail, true
}

// FNV-1a, 64 bit.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvAdd(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// slot is one text string in the current event.
type slot struct {
	key chanKey
	v   gjson.Result
}

func (r *Rewriter) find(k chanKey) int {
	for i, c := range r.chans {
		if c.key == k {
			return i
		}
	}
	return -1
}

// channel returns the open channel k, opening it if needed.
func (r *Rewriter) channel(k chanKey) *channel {
	if i := r.find(k); i >= 0 {
		return r.chans[i]
	}
	k.id = clone(k.id)
	c := &channel{key: k, f: r.newFilter(), sum: fnvOffset}
	r.chans = append(r.chans, c)
	return c
}

func clone(s string) string {
	if s == "" {
		return ""
	}
	return string([]byte(s))
}

// push passes text through c's filter.
func (r *Rewriter) push(c *channel, text string) (string, bool) {
	rel, blocked := c.f.Push(text)
	if blocked {
		return "", false
	}
	r.track(c, text, rel)
	return rel, true
}

// flush ends c: it asks its filter for what it still holds and closes the channel.
func (r *Rewriter) flush(c *channel) (string, bool) {
	rel, blocked := c.f.Flush()
	if blocked {
		return "", false
	}
	r.track(c, "", rel)
	if i := slices.Index(r.chans, c); i >= 0 {
		r.chans = slices.Delete(r.chans, i, i+1)
	}
	if r.shape == OpenAIResponses {
		if r.finals == nil {
			r.finals = map[chanKey]final{}
		}
		r.finals[c.key] = final{n: c.n, sum: c.sum, changed: c.changed, sent: c.sent, tail: string(c.tail)}
	}
	return rel, true
}

// track records, for OpenAIResponses, what the client has been sent for c.
func (r *Rewriter) track(c *channel, orig, rel string) {
	if r.shape != OpenAIResponses {
		return
	}
	c.n += len(orig)
	c.sum = fnvAdd(c.sum, orig)
	if !c.changed {
		if rel == orig {
			c.sent += len(orig)
			return
		}
		c.changed = true
	}
	c.tail = append(c.tail, rel...)
}

// flushAll ends every open channel, sending held text in synthesized events.
func (r *Rewriter) flushAll() bool {
	for len(r.chans) > 0 {
		if !r.flushInto(r.chans[0]) {
			return false
		}
	}
	return true
}

// flushInto ends c and sends what its filter still held in a synthesized event.
func (r *Rewriter) flushInto(c *channel) bool {
	rel, ok := r.flush(c)
	if !ok {
		return false
	}
	if rel == "" {
		return true
	}
	switch r.shape {
	case OpenAIChat:
		return r.chatSynth(c, rel)
	case AnthropicMessages:
		return r.anthropicSynth(c, rel)
	default:
		return r.responsesSynth(c, rel)
	}
}

// stringEdit appends the edit that sets v (a string in data) to text. It reports false
// when v cannot be located, which the caller treats as a block: the text it was asked to
// hide would otherwise go out as it is.
func (r *Rewriter) stringEdit(data string, v gjson.Result, text string) bool {
	e, ok := editString(data, v, text)
	if ok {
		r.edits = append(r.edits, e)
	}
	return ok
}

func endsWithBlankLine(b []byte) bool {
	n := len(b)
	return n >= 2 && b[n-1] == '\n' && (b[n-2] == '\n' || n >= 3 && b[n-2] == '\r' && b[n-3] == '\n')
}
