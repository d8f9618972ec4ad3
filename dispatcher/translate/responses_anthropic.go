package translate

// OpenAI Responses client (Codex and other coding CLIs) → Anthropic Messages provider.
// Bifrost converts the request (providers/anthropic.ToAnthropicResponsesRequest) and parses
// Anthropic's answer into its Responses schema; this file and responses_stream.go render
// that schema as OpenAI's wire format (responses_items.go). Bifrost 1.7.15 loses what a
// coding CLI depends on, so the lane maps around it:
//   - custom tools ({"type":"custom"}, Codex's apply_patch): Bifrost sends them with an empty
//     input schema, so the model cannot pass anything, and turns custom_tool_call history
//     into prose ("Tool call: apply_patch") with the input dropped. Here a custom tool goes
//     to Anthropic as a function taking one string, "input" (customToolFunction), its
//     history as function calls with that argument (rewriteInput), and calls to it come
//     back as custom_tool_call items carrying the string.
//   - instructions: Bifrost drops them when the input also has a system or developer
//     message, as every Codex request does; they are sent as the first system message.
//   - thinking: Anthropic refuses a tool-use turn whose thinking blocks are missing or
//     altered. Codex replays a reasoning item from its summary and encrypted_content only,
//     so the blocks travel sealed in encrypted_content (sealThinking) and are restored
//     before Bifrost sees them; another provider's reasoning items are dropped.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/maximhq/bifrost/core/providers/openai"
	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
)

// responsesOptions are request details the Responses renderers need.
type responsesOptions struct {
	custom map[string]bool // names of the client's custom tools
	echo   respEcho
}

// doResponses performs one Responses attempt on an Anthropic provider; see [Engine.Do] for
// the Result contract. FinishReasons is the terminal status the client saw: "completed", or
// the reason the answer is incomplete ("max_output_tokens", "content_filter").
func (e *Engine) doResponses(bctx *schemas.BifrostContext, req *attempt.Request, dir direction, w http.ResponseWriter) attempt.Result {
	breq, opts, err := parseResponses(bctx, req.Body)
	if err != nil {
		// The same body would fail on every provider.
		return uncommitted(req, failure{status: http.StatusBadRequest, code: "invalid_request_error",
			message: "The request body could not be parsed."}, err)
	}
	if breq.Params.PreviousResponseID != nil {
		// Sluice stores no responses; silently dropping the earlier turns would answer a
		// different conversation than the client holds.
		return uncommitted(req, failure{status: http.StatusBadRequest, code: "invalid_request_error",
			message:   "previous_response_id is not supported for this model's provider; send the full input.",
			retryable: true}, // the gateway's limit, not the provider's: a later provider may serve it
			errors.New("translate: previous_response_id on a translated request"))
	}
	breq.Provider = dir.upstream
	breq.Model = req.Model
	breq.Fallbacks = nil

	if req.Stream {
		return e.streamResponses(bctx, req, breq, &opts, w)
	}
	resp, berr := e.client.ResponsesRequest(bctx, breq)
	answered := time.Now()
	if berr != nil {
		return providerFailure(bctx, req, berr, answered)
	}
	return answerResponses(w, req, resp, &opts, responsesAttemptUsage(resp.Usage), answered)
}

// answerResponses renders a whole Responses answer in OpenAI's shape and commits it; an
// answer that cannot be rendered is an uncommitted failure the chain may fall back from.
func answerResponses(w http.ResponseWriter, req *attempt.Request, resp *schemas.BifrostResponsesResponse,
	opts *responsesOptions, usage attempt.Usage, answered time.Time) attempt.Result {
	body, reason, err := renderResponses(resp, req, opts)
	if err != nil {
		res := uncommitted(req, failure{status: http.StatusBadGateway, code: "upstream_error",
			message: "The provider's response could not be translated.", retryable: true}, err)
		res.FirstByte = answered
		return res
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)
	res := attempt.Result{Status: http.StatusOK, Committed: true, FirstByte: answered,
		Usage: usage, ResponseModel: resp.Model, FinishReasons: []string{reason}}
	if _, err := w.Write(body); err != nil {
		res.Err = fmt.Errorf("translate: write response: %w", err)
	}
	return res
}

