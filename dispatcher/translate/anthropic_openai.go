package translate

// Anthropic Messages client → OpenAI / OpenAI-compatible provider. Bifrost 1.7.15 has no
// direct Anthropic-request → chat converter; it goes through its Responses schema
// (AnthropicMessageRequest.ToBifrostResponsesRequest, then BifrostResponsesRequest.ToChatRequest),
// and the result needs the fix-ups in fixChatRequest. Responses are rendered here: Bifrost's
// ToAnthropicChatStreamResponse is stateless and emits neither content_block_start/stop
// nor message_stop, which the Anthropic SDK and Claude Code require.

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/maximhq/bifrost/core/providers/anthropic"
	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

func parseAnthropicMessages(bctx *schemas.BifrostContext, body []byte) (*schemas.BifrostChatRequest, clientOptions, error) {
	var areq anthropic.AnthropicMessageRequest
	if err := json.Unmarshal(body, &areq); err != nil {
		return nil, clientOptions{}, err
	}
	if len(areq.Messages) == 0 {
		return nil, clientOptions{}, errors.New("translate: no messages")
	}
	rreq := areq.ToBifrostResponsesRequest(bctx)
	if rreq == nil {
		return nil, clientOptions{}, errors.New("translate: request not convertible")
	}
	creq := rreq.ToChatRequest()
	if creq == nil {
		return nil, clientOptions{}, errors.New("translate: request not convertible")
	}
	fixChatRequest(creq, &areq)
	return creq, clientOptions{}, nil
}

// fixChatRequest repairs what the Responses round trip loses or splits.
func fixChatRequest(creq *schemas.BifrostChatRequest, areq *anthropic.AnthropicMessageRequest) {
	if creq.Params == nil {
		creq.Params = &schemas.ChatParameters{}
	}
	p := creq.Params
	// stop_sequences land in ExtraParams, which Bifrost only sends in passthrough mode.
	if len(areq.StopSequences) > 0 && len(p.Stop) == 0 {
		p.Stop = areq.StopSequences
	}
	delete(p.ExtraParams, "stop")
	if p.MaxCompletionTokens == nil && areq.MaxTokens > 0 {
		mt := areq.MaxTokens
		p.MaxCompletionTokens = &mt
	}
	creq.Input = mergeAssistantTurns(creq.Input)
}

// mergeAssistantTurns joins an assistant text message with the tool-call message that
// follows it: the Responses schema splits one Anthropic assistant turn in two, and some
// OpenAI-compatible servers reject consecutive assistant messages.
func mergeAssistantTurns(in []schemas.ChatMessage) []schemas.ChatMessage {
	out := in[:0:0]
	for _, m := range in {
		if n := len(out); n > 0 && m.Role == schemas.ChatMessageRoleAssistant &&
			out[n-1].Role == schemas.ChatMessageRoleAssistant && hasToolCalls(&m) && !hasToolCalls(&out[n-1]) &&
			(m.Content == nil || messageText(&m) == nil || *messageText(&m) == "") {
			prev := out[n-1]
			am := *m.ChatAssistantMessage
			if prev.ChatAssistantMessage != nil {
				merged := *prev.ChatAssistantMessage
				merged.ToolCalls = am.ToolCalls
				am = merged
			}
			prev.ChatAssistantMessage = &am
			out[n-1] = prev
			continue
		}
		out = append(out, m)
	}
	return out
}

func hasToolCalls(m *schemas.ChatMessage) bool {
	return m.ChatAssistantMessage != nil && len(m.ChatAssistantMessage.ToolCalls) > 0
}

// Anthropic wire shapes.
type antUsage struct {
	InputTokens              int  `json:"input_tokens"`
	OutputTokens             int  `json:"output_tokens"`
	CacheReadInputTokens     *int `json:"cache_read_input_tokens,omitempty"`
	CacheCreationInputTokens *int `json:"cache_creation_input_tokens,omitempty"`
}

type antBlock struct {
	Type  string          `json:"type"`
	Text  *string         `json:"text,omitempty"`
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
}

type antMessage struct {
	ID           string     `json:"id"`
	Type         string     `json:"type"`
	Role         string     `json:"role"`
	Model        string     `json:"model"`
	Content      []antBlock `json:"content"`
	StopReason   *string    `json:"stop_reason"`
	StopSequence *string    `json:"stop_sequence"`
	Usage        antUsage   `json:"usage"`
}

