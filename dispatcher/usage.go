package dispatcher

import (
	"bytes"
	"strings"
	"sync"
	"unsafe"

	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// The passthrough lane relays provider bytes untouched, so what the provider says about an
// attempt (token usage, the model that answered, finish reasons) is read from a copy of
// those bytes by a usageMeter, after they were written to the client: metering never holds
// back a byte. A JSON answer is kept (up to maxMeteredBody) and read once it is complete; a
// stream goes through an incremental SSE scanner (usage_sse.go) that holds at most one
// partial event and decodes only the events that can carry usage.

// maxMeteredBody bounds the copy of a non-streamed answer kept for metering; a larger answer
// is relayed whole but reports no usage.
const maxMeteredBody = 32 << 20

// maxPooledBody bounds the body buffers kept for reuse, so that one huge answer does not pin
// its buffer for the life of the process.
const maxPooledBody = 1 << 20

var meterBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// dialect is the response schema a meter reads.
type dialect uint8

const (
	dialectNone             dialect = iota
	dialectOpenAIChat               // OpenAI chat completions, and OpenAI-compatible servers
	dialectAnthropicMsgs            // Anthropic Messages
	dialectOpenAIResponses          // OpenAI Responses (and its compaction)
	dialectOpenAIEmbeddings         // OpenAI embeddings: input tokens only
)

func dialectOf(e wire.Endpoint) dialect {
	switch e {
	case wire.ChatCompletions:
		return dialectOpenAIChat
	case wire.Messages:
		return dialectAnthropicMsgs
	case wire.Responses, wire.ResponsesCompact:
		return dialectOpenAIResponses
	case wire.Embeddings:
		return dialectOpenAIEmbeddings
	}
	return dialectNone
}

// usageMeter collects what a provider says about one attempt from the response bytes the lane
// forwards. One per attempt; not safe for concurrent use. The zero value meters nothing.
type usageMeter struct {
	dialect dialect
	stream  bool

	// JSON answer: the bytes so far, from meterBufs; nil when not kept or over the cap.
	body *[]byte

	sse sseScanner // stream: line and event assembly

	found meterFindings
}

// meterFindings is what the provider said so far, in its own figures.
type meterFindings struct {
	model string
	// reasons holds finish reasons by choice index ("" for a choice without one yet).
	reasons []string

	// OpenAI figures (the last non-null usage object wins: it is cumulative).
	openAI                                bool
	prompt, completion, cached, reasoning int64

	// Anthropic figures: message_start carries input and cache counts, message_delta the
	// final output count and, in newer API versions, the input and cache counts again.
	anthropic                               bool
	input, output, cacheRead, cacheCreation int64
	cacheCreation1h, thinking               int64
}

// maxChoices bounds the finish reasons kept per answer (n > maxChoices is not metered).
const maxChoices = 128

// newUsageMeter returns a meter for a 2xx answer to endpoint e, or nil when the answer cannot
// be metered (an endpoint without usage, a compressed body). contentLength is the
// provider's Content-Length (-1 when unknown).
func newUsageMeter(e wire.Endpoint, stream bool, contentEncoding string, contentLength int64) *usageMeter {
	d := dialectOf(e)
	if d == dialectNone || (contentEncoding != "" && !strings.EqualFold(contentEncoding, "identity")) {
		return nil
	}
	m := &usageMeter{dialect: d, stream: stream}
	if !stream {
		if contentLength > maxMeteredBody {
			return nil
		}
		m.body = meterBufs.Get().(*[]byte)
		if contentLength > int64(cap(*m.body)) {
			*m.body = make([]byte, 0, contentLength)
		}
	} else {
		m.sse.dialect = d
	}
	return m
}

// write takes the next forwarded bytes. p is only borrowed: it is not retained.
func (m *usageMeter) write(p []byte) {
	if m.stream {
		m.sse.feed(p, &m.found)
		return
	}
	if m.body == nil {
		return
	}
	if len(*m.body)+len(p) > maxMeteredBody {
		m.release()
		return
	}
	*m.body = append(*m.body, p...)
}

// finish reads what remains (the whole JSON answer) into res and releases the meter's
// buffers.
func (m *usageMeter) finish(res *attempt.Result) {
	if !m.stream && m.body != nil {
		m.found.readJSONAnswer(m.dialect, *m.body)
		m.release()
	}
	m.found.report(res)
}

func (m *usageMeter) release() {
	if m.body == nil {
		return
	}
	if cap(*m.body) <= maxPooledBody {
		*m.body = (*m.body)[:0]
		meterBufs.Put(m.body)
	}
	m.body = nil
}

// report fills the Result fields with the normalized figures.
func (f *meterFindings) report(res *attempt.Result) {
	switch {
	case f.openAI:
		res.Usage = attempt.Usage{InputTokens: f.prompt, OutputTokens: f.completion,
			CacheReadTokens: f.cached, ReasoningTokens: f.reasoning}
	case f.anthropic:
		res.Usage = attempt.Usage{InputTokens: f.input + f.cacheRead + f.cacheCreation, OutputTokens: f.output,
			CacheReadTokens: f.cacheRead, CacheCreationTokens: f.cacheCreation,
			CacheCreation1hTokens: f.cacheCreation1h, ReasoningTokens: f.thinking}
	}
	res.ResponseModel = f.model
	for _, r := range f.reasons {
		if r != "" {
			res.FinishReasons = append(res.FinishReasons, r)
		}
	}
}

// readJSONAnswer reads a complete non-streamed answer in one pass over its top-level keys.
// body is read in place, not copied (gjson.GetBytes would copy each value it returns, the
// choices being most of the answer), so every string kept is cloned.
func (f *meterFindings) readJSONAnswer(d dialect, body []byte) {
	if i := firstNonSpace(body); i < 0 || body[i] != '{' {
		return // not a JSON object: nothing to read
	}
	gjson.Parse(unsafe.String(&body[0], len(body))).ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			if v.Type == gjson.String {
				f.model = strings.Clone(v.Str)
			}
		case "usage":
			switch d {
			case dialectOpenAIChat, dialectOpenAIEmbeddings:
				f.openAIUsage(v)
			case dialectOpenAIResponses:
				f.responsesUsage(v)
			default:
				f.anthropicUsage(v)
			}
		case "status":
			if d == dialectOpenAIResponses {
				f.setReason(0, v)
			}
		case "choices":
			if d == dialectOpenAIChat {
				f.openAIChoices(v)
			}
		case "stop_reason":
			if d == dialectAnthropicMsgs {
				f.setReason(0, v)
			}
		}
		return true
	})
}

