package translate

// OpenAI chat completions client → Anthropic Messages provider. Bifrost converts the
// request (providers/anthropic.ToAnthropicChatRequest) and parses Anthropic's answer into
// its OpenAI-shaped schema; this file renders that schema as the OpenAI wire format.

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/maximhq/bifrost/core/providers/openai"
	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/apierror"
	"github.com/sluice-gateway/sluice/internal/wire"
)

func parseOpenAIChat(bctx *schemas.BifrostContext, body []byte) (*schemas.BifrostChatRequest, clientOptions, error) {
	var oreq openai.OpenAIChatRequest
	if err := json.Unmarshal(body, &oreq); err != nil {
		return nil, clientOptions{}, err
	}
	if len(oreq.Messages) == 0 {
		return nil, clientOptions{}, errors.New("translate: no messages")
	}
	breq := oreq.ToBifrostChatRequest(bctx)
	var opts clientOptions
	if so := oreq.StreamOptions; so != nil && so.IncludeUsage != nil {
		opts.includeUsage = *so.IncludeUsage
	}
	return breq, opts, nil
}

// OpenAI wire shapes, written here rather than marshalled from Bifrost's structs, whose
// JSON adds extra_fields, drops null finish_reason and omits zero usage fields.
type oaiUsage struct {
	PromptTokens        int `json:"prompt_tokens"`
	CompletionTokens    int `json:"completion_tokens"`
	TotalTokens         int `json:"total_tokens"`
	PromptTokensDetails *struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"prompt_tokens_details,omitempty"`
}

type oaiFunction struct {
	Name      *string `json:"name,omitempty"`
	Arguments *string `json:"arguments,omitempty"`
}

type oaiToolCall struct {
	Index    *int        `json:"index,omitempty"`
	ID       string      `json:"id,omitempty"`
	Type     string      `json:"type,omitempty"`
	Function oaiFunction `json:"function"`
}

type oaiMessage struct {
	Role      string        `json:"role"`
	Content   *string       `json:"content"`
	Refusal   *string       `json:"refusal"`
	ToolCalls []oaiToolCall `json:"tool_calls,omitempty"`
}

type oaiChoice struct {
	Index        int        `json:"index"`
	Message      oaiMessage `json:"message"`
	Logprobs     *struct{}  `json:"logprobs"`
	FinishReason string     `json:"finish_reason"`
}

type oaiCompletion struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []oaiChoice `json:"choices"`
	Usage   *oaiUsage   `json:"usage,omitempty"`
}

type oaiDelta struct {
	Role      string        `json:"role,omitempty"`
	Content   *string       `json:"content,omitempty"`
	ToolCalls []oaiToolCall `json:"tool_calls,omitempty"`
}

type oaiChunkChoice struct {
	Index        int       `json:"index"`
	Delta        oaiDelta  `json:"delta"`
	Logprobs     *struct{} `json:"logprobs"`
	FinishReason *string   `json:"finish_reason"`
}

type oaiChunk struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []oaiChunkChoice `json:"choices"`
	Usage   *oaiUsage        `json:"usage,omitempty"`
}

// openAIUsage keeps OpenAI's meaning: prompt_tokens counts cached tokens too. Bifrost's
// Anthropic parser already folds cache reads and writes into PromptTokens (the 1.7.15
// behaviour the field notes flag for pricing), which is what an OpenAI client expects.
func openAIUsage(u *schemas.BifrostLLMUsage) *oaiUsage {
	if u == nil {
		return &oaiUsage{}
	}
	out := &oaiUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	if out.TotalTokens < out.PromptTokens+out.CompletionTokens {
		out.TotalTokens = out.PromptTokens + out.CompletionTokens
	}
	if d := u.PromptTokensDetails; d != nil && d.CachedReadTokens > 0 {
		out.PromptTokensDetails = &struct {
			CachedTokens int `json:"cached_tokens"`
		}{d.CachedReadTokens}
	}
	return out
}

// openAIFinish maps Bifrost's finish reasons (already OpenAI's vocabulary) and fills the
// gaps so an SDK never sees an empty reason.
func openAIFinish(r *string, hasTools bool) string {
	if r != nil && *r != "" {
		return *r
	}
	if hasTools {
		return "tool_calls"
	}
	return "stop"
}

func messageText(m *schemas.ChatMessage) *string {
	if m == nil || m.Content == nil {
		return nil
	}
	if m.Content.ContentStr != nil {
		return m.Content.ContentStr
	}
	var b strings.Builder
	n := 0
	for _, blk := range m.Content.ContentBlocks {
		if blk.Text != nil {
			b.WriteString(*blk.Text)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	s := b.String()
	return &s
}

func renderOpenAIChat(resp *schemas.BifrostChatResponse, req *attempt.Request) ([]byte, []string, error) {
	out := oaiCompletion{
		ID:      firstNonEmpty(resp.ID, "chatcmpl-"+req.RequestID),
		Object:  "chat.completion",
		Created: createdAt(resp.Created),
		Model:   firstNonEmpty(resp.Model, req.Model),
		Choices: []oaiChoice{},
		Usage:   openAIUsage(resp.Usage),
	}
	for _, c := range resp.Choices {
		msg := oaiMessage{Role: "assistant"}
		if c.ChatNonStreamResponseChoice != nil && c.Message != nil {
			msg.Content = messageText(c.Message)
			if am := c.Message.ChatAssistantMessage; am != nil {
				msg.Refusal = am.Refusal
				for _, tc := range am.ToolCalls {
					args := tc.Function.Arguments
					if args == "" {
						args = "{}"
					}
					msg.ToolCalls = append(msg.ToolCalls, oaiToolCall{
						ID: deref(tc.ID), Type: "function",
						Function: oaiFunction{Name: tc.Function.Name, Arguments: &args},
					})
				}
			}
		}
		out.Choices = append(out.Choices, oaiChoice{Index: c.Index, Message: msg,
			FinishReason: openAIFinish(c.FinishReason, len(msg.ToolCalls) > 0)})
	}
	if len(out.Choices) == 0 {
		return nil, nil, errors.New("translate: response without choices")
	}
	reasons := make([]string, len(out.Choices))
	for i, c := range out.Choices {
		reasons[i] = c.FinishReason
	}
	b, err := json.Marshal(out)
	return b, reasons, err
}

// openAIStream renders Bifrost chunks as chat.completion.chunk events.
type openAIStream struct {
	id, model    string
	created      int64
	includeUsage bool
	requestID    string

	roleSent bool
	sawTools bool
	finished bool
	reason   string
	sent     string // the finish_reason written by finish
	usage    *schemas.BifrostLLMUsage
	toolSeen map[uint16]bool
}

func newOpenAIStream(req *attempt.Request, opts clientOptions) streamRenderer {
	return &openAIStream{model: req.Model, created: time.Now().Unix(), includeUsage: opts.includeUsage,
		requestID: req.RequestID, toolSeen: map[uint16]bool{}}
}

func (s *openAIStream) event(buf *bytes.Buffer, v any) {
	b, err := json.Marshal(v)
	if err != nil { // plain structs: cannot happen
		return
	}
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}

func (s *openAIStream) delta(buf *bytes.Buffer, d oaiDelta) {
	if !s.roleSent {
		d.Role = "assistant"
		s.roleSent = true
	}
	s.event(buf, oaiChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: []oaiChunkChoice{{Delta: d}}})
}

func (s *openAIStream) chunk(buf *bytes.Buffer, c *schemas.BifrostChatResponse) {
	if s.id == "" {
		s.id = firstNonEmpty(c.ID, "chatcmpl-"+s.requestID)
	}
	if c.Usage != nil {
		s.usage = c.Usage
	}
	for _, ch := range c.Choices {
		if ch.ChatStreamResponseChoice != nil && ch.Delta != nil {
			d := ch.Delta
			if d.Role != nil && !s.roleSent {
				empty := ""
				s.delta(buf, oaiDelta{Content: &empty})
			}
			if d.Content != nil && *d.Content != "" {
				s.delta(buf, oaiDelta{Content: d.Content})
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

// toolDelta keeps the SDK contract: the first fragment of each tool call carries index,
// id, type and function.name (arguments ""), later fragments only index and arguments.
func (s *openAIStream) toolDelta(buf *bytes.Buffer, tc schemas.ChatAssistantMessageToolCall) {
	idx := int(tc.Index)
	s.sawTools = true
	if !s.toolSeen[tc.Index] {
		s.toolSeen[tc.Index] = true
		empty := ""
		s.delta(buf, oaiDelta{ToolCalls: []oaiToolCall{{Index: &idx, ID: deref(tc.ID), Type: "function",
			Function: oaiFunction{Name: ptrOr(tc.Function.Name, ""), Arguments: &empty}}}})
	}
	if tc.Function.Arguments != "" {
		args := tc.Function.Arguments
		s.delta(buf, oaiDelta{ToolCalls: []oaiToolCall{{Index: &idx, Function: oaiFunction{Arguments: &args}}}})
	}
}

func (s *openAIStream) done() bool { return s.finished }

func (s *openAIStream) finishReasons() []string {
	if s.sent == "" {
		return nil
	}
	return []string{s.sent}
}

func (s *openAIStream) finish(buf *bytes.Buffer) {
	reason := openAIFinish(&s.reason, s.sawTools)
	s.sent = reason
	if !s.roleSent {
		empty := ""
		s.delta(buf, oaiDelta{Content: &empty})
	}
	s.event(buf, oaiChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
		Choices: []oaiChunkChoice{{Delta: oaiDelta{}, FinishReason: &reason}}})
	if s.includeUsage {
		// As OpenAI does: a last chunk with empty choices and the usage.
		s.event(buf, oaiChunk{ID: s.id, Object: "chat.completion.chunk", Created: s.created, Model: s.model,
			Choices: []oaiChunkChoice{}, Usage: openAIUsage(s.usage)})
	}
	buf.WriteString("data: [DONE]\n\n")
}

// fail ends the stream the way OpenAI does: a data event carrying an error envelope,
// which the SDKs raise as an APIError. No [DONE] follows, so no client takes it as done.
func (s *openAIStream) fail(buf *bytes.Buffer, f failure) {
	ae := &apierror.Error{Status: f.status, Code: f.code, Message: f.message}
	buf.WriteString("data: ")
	buf.Write(ae.Body(wire.OpenAI, s.requestID))
	buf.WriteString("\n\n")
}

func createdAt(c int) int64 {
	if c > 0 {
		return int64(c)
	}
	return time.Now().Unix()
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

func ptrOr(p *string, def string) *string {
	if p == nil {
		return &def
	}
	return p
}