// anthropicUsage converts OpenAI-meaning usage (prompt_tokens includes cached tokens) to
// Anthropic's (input_tokens excludes cache reads and writes).
func anthropicUsage(u *schemas.BifrostLLMUsage) antUsage {
	if u == nil {
		return antUsage{}
	}
	out := antUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
	if d := u.PromptTokensDetails; d != nil {
		if d.CachedReadTokens > 0 {
			v := d.CachedReadTokens
			out.CacheReadInputTokens = &v
			out.InputTokens -= v
		}
		if d.CachedWriteTokens > 0 {
			v := d.CachedWriteTokens
			out.CacheCreationInputTokens = &v
			out.InputTokens -= v
		}
	}
	if out.InputTokens < 0 {
		out.InputTokens = 0
	}
	return out
}

func anthropicStopReason(r string, hasTools bool) string {
	switch r {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	case "stop", "":
		if hasTools {
			return "tool_use"
		}
	}
	return "end_turn"
}

// toolInput is the tool call's arguments as a JSON object; Anthropic clients parse
// input as an object, so anything else becomes {}.
func toolInput(args string) json.RawMessage {
	b := []byte(args)
	if len(bytes.TrimSpace(b)) > 0 && json.Valid(b) && bytes.TrimSpace(b)[0] == '{' {
		return json.RawMessage(b)
	}
	return json.RawMessage("{}")
}

func renderAnthropicMessage(resp *schemas.BifrostChatResponse, req *attempt.Request) ([]byte, []string, error) {
	if len(resp.Choices) == 0 {
		return nil, nil, errors.New("translate: response without choices")
	}
	c := resp.Choices[0]
	out := antMessage{
		ID:      firstNonEmpty(resp.ID, "msg_"+req.RequestID),
		Type:    "message",
		Role:    "assistant",
		Model:   firstNonEmpty(resp.Model, req.Model),
		Content: []antBlock{},
		Usage:   anthropicUsage(resp.Usage),
	}
	if c.ChatNonStreamResponseChoice != nil && c.Message != nil {
		if t := messageText(c.Message); t != nil && *t != "" {
			out.Content = append(out.Content, antBlock{Type: "text", Text: t})
		}
		if am := c.Message.ChatAssistantMessage; am != nil {
			for _, tc := range am.ToolCalls {
				out.Content = append(out.Content, antBlock{Type: "tool_use", ID: deref(tc.ID),
					Name: deref(tc.Function.Name), Input: toolInput(tc.Function.Arguments)})
			}
		}
	}
	hasTools := len(out.Content) > 0 && out.Content[len(out.Content)-1].Type == "tool_use"
	stop := anthropicStopReason(deref(c.FinishReason), hasTools)
	out.StopReason = &stop
	b, err := json.Marshal(out)
	return b, []string{stop}, err
}

// anthropicStream renders Bifrost chunks as Anthropic Messages stream events.
type anthropicStream struct {
	model, requestID string
	// inputEstimate stands in for message_start's input_tokens until the upstream reports
	// usage: OpenAI reports it only in a stream's last chunk.
	inputEstimate int

	started   bool
	next      int // index of the next content block
	open      int // index of the open block, -1 if none
	openKind  string
	toolBlock map[uint16]int // OpenAI tool-call index → content block index
	sawTools  bool
	finished  bool
	reason    string
	sent      string // the stop_reason written by finish
	usage     *schemas.BifrostLLMUsage
}

func newAnthropicStream(req *attempt.Request, _ clientOptions) streamRenderer {
	return &anthropicStream{model: req.Model, requestID: req.RequestID, open: -1, toolBlock: map[uint16]int{},
		inputEstimate: int(pricing.EstimateTokens(int64(len(req.Body))))}
}

