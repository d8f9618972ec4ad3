package translate

// OpenAI Responses client → Gemini provider. The request is parsed as for Anthropic
// (parseResponses: custom tools as functions taking one string, instructions as the first
// system message) and then goes to Gemini through Bifrost's chat schema, not its Gemini
// Responses converter: that converter's stream turns an upstream stream cut short into
// response.completed (HandleGeminiResponsesStream finalizes whatever arrived at EOF), which
// would hand a truncated answer to the client as a success. The chat stream ends only on
// Gemini's finish reason. Its answers are rendered by the Responses renderers of this
// package, from Bifrost Responses events built here (chatEvents).
//
// Gemini's thinking text is not relayed, and reasoning items in the input are dropped:
// Gemini cannot verify another provider's thinking, and its own thought signatures travel
// in the call IDs of its function calls (geminiCallIDs), which clients send back.

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
)

// doGeminiResponses performs one Responses attempt on a Gemini provider; see [Engine.Do]
// for the Result contract and [Engine.doResponses] for FinishReasons.
func (e *Engine) doGeminiResponses(bctx *schemas.BifrostContext, req *attempt.Request, dir direction, w http.ResponseWriter) attempt.Result {
	rreq, opts, err := parseResponses(bctx, req.Body)
	if err != nil {
		return uncommitted(req, failure{status: http.StatusBadRequest, code: "invalid_request_error",
			message: "The request body could not be parsed."}, err)
	}
	if rreq.Params.PreviousResponseID != nil {
		return uncommitted(req, failure{status: http.StatusBadRequest, code: "invalid_request_error",
			message:   "previous_response_id is not supported for this model's provider; send the full input.",
			retryable: true}, // the gateway's limit, not the provider's: a later provider may serve it
			errors.New("translate: previous_response_id on a translated request"))
	}
	creq := chatOfResponses(rreq)
	creq.Provider = dir.upstream
	creq.Model = req.Model
	creq.Fallbacks = nil
	fix := dir.adapt()

	if req.Stream {
		return e.streamGeminiResponses(bctx, req, creq, &opts, fix, w)
	}
	resp, berr := e.client.ChatCompletionRequest(bctx, creq)
	answered := time.Now()
	if berr != nil {
		return providerFailure(bctx, req, berr, answered)
	}
	fix(resp)
	return answerResponses(w, req, responsesOfChat(resp, req), &opts, usageOf(resp.Usage), answered)
}

// chatOfResponses converts a parsed Responses request to the chat request Gemini is sent.
func chatOfResponses(rreq *schemas.BifrostResponsesRequest) *schemas.BifrostChatRequest {
	rreq.Input = slices.DeleteFunc(rreq.Input, func(m schemas.ResponsesMessage) bool {
		return m.Type != nil && *m.Type == schemas.ResponsesMessageTypeReasoning
	})
	creq := rreq.ToChatRequest()
	// The Responses input splits an assistant turn into its text and its calls.
	creq.Input = mergeAssistantTurns(creq.Input)
	return creq
}

// responsesOfChat is a chat answer as the Responses response renderResponses writes: the
// message text, then the function calls, and the chat finish reason as the stop reason.
func responsesOfChat(resp *schemas.BifrostChatResponse, req *attempt.Request) *schemas.BifrostResponsesResponse {
	id := firstNonEmpty(resp.ID, "resp_"+req.RequestID)
	out := &schemas.BifrostResponsesResponse{ID: &id, Model: resp.Model, CreatedAt: resp.Created,
		Usage: resp.Usage.ToResponsesResponseUsage()}
	if len(resp.Choices) == 0 {
		return out
	}
	c := resp.Choices[0]
	out.StopReason = c.FinishReason
	if c.ChatNonStreamResponseChoice == nil || c.Message == nil {
		return out
	}
	if t := messageText(c.Message); t != nil && *t != "" {
		out.Output = append(out.Output, schemas.ResponsesMessage{ID: schemas.Ptr("msg_" + id),
			Type: schemas.Ptr(schemas.ResponsesMessageTypeMessage), Role: schemas.Ptr(schemas.ResponsesInputMessageRoleAssistant),
			Content: &schemas.ResponsesMessageContent{ContentStr: t}})
	}
	if am := c.Message.ChatAssistantMessage; am != nil {
		for _, tc := range am.ToolCalls {
			args := tc.Function.Arguments
			out.Output = append(out.Output, schemas.ResponsesMessage{Type: schemas.Ptr(schemas.ResponsesMessageTypeFunctionCall),
				ResponsesToolMessage: &schemas.ResponsesToolMessage{CallID: tc.ID, Name: tc.Function.Name, Arguments: &args}})
		}
	}
	return out
}