// openAIChunk reads one chat.completion.chunk. Only the chunks that can say something are
// decoded: the first with a model, those with a non-null finish_reason or usage.
func (f *meterFindings) openAIChunk(data []byte) {
	if i := firstNonSpace(data); i < 0 || data[i] != '{' {
		return // [DONE]
	}
	wantModel := f.model == "" && bytes.Contains(data, []byte(`"model"`))
	hasFinish := hasNonNull(data, `"finish_reason"`, 7) // pivot on '_'
	hasUsage := hasNonNull(data, `"usage"`, 4)          // pivot on 'g'

	if !wantModel && !hasFinish && !hasUsage {
		return
	}
	if wantModel {
		if m := gjson.GetBytes(data, "model"); m.Type == gjson.String {
			f.model = m.Str
		}
	}
	if hasFinish {
		f.openAIChoices(gjson.GetBytes(data, "choices"))
	}
	if hasUsage {
		f.openAIUsage(gjson.GetBytes(data, "usage"))
	}
}

func (f *meterFindings) openAIChoices(choices gjson.Result) {
	i := 0
	choices.ForEach(func(_, c gjson.Result) bool {
		idx := i
		if x := c.Get("index"); x.Type == gjson.Number {
			idx = int(x.Int())
		}
		f.setReason(idx, c.Get("finish_reason"))
		i++
		return true
	})
}

func (f *meterFindings) openAIUsage(u gjson.Result) {
	if !u.IsObject() {
		return
	}
	f.openAI = true
	f.prompt = u.Get("prompt_tokens").Int()
	f.completion = u.Get("completion_tokens").Int()
	f.cached = u.Get("prompt_tokens_details.cached_tokens").Int()
	f.reasoning = u.Get("completion_tokens_details.reasoning_tokens").Int()
}