func (s *anthropicStream) event(buf *bytes.Buffer, typ string, v any) {
	b, err := json.Marshal(v)
	if err != nil { // plain maps and structs: cannot happen
		return
	}
	buf.WriteString("event: ")
	buf.WriteString(typ)
	buf.WriteString("\ndata: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}

func (s *anthropicStream) start(buf *bytes.Buffer, c *schemas.BifrostChatResponse) {
	s.started = true
	// OpenAI-format upstreams report usage only at the end. Clients read message_start's
	// input_tokens to track their context, so until then it carries an estimate from the
	// request's size; message_delta carries the provider's real figures, which the SDKs
	// take over the start's.
	u := anthropicUsage(c.Usage)
	u.OutputTokens = 0
	if u.InputTokens == 0 && c.Usage == nil {
		u.InputTokens = s.inputEstimate
	}
	s.event(buf, "message_start", map[string]any{
		"type": "message_start",
		"message": antMessage{ID: firstNonEmpty(c.ID, "msg_"+s.requestID), Type: "message", Role: "assistant",
			Model: s.model, Content: []antBlock{}, Usage: u},
	})
}

func (s *anthropicStream) closeBlock(buf *bytes.Buffer) {
	if s.open < 0 {
		return
	}
	s.event(buf, "content_block_stop", map[string]any{"type": "content_block_stop", "index": s.open})
	s.open = -1
	s.openKind = ""
}

func (s *anthropicStream) openBlock(buf *bytes.Buffer, kind string, block antBlock) int {
	s.closeBlock(buf)
	s.open = s.next
	s.openKind = kind
	s.next++
	s.event(buf, "content_block_start", map[string]any{"type": "content_block_start", "index": s.open,
		"content_block": block})
	return s.open
}

func (s *anthropicStream) chunk(buf *bytes.Buffer, c *schemas.BifrostChatResponse) {
	if !s.started {
		s.start(buf, c)
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for _, ch := range c.Choices {
		if ch.Index != 0 {
			continue // Anthropic has one message; n>1 is not translatable
		}
		if ch.ChatStreamResponseChoice != nil && ch.Delta != nil {
			d := ch.Delta
			if d.Content != nil && *d.Content != "" {
				if s.openKind != "text" {
					empty := ""
					s.openBlock(buf, "text", antBlock{Type: "text", Text: &empty})
				}
				s.event(buf, "content_block_delta", map[string]any{"type": "content_block_delta", "index": s.open,
					"delta": map[string]string{"type": "text_delta", "text": *d.Content}})
			}
			for _, tc := range d.ToolCalls {
				s.toolDelta(buf, tc)
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finished = true
			s.reason = *ch.FinishReason
		}
	}
}

func (s *anthropicStream) toolDelta(buf *bytes.Buffer, tc schemas.ChatAssistantMessageToolCall) {
	s.sawTools = true
	idx, ok := s.toolBlock[tc.Index]
	if !ok {
		idx = s.openBlock(buf, "tool", antBlock{Type: "tool_use", ID: deref(tc.ID), Name: deref(tc.Function.Name),
			Input: json.RawMessage("{}")})
		s.toolBlock[tc.Index] = idx
	}
	if tc.Function.Arguments == "" {
		return
	}
	// OpenAI servers finish one tool call before the next; a late fragment for an
	// earlier call still goes to that call's block so the arguments stay whole.
	s.event(buf, "content_block_delta", map[string]any{"type": "content_block_delta", "index": idx,
		"delta": map[string]string{"type": "input_json_delta", "partial_json": tc.Function.Arguments}})
}

func (s *anthropicStream) done() bool { return s.finished }

func (s *anthropicStream) finish(buf *bytes.Buffer) {
	if s.next == 0 {
		// Claude Code reads a stream without any content block as an empty answer.
		empty := ""
		s.openBlock(buf, "text", antBlock{Type: "text", Text: &empty})
	}
	s.closeBlock(buf)
	stop := anthropicStopReason(s.reason, s.sawTools)
	s.sent = stop
	s.event(buf, "message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil},
		"usage": anthropicUsage(s.usage),
	})
	s.event(buf, "message_stop", map[string]string{"type": "message_stop"})
}

func (s *anthropicStream) finishReasons() []string {
	if s.sent == "" {
		return nil
	}
	return []string{s.sent}
}

// fail sends Anthropic's stream error event; the SDKs raise it as an APIError.
func (s *anthropicStream) fail(buf *bytes.Buffer, f failure) {
	ae := &apierror.Error{Status: f.status, Code: f.code, Message: f.message}
	buf.WriteString("event: error\ndata: ")
	buf.Write(ae.Body(wire.Anthropic, s.requestID))
	buf.WriteString("\n\n")
}
