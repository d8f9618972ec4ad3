package translate

// The OpenAI Responses wire shapes the Responses direction writes, and the output-item model
// that both its non-streaming and its streaming renderer build. They are written here rather
// than marshalled from Bifrost's structs, whose JSON differs from OpenAI's in ways clients
// notice: "object" is empty on stream events, "status" is never set, "tools" is null,
// "output_tokens_details" is null, extra_fields and stop_reason leak, content_index is the
// Anthropic block index rather than the part's index in its item, and a custom tool's call
// comes back as a function_call.

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/maximhq/bifrost/core/schemas"
	"github.com/tidwall/gjson"
)

// respObject is an OpenAI Responses API response object.
type respObject struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	CreatedAt          int64             `json:"created_at"`
	Status             string            `json:"status"`
	Background         bool              `json:"background"`
	Error              *respError        `json:"error"`
	IncompleteDetails  *respIncomplete   `json:"incomplete_details"`
	Instructions       json.RawMessage   `json:"instructions"`
	MaxOutputTokens    json.RawMessage   `json:"max_output_tokens"`
	Model              string            `json:"model"`
	Output             []json.RawMessage `json:"output"`
	ParallelToolCalls  json.RawMessage   `json:"parallel_tool_calls"`
	PreviousResponseID json.RawMessage   `json:"previous_response_id"`
	PromptCacheKey     json.RawMessage   `json:"prompt_cache_key"`
	Reasoning          json.RawMessage   `json:"reasoning"`
	Store              bool              `json:"store"`
	Temperature        json.RawMessage   `json:"temperature"`
	Text               json.RawMessage   `json:"text"`
	ToolChoice         json.RawMessage   `json:"tool_choice"`
	Tools              json.RawMessage   `json:"tools"`
	TopP               json.RawMessage   `json:"top_p"`
	Truncation         json.RawMessage   `json:"truncation"`
	Usage              *respUsage        `json:"usage"`
	Metadata           json.RawMessage   `json:"metadata"`
}

type respError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type respIncomplete struct {
	Reason string `json:"reason"`
}

// respUsage is OpenAI's usage: input_tokens counts every input token, cached ones included.
type respUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

// respEcho holds the request parameters a response object repeats back, as raw JSON with
// OpenAI's defaults for the ones the client did not send. Store is always false: Sluice
// keeps nothing, so a later previous_response_id cannot be resolved.
type respEcho struct {
	instructions, maxOutputTokens, parallelToolCalls, previousResponseID, promptCacheKey,
	reasoning, temperature, text, toolChoice, tools, topP, truncation, metadata json.RawMessage
}

func echoOf(body []byte) respEcho {
	raw := func(path, def string) json.RawMessage {
		if v := gjson.GetBytes(body, path); v.Exists() {
			return json.RawMessage(v.Raw)
		}
		return json.RawMessage(def)
	}
	return respEcho{
		instructions:       raw("instructions", "null"),
		maxOutputTokens:    raw("max_output_tokens", "null"),
		parallelToolCalls:  raw("parallel_tool_calls", "true"),
		previousResponseID: raw("previous_response_id", "null"),
		promptCacheKey:     raw("prompt_cache_key", "null"),
		reasoning:          raw("reasoning", `{"effort":null,"summary":null}`),
		temperature:        raw("temperature", "null"),
		text:               raw("text", `{"format":{"type":"text"}}`),
		toolChoice:         raw("tool_choice", `"auto"`),
		tools:              raw("tools", "[]"),
		topP:               raw("top_p", "null"),
		truncation:         raw("truncation", `"disabled"`),
		metadata:           raw("metadata", "{}"),
	}
}

// object returns a response object carrying the echoed parameters; output is never null.
func (e *respEcho) object(id, model string, created int64, status string) *respObject {
	return &respObject{ID: id, Object: "response", CreatedAt: created, Status: status, Model: model,
		Output: []json.RawMessage{}, Instructions: e.instructions, MaxOutputTokens: e.maxOutputTokens,
		ParallelToolCalls: e.parallelToolCalls, PreviousResponseID: e.previousResponseID,
		PromptCacheKey: e.promptCacheKey, Reasoning: e.reasoning, Temperature: e.temperature, Text: e.text,
		ToolChoice: e.toolChoice, Tools: e.tools, TopP: e.topP, Truncation: e.truncation, Metadata: e.metadata}
}

// responsesUsage converts Bifrost's Responses usage, whose InputTokens already includes
// Anthropic's cache reads and writes (see responsesAttemptUsage), to OpenAI's.
func responsesUsage(u *schemas.ResponsesResponseUsage) *respUsage {
	out := &respUsage{}
	if u == nil {
		return out
	}
	out.InputTokens, out.OutputTokens = u.InputTokens, u.OutputTokens
	if d := u.InputTokensDetails; d != nil {
		out.InputTokensDetails.CachedTokens = d.CachedReadTokens
	}
	if d := u.OutputTokensDetails; d != nil {
		out.OutputTokensDetails.ReasoningTokens = d.ReasoningTokens
	}
	out.TotalTokens = out.InputTokens + out.OutputTokens
	return out
}