// anthropicEvent reads one Messages stream event of the given type ("" when the event had
// no event line: the type is then read from the data).
func (f *meterFindings) anthropicEvent(typ string, data []byte) {
	if typ == "" {
		if !bytes.Contains(data, []byte(`"message_start"`)) && !bytes.Contains(data, []byte(`"message_delta"`)) {
			return
		}
		typ = gjson.GetBytes(data, "type").Str
	}
	switch typ {
	case "message_start":
		msg := gjson.GetBytes(data, "message")
		if m := msg.Get("model"); m.Type == gjson.String {
			f.model = strings.Clone(m.Str)
		}
		f.anthropicUsage(msg.Get("usage"))
	case "message_delta":
		f.anthropicUsage(gjson.GetBytes(data, "usage"))
		f.setReason(0, gjson.GetBytes(data, "delta.stop_reason"))
	}
}

// anthropicUsage takes the counts an Anthropic usage object carries; absent ones keep their
// earlier value (message_delta may repeat all of them or only output_tokens).
func (f *meterFindings) anthropicUsage(u gjson.Result) {
	if !u.IsObject() {
		return
	}
	f.anthropic = true
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "input_tokens":
			f.input = v.Int()
		case "output_tokens":
			f.output = v.Int()
		case "cache_read_input_tokens":
			f.cacheRead = v.Int()
		case "cache_creation_input_tokens":
			f.cacheCreation = v.Int()
		case "cache_creation": // the split by TTL
			if t := v.Get("ephemeral_1h_input_tokens"); t.Exists() {
				f.cacheCreation1h = t.Int()
			}
		case "output_tokens_details":
			if t := v.Get("thinking_tokens"); t.Exists() {
				f.thinking = t.Int()
			}
		}
		return true
	})
}

func (f *meterFindings) setReason(idx int, r gjson.Result) {
	if r.Type != gjson.String || r.Str == "" || idx < 0 || idx >= maxChoices {
		return
	}
	for len(f.reasons) <= idx {
		f.reasons = append(f.reasons, "")
	}
	f.reasons[idx] = strings.Clone(r.Str)
}

// hasNonNull reports whether data has key (quoted) followed by a value other than null.
// A cheap pre-filter run on every chunk: a false positive only costs a decode.
//
// The search jumps with IndexByte from one key[pivot] to the next, a byte rarer in LLM
// JSON than the '"' every few bytes that would stall bytes.Index.
func hasNonNull(data []byte, key string, pivot int) bool {
	c := key[pivot]
	for i := pivot; i < len(data); {
		j := bytes.IndexByte(data[i:], c)
		if j < 0 {
			return false
		}
		at := i + j - pivot // where key would start
		i += j + 1
		if at+len(key) > len(data) || string(data[at:at+len(key)]) != key {
			continue
		}
		rest := data[at+len(key):]
		k := firstNonSpace(rest)
		if k < 0 || rest[k] != ':' {
			continue
		}
		rest = rest[k+1:]
		if k = firstNonSpace(rest); k >= 0 && rest[k] != 'n' {
			return true
		}
	}
	return false
}

func firstNonSpace(b []byte) int {
	for i, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return i
		}
	}
	return -1
}

// responsesUsage takes a Responses usage object: input_tokens counts the cache, like
// OpenAI's chat prompt_tokens, so the figures land in the OpenAI fields.
func (f *meterFindings) responsesUsage(u gjson.Result) {
	if !u.IsObject() {
		return
	}
	f.openAI = true
	f.prompt = u.Get("input_tokens").Int()
	f.completion = u.Get("output_tokens").Int()
	f.cached = u.Get("input_tokens_details.cached_tokens").Int()
	f.reasoning = u.Get("output_tokens_details.reasoning_tokens").Int()
}

// responsesEvent reads a Responses stream's terminal event (response.completed,
// response.incomplete or response.failed), which carries the whole response with its usage.
func (f *meterFindings) responsesEvent(data []byte) {
	r := gjson.GetBytes(data, "response")
	if !r.IsObject() {
		return
	}
	if m := r.Get("model"); m.Type == gjson.String {
		f.model = strings.Clone(m.Str)
	}
	f.responsesUsage(r.Get("usage"))
	f.setReason(0, r.Get("status"))
}

// responsesTerminal reports whether a Responses event type ends the stream.
func responsesTerminal(typ []byte) bool {
	return string(typ) == "response.completed" || string(typ) == "response.incomplete" || string(typ) == "response.failed"
}