// responsesAttemptUsage normalizes Bifrost's Responses usage into [attempt.Usage].
//
// For an Anthropic provider Bifrost 1.7.15 folds cache reads and writes into InputTokens
// (ConvertAnthropicUsageToBifrostUsage for a whole answer, the final chunk of
// HandleAnthropicResponsesStream and message_start for a stream) and names them in
// InputTokensDetails, so InputTokens is already the total [attempt.Usage] wants and the
// parts are not added again. The direction tests pin this against the fake provider's raw
// Anthropic figures, so a Bifrost upgrade that stops folding shows up there.
func responsesAttemptUsage(u *schemas.ResponsesResponseUsage) attempt.Usage {
	if u == nil {
		return attempt.Usage{}
	}
	out := attempt.Usage{InputTokens: int64(u.InputTokens), OutputTokens: int64(u.OutputTokens)}
	if d := u.InputTokensDetails; d != nil {
		out.CacheReadTokens = int64(d.CachedReadTokens)
		out.CacheCreationTokens = int64(d.CachedWriteTokens)
		if w := d.CachedWriteTokenDetails; w != nil {
			out.CacheCreation1hTokens = int64(w.CachedWriteTokens1h)
		}
	}
	if d := u.OutputTokensDetails; d != nil {
		out.ReasoningTokens = int64(d.ReasoningTokens)
	}
	return out
}

func parseResponses(bctx *schemas.BifrostContext, body []byte) (*schemas.BifrostResponsesRequest, responsesOptions, error) {
	var oreq openai.OpenAIResponsesRequest
	if err := json.Unmarshal(body, &oreq); err != nil {
		return nil, responsesOptions{}, err
	}
	if oreq.Input.OpenAIResponsesRequestInputStr == nil && len(oreq.Input.OpenAIResponsesRequestInputArray) == 0 {
		return nil, responsesOptions{}, errors.New("translate: no input")
	}
	breq := oreq.ToBifrostResponsesRequest(bctx)
	if breq == nil || breq.Params == nil {
		return nil, responsesOptions{}, errors.New("translate: request not convertible")
	}
	opts := responsesOptions{custom: map[string]bool{}, echo: echoOf(body)}
	p := breq.Params
	for i := range p.Tools {
		if t := &p.Tools[i]; t.Type == schemas.ResponsesToolTypeCustom && t.Name != nil && *t.Name != "" {
			opts.custom[*t.Name] = true
			p.Tools[i] = customToolFunction(t)
		}
	}
	if tc := p.ToolChoice; tc != nil && tc.ResponsesToolChoiceStruct != nil &&
		tc.ResponsesToolChoiceStruct.Type == schemas.ResponsesToolChoiceTypeCustom {
		tc.ResponsesToolChoiceStruct.Type = schemas.ResponsesToolChoiceTypeFunction
	}
	breq.Input = rewriteInput(breq.Input)
	if in := p.Instructions; in != nil && *in != "" {
		// Bifrost uses instructions only when the input has no system or developer message
		// (ToAnthropicResponsesRequest), and Codex sends both: its base prompt as
		// instructions, its environment as developer messages. OpenAI reads instructions
		// as a system message ahead of the input, so they become one.
		sys := schemas.ResponsesMessage{Type: schemas.Ptr(schemas.ResponsesMessageTypeMessage),
			Role: schemas.Ptr(schemas.ResponsesInputMessageRoleSystem), Content: &schemas.ResponsesMessageContent{ContentStr: in}}
		breq.Input = append([]schemas.ResponsesMessage{sys}, breq.Input...)
		p.Instructions = nil
	}
	return breq, opts, nil
}

// customToolParameters is the input schema of a custom tool on Anthropic: the tool's
// free-form input as one string.
const customToolParameters = `{"type":"object","properties":{"input":{"type":"string","description":"The tool's whole input, as plain text."}},"required":["input"],"additionalProperties":false}`

// customToolFunction turns a custom tool into the function Anthropic is offered. A grammar
// (Codex's apply_patch has a Lark one) cannot be enforced there, so the model is shown it.
func customToolFunction(t *schemas.ResponsesTool) schemas.ResponsesTool {
	var b strings.Builder
	if d := deref(t.Description); d != "" {
		b.WriteString(d)
		b.WriteString("\n\n")
	}
	b.WriteString(`Pass the whole input, as plain text, in the "input" string.`)
	if c := t.ResponsesToolCustom; c != nil && c.Format != nil && c.Format.Definition != nil && *c.Format.Definition != "" {
		fmt.Fprintf(&b, " It must match this %s grammar:\n%s", firstNonEmpty(deref(c.Format.Syntax), "formal"), *c.Format.Definition)
	}
	desc := b.String()
	var params schemas.ToolFunctionParameters
	_ = json.Unmarshal([]byte(customToolParameters), &params) // a constant: cannot fail
	return schemas.ResponsesTool{Type: schemas.ResponsesToolTypeFunction, Name: t.Name, Description: &desc,
		CacheControl: t.CacheControl, ResponsesToolFunction: &schemas.ResponsesToolFunction{Parameters: &params}}
}

