package translate

// Streaming for the Responses direction. Bifrost's Anthropic Responses stream is used for
// what it parses (block boundaries, deltas, tool-call and thinking payloads, usage, stop
// reason), not for its events: the lane numbers events itself from 0, writes every item's
// done events from its own item model, and ends every stream with exactly one of
// response.completed, response.incomplete or response.failed, which Codex and the OpenAI
// SDK's stream accumulator require.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
)

// respEvent is one Responses stream event; which fields are set depends on Type.
type respEvent struct {
	Type           string          `json:"type"`
	SequenceNumber int             `json:"sequence_number"`
	Response       *respObject     `json:"response,omitempty"`
	OutputIndex    *int            `json:"output_index,omitempty"`
	ItemID         string          `json:"item_id,omitempty"`
	ContentIndex   *int            `json:"content_index,omitempty"`
	SummaryIndex   *int            `json:"summary_index,omitempty"`
	Item           json.RawMessage `json:"item,omitempty"`
	Part           any             `json:"part,omitempty"`
	Delta          *string         `json:"delta,omitempty"`
	Text           *string         `json:"text,omitempty"`
	Arguments      *string         `json:"arguments,omitempty"`
	Input          *string         `json:"input,omitempty"`
	Logprobs       *[]struct{}     `json:"logprobs,omitempty"`
}

func (e *Engine) streamResponses(bctx *schemas.BifrostContext, req *attempt.Request, breq *schemas.BifrostResponsesRequest,
	opts *responsesOptions, w http.ResponseWriter) attempt.Result {
	ch, berr := e.client.ResponsesStreamRequest(bctx, breq)
	first, res, ok := openStream(bctx, req, ch, berr, w)
	if !ok {
		return res
	}
	rc := http.NewResponseController(w)
	s := newResponsesStream(req, opts)
	var buf bytes.Buffer
	flush := func() bool { return flushTo(w, rc, &buf, &res) }
	end := func() attempt.Result {
		res.Usage, res.ResponseModel, res.FinishReasons = s.report()
		return res
	}

	for c := first; ; {
		if c.BifrostError != nil {
			f := classify(bctx, c.BifrostError)
			if f.code == "upstream_unreachable" {
				// After commit this means the connection died mid-stream (Bifrost reports
				// a truncated stream as a connection failure).
				f.code, f.message = "upstream_stream_interrupted", "The provider stream was interrupted."
			}
			s.fail(&buf, f)
			flush()
			res.Err = bifrostCause(c.BifrostError)
			go drain(ch)
			return end()
		}
		if r := c.BifrostResponsesStreamResponse; r != nil && !s.ended {
			s.chunk(&buf, r)
			if !flush() {
				go drain(ch) // client gone; bctx.Cancel stops the upstream read
				return end()
			}
		}
		if c, ok = next(bctx, ch); !ok {
			break
		}
	}
	if !s.ended {
		if bctx.Err() != nil {
			// The client left (or the dispatcher gave up) mid-stream: nobody reads a
			// terminal event. Bifrost closes the channel on its own.
			res.Err = fmt.Errorf("translate: stream abandoned: %w", bctx.Err())
			return end()
		}
		// The channel closed without a final chunk: the upstream stream was cut and Bifrost
		// did not say so. A clean end here would turn a truncated answer into a success.
		s.fail(&buf, failure{status: http.StatusBadGateway, code: "upstream_error",
			message: "The provider stream ended unexpectedly.", retryable: true})
		flush()
		res.Err = errors.New("translate: upstream stream ended without a final event")
	}
	return end()
}

// responsesStream renders Bifrost's Responses chunks as OpenAI Responses events.
type responsesStream struct {
	req  *attempt.Request
	opts *responsesOptions

	seq     int
	started bool
	ended   bool // a terminal event was written
	id      string
	model   string
	created int64
	items   []*outItem
	byIndex map[int]*outItem // Bifrost's output_index → item

	// startUsage is the usage message_start reported (input and cache, output so far);
	// usage the final one. reason is the finish reason of a completed stream.
	startUsage, usage *schemas.ResponsesResponseUsage
	reason            string
}