// terminal maps Bifrost's finish reason (OpenAI chat vocabulary; Anthropic reasons it does
// not know pass through) to the Responses status and, for an incomplete answer, its reason.
func terminal(stopReason *string) (status string, incomplete *respIncomplete) {
	switch deref(stopReason) {
	case "length", "max_tokens", "model_context_window_exceeded":
		return "incomplete", &respIncomplete{Reason: "max_output_tokens"}
	case "refusal", "content_filter":
		return "incomplete", &respIncomplete{Reason: "content_filter"}
	}
	return "completed", nil
}

// finishReason is the Result's finish reason for a terminal status: "completed", or the
// reason an answer is incomplete ("max_output_tokens", "content_filter"), i.e. what a
// Responses client is told about why the answer ended.
func finishReason(status string, incomplete *respIncomplete) string {
	if incomplete != nil {
		return incomplete.Reason
	}
	return status
}

// itemKind is the kind of an output item.
type itemKind uint8

const (
	kindMessage itemKind = iota
	kindFunctionCall
	kindCustomToolCall
	kindReasoning
	kindOpaque // an item type this lane does not model; Bifrost's JSON is relayed
)

// outItem is one output item of a response, built whole (non-streaming) or event by event.
type outItem struct {
	kind         itemKind
	id           string
	callID, name string          // function and custom tool calls
	text         strings.Builder // message text, call arguments, reasoning summary
	refusal      *string         // a message's refusal part, when the model refused
	thinking     []thinkingBlock // reasoning: the Anthropic blocks to replay
	opaque       json.RawMessage // kindOpaque: Bifrost's item as it marshals it
	opaqueDone   json.RawMessage // kindOpaque: Bifrost's done item, once it arrived

	partOpen bool // streaming: content part (or summary part) added
	done     bool // streaming: output_item.done written
}

type outputText struct {
	Type        string     `json:"type"`
	Text        string     `json:"text"`
	Annotations []struct{} `json:"annotations"`
	Logprobs    []struct{} `json:"logprobs"`
}

type refusalPart struct {
	Type    string `json:"type"`
	Refusal string `json:"refusal"`
}

type summaryText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func newOutputText(s string) outputText {
	return outputText{Type: "output_text", Text: s, Annotations: []struct{}{}, Logprobs: []struct{}{}}
}

// input is a custom tool call's input: the "input" string of the arguments object the model
// was asked for (see customToolFunction), or the raw arguments when it answered otherwise.
func (it *outItem) input() string {
	args := it.text.String()
	var v struct {
		Input *string `json:"input"`
	}
	if json.Unmarshal([]byte(args), &v) == nil && v.Input != nil {
		return *v.Input
	}
	return args
}

// arguments is a function call's arguments; Anthropic sends none for a tool without
// parameters, and clients parse the field as JSON.
func (it *outItem) arguments() string {
	if s := it.text.String(); strings.TrimSpace(s) != "" {
		return s
	}
	return "{}"
}