// streamGeminiResponses is streamResponses with a chat stream for a source: the same
// commit rule, and the same end (one response.completed, response.incomplete or
// response.failed; a stream that ends without Gemini's finish reason fails).
func (e *Engine) streamGeminiResponses(bctx *schemas.BifrostContext, req *attempt.Request, creq *schemas.BifrostChatRequest,
	opts *responsesOptions, fix func(*schemas.BifrostChatResponse), w http.ResponseWriter) attempt.Result {
	ch, berr := e.client.ChatCompletionStreamRequest(bctx, creq)
	first, res, ok := openStream(bctx, req, ch, berr, w)
	if !ok {
		return res
	}
	rc := http.NewResponseController(w)
	s := newResponsesStream(req, opts)
	conv := chatEvents{text: -1, calls: map[uint16]int{}}
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
				f.code, f.message = "upstream_stream_interrupted", "The provider stream was interrupted."
			}
			s.fail(&buf, f)
			flush()
			res.Err = bifrostCause(c.BifrostError)
			go drain(ch)
			return end()
		}
		if r := c.BifrostChatResponse; r != nil && !s.ended {
			fix(r)
			for _, ev := range conv.events(r) {
				s.chunk(&buf, ev)
			}
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
			res.Err = fmt.Errorf("translate: stream abandoned: %w", bctx.Err())
			return end()
		}
		s.fail(&buf, failure{status: http.StatusBadGateway, code: "upstream_error",
			message: "The provider stream ended unexpectedly.", retryable: true})
		flush()
		res.Err = errors.New("translate: upstream stream ended without a finish reason")
	}
	return end()
}

// chatEvents turns one stream's Bifrost chat chunks into the Bifrost Responses events
// responsesStream renders. Bifrost's own converter
// (BifrostChatResponse.ToBifrostResponsesStreamResponse) keeps only the first tool call of
// a chunk, and Gemini sends parallel calls in one.
type chatEvents struct {
	started bool
	next    int            // output index of the next item
	text    int            // output index of the open message, -1 when none
	calls   map[uint16]int // chat tool-call index → output index
}

func (c *chatEvents) events(r *schemas.BifrostChatResponse) []*schemas.BifrostResponsesStreamResponse {
	var out []*schemas.BifrostResponsesStreamResponse
	emit := func(typ schemas.ResponsesStreamResponseType, idx int, ev schemas.BifrostResponsesStreamResponse) {
		ev.Type, ev.OutputIndex = typ, ip(idx)
		out = append(out, &ev)
	}
	if !c.started {
		c.started = true
		out = append(out, &schemas.BifrostResponsesStreamResponse{Type: schemas.ResponsesStreamResponseTypeCreated,
			Response: &schemas.BifrostResponsesResponse{ID: &r.ID, Model: r.Model, CreatedAt: r.Created}})
	}
	for _, ch := range r.Choices {
		if ch.Index != 0 {
			continue // a Responses answer is one message
		}
		if ch.ChatStreamResponseChoice != nil && ch.Delta != nil {
			d := ch.Delta
			if d.Content != nil && *d.Content != "" {
				if c.text < 0 {
					c.text = c.next
					c.next++
					emit(schemas.ResponsesStreamResponseTypeOutputItemAdded, c.text, schemas.BifrostResponsesStreamResponse{
						Item: &schemas.ResponsesMessage{Type: schemas.Ptr(schemas.ResponsesMessageTypeMessage),
							Role: schemas.Ptr(schemas.ResponsesInputMessageRoleAssistant)}})
				}
				emit(schemas.ResponsesStreamResponseTypeOutputTextDelta, c.text, schemas.BifrostResponsesStreamResponse{Delta: d.Content})
			}
			for _, tc := range d.ToolCalls {
				idx, seen := c.calls[tc.Index]
				if !seen {
					if c.text >= 0 {
						emit(schemas.ResponsesStreamResponseTypeOutputItemDone, c.text, schemas.BifrostResponsesStreamResponse{})
						c.text = -1
					}
					idx = c.next
					c.next++
					c.calls[tc.Index] = idx
					emit(schemas.ResponsesStreamResponseTypeOutputItemAdded, idx, schemas.BifrostResponsesStreamResponse{
						Item: &schemas.ResponsesMessage{Type: schemas.Ptr(schemas.ResponsesMessageTypeFunctionCall),
							ResponsesToolMessage: &schemas.ResponsesToolMessage{CallID: tc.ID, Name: tc.Function.Name}}})
				}
				if args := tc.Function.Arguments; args != "" {
					emit(schemas.ResponsesStreamResponseTypeFunctionCallArgumentsDelta, idx, schemas.BifrostResponsesStreamResponse{Delta: &args})
				}
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			out = append(out, &schemas.BifrostResponsesStreamResponse{Type: schemas.ResponsesStreamResponseTypeCompleted,
				Response: &schemas.BifrostResponsesResponse{StopReason: ch.FinishReason, Usage: r.Usage.ToResponsesResponseUsage()}})
		}
	}
	return out
}