func newResponsesStream(req *attempt.Request, opts *responsesOptions) *responsesStream {
	return &responsesStream{req: req, opts: opts, byIndex: map[int]*outItem{}}
}

// report is what the Result says about the stream: the final usage, or for a stream cut
// short the usage message_start reported (the input was consumed), the model, and the
// finish reason of a stream that completed.
func (s *responsesStream) report() (attempt.Usage, string, []string) {
	u := s.usage
	if u == nil {
		u = s.startUsage
	}
	var reasons []string
	if s.reason != "" {
		reasons = []string{s.reason}
	}
	return responsesAttemptUsage(u), s.model, reasons
}

func ip(i int) *int { return &i }

func (s *responsesStream) emit(buf *bytes.Buffer, ev respEvent) {
	ev.SequenceNumber = s.seq
	b, err := marshal(ev)
	if err != nil { // plain structs: cannot happen
		return
	}
	s.seq++
	buf.WriteString("event: ")
	buf.WriteString(ev.Type)
	buf.WriteString("\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}

func (s *responsesStream) object(status string) *respObject {
	return s.opts.echo.object(s.id, s.model, s.created, status)
}

// start writes response.created and response.in_progress, taking the id, model and start
// usage from Bifrost's response.created (Anthropic's message_start) when r is one.
func (s *responsesStream) start(buf *bytes.Buffer, r *schemas.BifrostResponsesStreamResponse) {
	s.started = true
	if r != nil && r.Type == schemas.ResponsesStreamResponseTypeCreated && r.Response != nil {
		s.id, s.model, s.created = deref(r.Response.ID), r.Response.Model, int64(r.Response.CreatedAt)
		s.startUsage = r.Response.Usage
	}
	s.id = firstNonEmpty(s.id, "resp_"+s.req.RequestID)
	s.model = firstNonEmpty(s.model, s.req.Model)
	s.created = createdAt(int(s.created))
	s.emit(buf, respEvent{Type: "response.created", Response: s.object("in_progress")})
	s.emit(buf, respEvent{Type: "response.in_progress", Response: s.object("in_progress")})
}

// chunk renders one Bifrost chunk. Events the item model writes itself (the done events,
// content parts) and events without an OpenAI counterpart (ping) are dropped.
func (s *responsesStream) chunk(buf *bytes.Buffer, r *schemas.BifrostResponsesStreamResponse) {
	if !s.started {
		s.start(buf, r)
	}
	switch r.Type {
	case schemas.ResponsesStreamResponseTypeOutputItemAdded:
		s.added(buf, r)
	case schemas.ResponsesStreamResponseTypeOutputTextDelta:
		it := s.item(r)
		if it == nil || it.done {
			// A delta without an open item: open a message for it rather than lose the text.
			it = s.add(buf, r.OutputIndex, &outItem{kind: kindMessage})
		}
		if it.kind == kindMessage && r.Delta != nil && *r.Delta != "" {
			it.text.WriteString(*r.Delta)
			s.emit(buf, respEvent{Type: "response.output_text.delta", ItemID: it.id, OutputIndex: ip(s.indexOf(it)),
				ContentIndex: ip(0), Delta: r.Delta, Logprobs: &[]struct{}{}})
		}
	case schemas.ResponsesStreamResponseTypeFunctionCallArgumentsDelta:
		it := s.item(r)
		if it == nil || it.done || r.Delta == nil || *r.Delta == "" {
			return
		}
		switch it.kind {
		case kindFunctionCall:
			it.text.WriteString(*r.Delta)
			s.emit(buf, respEvent{Type: "response.function_call_arguments.delta", ItemID: it.id,
				OutputIndex: ip(s.indexOf(it)), Delta: r.Delta})
		case kindCustomToolCall:
			// The arguments are {"input": "..."} JSON until complete; the input goes out
			// decoded, in one delta, when the call is done.
			it.text.WriteString(*r.Delta)
		}
	case schemas.ResponsesStreamResponseTypeReasoningSummaryTextDelta:
		// Bifrost sends thinking text here, and the signature alone (no delta), which
		// arrives again on the item's done.
		it := s.item(r)
		if it == nil || it.done || it.kind != kindReasoning || r.Delta == nil || *r.Delta == "" {
			return
		}
		s.openSummary(buf, it)
		it.text.WriteString(*r.Delta)
		s.emit(buf, respEvent{Type: "response.reasoning_summary_text.delta", ItemID: it.id,
			OutputIndex: ip(s.indexOf(it)), SummaryIndex: ip(0), Delta: r.Delta})
	case schemas.ResponsesStreamResponseTypeOutputItemDone:
		it := s.item(r)
		if it == nil {
			// Bifrost sends some items (compaction, structured output) added and done at
			// once, or done only.
			it = s.added(buf, r)
		}
		if it != nil {
			s.finishItem(buf, it, r.Item)
		}
	case schemas.ResponsesStreamResponseTypeCompleted, schemas.ResponsesStreamResponseTypeIncomplete:
		s.complete(buf, r.Response)
	case schemas.ResponsesStreamResponseTypeFailed:
		s.fail(buf, failure{status: http.StatusBadGateway, message: "The provider failed to complete the response."})
	}
}

// item is the item a Bifrost event refers to by output_index.
func (s *responsesStream) item(r *schemas.BifrostResponsesStreamResponse) *outItem {
	if r.OutputIndex == nil {
		return nil
	}
	return s.byIndex[*r.OutputIndex]
}

func (s *responsesStream) indexOf(it *outItem) int {
	for i, x := range s.items {
		if x == it {
			return i
		}
	}
	return -1
}

// added opens the item of a Bifrost output_item.added (or of a done whose added never came)
// and returns it; nil when the event carries no item.
func (s *responsesStream) added(buf *bytes.Buffer, r *schemas.BifrostResponsesStreamResponse) *outItem {
	m := r.Item
	if m == nil {
		return nil
	}
	it := &outItem{id: deref(m.ID)}
	typ := schemas.ResponsesMessageType("")
	if m.Type != nil {
		typ = *m.Type
	}
	switch {
	case typ == schemas.ResponsesMessageTypeMessage:
		it.kind = kindMessage
	case typ == schemas.ResponsesMessageTypeFunctionCall && m.ResponsesToolMessage != nil:
		it.kind, it.callID, it.name = kindFunctionCall, deref(m.CallID), deref(m.Name)
		if s.opts.custom[it.name] {
			it.kind = kindCustomToolCall
		}
		it.id = firstNonEmpty(it.id, it.callID)
	case typ == schemas.ResponsesMessageTypeReasoning:
		it.kind = kindReasoning
	default:
		b, err := marshal(m)
		if err != nil {
			return nil
		}
		it.kind, it.opaque = kindOpaque, b
	}
	return s.add(buf, r.OutputIndex, it)
}

// add appends an item, writes its output_item.added and, for a message, its one content
// part's content_part.added.
func (s *responsesStream) add(buf *bytes.Buffer, bifrostIndex *int, it *outItem) *outItem {
	idx := len(s.items)
	if it.id == "" && it.kind != kindOpaque {
		it.id = fmt.Sprintf("item_%s_%d", s.id, idx)
	}
	s.items = append(s.items, it)
	if bifrostIndex != nil {
		s.byIndex[*bifrostIndex] = it
	}
	s.emit(buf, respEvent{Type: "response.output_item.added", OutputIndex: ip(idx), Item: it.json(false)})
	if it.kind == kindMessage {
		it.partOpen = true
		s.emit(buf, respEvent{Type: "response.content_part.added", ItemID: it.id, OutputIndex: ip(idx),
			ContentIndex: ip(0), Part: newOutputText("")})
	}
	return it
}

func (s *responsesStream) openSummary(buf *bytes.Buffer, it *outItem) {
	if it.partOpen {
		return
	}
	it.partOpen = true
	s.emit(buf, respEvent{Type: "response.reasoning_summary_part.added", ItemID: it.id,
		OutputIndex: ip(s.indexOf(it)), SummaryIndex: ip(0), Part: summaryText{Type: "summary_text"}})
}

// finishItem writes an item's closing events and its output_item.done. done is Bifrost's
// done item (nil when the stream completes without one).
func (s *responsesStream) finishItem(buf *bytes.Buffer, it *outItem, done *schemas.ResponsesMessage) {
	if it.done {
		return
	}
	it.done = true
	idx := ip(s.indexOf(it))
	switch it.kind {
	case kindMessage:
		text := it.text.String()
		s.emit(buf, respEvent{Type: "response.output_text.done", ItemID: it.id, OutputIndex: idx,
			ContentIndex: ip(0), Text: &text, Logprobs: &[]struct{}{}})
		s.emit(buf, respEvent{Type: "response.content_part.done", ItemID: it.id, OutputIndex: idx,
			ContentIndex: ip(0), Part: newOutputText(text)})
	case kindFunctionCall, kindCustomToolCall:
		if it.text.Len() == 0 && done != nil && done.ResponsesToolMessage != nil {
			it.text.WriteString(deref(done.Arguments))
		}
		if it.kind == kindFunctionCall {
			args := it.arguments()
			s.emit(buf, respEvent{Type: "response.function_call_arguments.done", ItemID: it.id, OutputIndex: idx,
				Arguments: &args})
			break
		}
		input := it.input()
		if input != "" {
			s.emit(buf, respEvent{Type: "response.custom_tool_call_input.delta", ItemID: it.id, OutputIndex: idx,
				Delta: &input})
		}
		s.emit(buf, respEvent{Type: "response.custom_tool_call_input.done", ItemID: it.id, OutputIndex: idx,
			Input: &input})
	case kindReasoning:
		if done != nil {
			var text string
			it.thinking, text = reasoningOf(done)
			if it.text.Len() == 0 {
				it.text.WriteString(text)
			}
		}
		if it.text.Len() > 0 {
			s.openSummary(buf, it)
			text := it.text.String()
			s.emit(buf, respEvent{Type: "response.reasoning_summary_text.done", ItemID: it.id, OutputIndex: idx,
				SummaryIndex: ip(0), Text: &text})
			s.emit(buf, respEvent{Type: "response.reasoning_summary_part.done", ItemID: it.id, OutputIndex: idx,
				SummaryIndex: ip(0), Part: summaryText{Type: "summary_text", Text: text}})
		}
	case kindOpaque:
		if done != nil {
			if b, err := marshal(done); err == nil {
				it.opaqueDone = b
			}
		}
	}
	s.emit(buf, respEvent{Type: "response.output_item.done", OutputIndex: idx, Item: it.json(true)})
}

// complete closes what is still open and writes the terminal event of a stream Anthropic
// finished: response.completed, or response.incomplete when it stopped at max_tokens or
// refused.
func (s *responsesStream) complete(buf *bytes.Buffer, resp *schemas.BifrostResponsesResponse) {
	if resp == nil {
		resp = &schemas.BifrostResponsesResponse{}
	}
	for _, it := range s.items {
		s.finishItem(buf, it, nil)
	}
	status, incomplete := terminal(resp.StopReason)
	obj := s.object(status)
	obj.IncompleteDetails = incomplete
	for _, it := range s.items {
		obj.Output = append(obj.Output, it.json(true))
	}
	if resp.Usage != nil {
		s.usage = resp.Usage
	}
	obj.Usage = responsesUsage(s.usage)
	typ := "response.completed"
	if status == "incomplete" {
		typ = "response.incomplete"
	}
	s.emit(buf, respEvent{Type: typ, Response: obj})
	s.ended, s.reason = true, finishReason(status, incomplete)
}

// fail ends the stream with response.failed, which Codex and the SDKs raise as an error
// (Codex retries it). The items finished so far are its output; open ones are not closed.
func (s *responsesStream) fail(buf *bytes.Buffer, f failure) {
	if s.ended {
		return
	}
	if !s.started {
		s.start(buf, nil)
	}
	obj := s.object("failed")
	code := "server_error"
	if f.status == http.StatusTooManyRequests {
		code = "rate_limit_exceeded"
	}
	obj.Error = &respError{Code: code, Message: f.message}
	for _, it := range s.items {
		if it.done {
			obj.Output = append(obj.Output, it.json(true))
		}
	}
	s.emit(buf, respEvent{Type: "response.failed", Response: obj})
	s.ended = true
}