// rewriteInput maps the input items Bifrost would mangle: custom tool calls and their
// outputs become function calls and outputs (matching customToolFunction), and reasoning
// items are restored to the thinking blocks they carry, or dropped when they are another
// provider's (Anthropic cannot verify them).
func rewriteInput(in []schemas.ResponsesMessage) []schemas.ResponsesMessage {
	out := make([]schemas.ResponsesMessage, 0, len(in))
	for _, m := range in {
		if m.Type == nil {
			out = append(out, m)
			continue
		}
		switch *m.Type {
		case schemas.ResponsesMessageTypeCustomToolCall:
			tm := schemas.ResponsesToolMessage{}
			if m.ResponsesToolMessage != nil {
				tm = *m.ResponsesToolMessage
			}
			input := ""
			if tm.ResponsesCustomToolCall != nil {
				input = tm.ResponsesCustomToolCall.Input
			}
			args, _ := marshal(struct {
				Input string `json:"input"`
			}{input})
			s := string(args)
			tm.Arguments, tm.ResponsesCustomToolCall = &s, nil
			m.ResponsesToolMessage = &tm
			m.Type = schemas.Ptr(schemas.ResponsesMessageTypeFunctionCall)
		case schemas.ResponsesMessageTypeCustomToolCallOutput:
			m.Type = schemas.Ptr(schemas.ResponsesMessageTypeFunctionCallOutput)
		case schemas.ResponsesMessageTypeReasoning:
			out = append(out, replayReasoning(&m)...)
			continue
		}
		out = append(out, m)
	}
	return out
}

// replayReasoning returns the Bifrost reasoning items that rebuild the sealed thinking
// blocks of a reasoning item: runs of thinking blocks as reasoning_text content with their
// signatures, each redacted block as encrypted content (Bifrost's redacted_thinking form).
func replayReasoning(m *schemas.ResponsesMessage) []schemas.ResponsesMessage {
	enc := ""
	if m.ResponsesReasoning != nil {
		enc = deref(m.ResponsesReasoning.EncryptedContent)
	}
	blocks, ok := unsealThinking(enc)
	if !ok {
		return nil
	}
	var out []schemas.ResponsesMessage
	var run []schemas.ResponsesMessageContentBlock
	flush := func() {
		if len(run) > 0 {
			out = append(out, schemas.ResponsesMessage{ID: m.ID, Type: schemas.Ptr(schemas.ResponsesMessageTypeReasoning),
				Content: &schemas.ResponsesMessageContent{ContentBlocks: run}})
			run = nil
		}
	}
	for _, b := range blocks {
		if b.Redacted != "" {
			flush()
			out = append(out, schemas.ResponsesMessage{ID: m.ID, Type: schemas.Ptr(schemas.ResponsesMessageTypeReasoning),
				ResponsesReasoning: &schemas.ResponsesReasoning{Summary: []schemas.ResponsesReasoningSummary{},
					EncryptedContent: schemas.Ptr(b.Redacted)}})
			continue
		}
		run = append(run, schemas.ResponsesMessageContentBlock{Type: schemas.ResponsesOutputMessageContentTypeReasoning,
			Text: schemas.Ptr(b.Thinking), Signature: schemas.Ptr(b.Signature)})
	}
	flush()
	return out
}

func renderResponses(resp *schemas.BifrostResponsesResponse, req *attempt.Request, opts *responsesOptions) ([]byte, string, error) {
	status, incomplete := terminal(resp.StopReason)
	obj := opts.echo.object(firstNonEmpty(deref(resp.ID), "resp_"+req.RequestID), firstNonEmpty(resp.Model, req.Model),
		createdAt(resp.CreatedAt), status)
	obj.IncompleteDetails = incomplete
	for _, it := range itemsOf(resp.Output, opts.custom) {
		obj.Output = append(obj.Output, it.json(true))
	}
	obj.Usage = responsesUsage(resp.Usage)
	b, err := marshal(obj)
	return b, finishReason(status, incomplete), err
}