// json renders the item; final selects its output_item.done (completed) form over its
// output_item.added (in progress, empty) form.
func (it *outItem) json(final bool) json.RawMessage {
	status := "in_progress"
	if final {
		status = "completed"
	}
	var v any
	switch it.kind {
	case kindMessage:
		content := []any{}
		if final {
			if it.refusal != nil {
				content = append(content, refusalPart{Type: "refusal", Refusal: *it.refusal})
			} else {
				content = append(content, newOutputText(it.text.String()))
			}
		}
		v = struct {
			ID      string `json:"id"`
			Type    string `json:"type"`
			Status  string `json:"status"`
			Role    string `json:"role"`
			Content []any  `json:"content"`
		}{it.id, "message", status, "assistant", content}
	case kindFunctionCall:
		args := ""
		if final {
			args = it.arguments()
		}
		v = struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Status    string `json:"status"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		}{it.id, "function_call", status, it.callID, it.name, args}
	case kindCustomToolCall:
		input := ""
		if final {
			input = it.input()
		}
		v = struct {
			ID     string `json:"id"`
			Type   string `json:"type"`
			Status string `json:"status"`
			CallID string `json:"call_id"`
			Name   string `json:"name"`
			Input  string `json:"input"`
		}{it.id, "custom_tool_call", status, it.callID, it.name, input}
	case kindReasoning:
		summary := []summaryText{}
		var enc *string
		if final {
			if t := it.text.String(); t != "" {
				summary = append(summary, summaryText{Type: "summary_text", Text: t})
			}
			enc = sealThinking(it.thinking)
		}
		v = struct {
			ID               string        `json:"id"`
			Type             string        `json:"type"`
			Summary          []summaryText `json:"summary"`
			EncryptedContent *string       `json:"encrypted_content,omitempty"`
		}{it.id, "reasoning", summary, enc}
	default:
		if final && it.opaqueDone != nil {
			return it.opaqueDone
		}
		return it.opaque
	}
	b, _ := marshal(v) // plain structs: cannot fail
	return b
}

// itemsOf builds the output items of a non-streamed Bifrost response. Calls to the
// client's custom tools become custom_tool_call items.
func itemsOf(out []schemas.ResponsesMessage, custom map[string]bool) []*outItem {
	var items []*outItem
	for i := range out {
		m := &out[i]
		typ := schemas.ResponsesMessageType("")
		if m.Type != nil {
			typ = *m.Type
		}
		switch {
		case typ == schemas.ResponsesMessageTypeMessage || (typ == "" && m.Role != nil):
			it := &outItem{kind: kindMessage, id: deref(m.ID)}
			if m.Content != nil {
				if m.Content.ContentStr != nil {
					it.text.WriteString(*m.Content.ContentStr)
				}
				for _, b := range m.Content.ContentBlocks {
					switch {
					case b.ResponsesOutputMessageContentRefusal != nil:
						r := b.Refusal
						it.refusal = &r
					case b.Text != nil:
						it.text.WriteString(*b.Text)
					}
				}
			}
			items = append(items, it)
		case typ == schemas.ResponsesMessageTypeFunctionCall && m.ResponsesToolMessage != nil:
			tm := m.ResponsesToolMessage
			it := &outItem{kind: kindFunctionCall, id: deref(m.ID), callID: deref(tm.CallID), name: deref(tm.Name)}
			if custom[it.name] {
				it.kind = kindCustomToolCall
			}
			if it.id == "" {
				it.id = it.callID
			}
			it.text.WriteString(deref(tm.Arguments))
			items = append(items, it)
		case typ == schemas.ResponsesMessageTypeReasoning:
			it := &outItem{kind: kindReasoning, id: deref(m.ID)}
			var text string
			it.thinking, text = reasoningOf(m)
			it.text.WriteString(text)
			items = append(items, it)
		default:
			b, err := json.Marshal(m)
			if err != nil {
				continue
			}
			items = append(items, &outItem{kind: kindOpaque, opaque: b})
		}
	}
	return items
}

// reasoningOf returns a Bifrost reasoning item's thinking blocks (text and signature) and
// redacted thinking (encrypted data), in order, and its visible text for the summary.
func reasoningOf(m *schemas.ResponsesMessage) (blocks []thinkingBlock, text string) {
	var b strings.Builder
	if m.Content != nil {
		for _, c := range m.Content.ContentBlocks {
			if c.Type != schemas.ResponsesOutputMessageContentTypeReasoning || c.Text == nil {
				continue
			}
			if b.Len() > 0 && *c.Text != "" {
				b.WriteString("\n\n")
			}
			b.WriteString(*c.Text)
			blocks = append(blocks, thinkingBlock{Thinking: *c.Text, Signature: deref(c.Signature)})
		}
	}
	if r := m.ResponsesReasoning; r != nil {
		if len(blocks) == 0 {
			for _, s := range r.Summary {
				b.WriteString(s.Text)
			}
		}
		if r.EncryptedContent != nil && *r.EncryptedContent != "" {
			blocks = append(blocks, thinkingBlock{Redacted: *r.EncryptedContent})
		}
	}
	return blocks, b.String()
}

// thinkingBlock is one Anthropic thinking block (text and signature) or redacted thinking
// block (data), as a reasoning item carries it back to Anthropic on the next turn.
type thinkingBlock struct {
	Thinking  string `json:"t,omitempty"`
	Signature string `json:"s,omitempty"`
	Redacted  string `json:"r,omitempty"`
}

// thinkingSeal marks the encrypted_content of the reasoning items this lane writes.
// Anthropic refuses a tool-use turn whose thinking blocks were dropped or altered, and
// clients (Codex) replay a reasoning item from its summary and encrypted_content alone, so
// the blocks travel whole in encrypted_content; unsealThinking takes them out again.
const thinkingSeal = "sluice.anthropic-thinking.v1:"

func sealThinking(blocks []thinkingBlock) *string {
	if len(blocks) == 0 {
		return nil
	}
	b, err := json.Marshal(blocks)
	if err != nil {
		return nil
	}
	s := thinkingSeal + base64.RawStdEncoding.EncodeToString(b)
	return &s
}

// unsealThinking returns the blocks sealed in a reasoning item's encrypted_content; ok is
// false for content this lane did not write (another provider's reasoning).
func unsealThinking(enc string) (blocks []thinkingBlock, ok bool) {
	rest, found := strings.CutPrefix(enc, thinkingSeal)
	if !found {
		return nil, false
	}
	b, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || json.Unmarshal(b, &blocks) != nil {
		return nil, false
	}
	return blocks, true
}

// marshal is json.Marshal without HTML escaping: patches and code keep their < > & as is.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
