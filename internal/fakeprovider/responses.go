package fakeprovider

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"time"
)

// responsesRequest holds the Responses API request fields the fake acts on, and the
// ones the real API echoes back in the response object (kept raw, so they round-trip).
type responsesRequest struct {
	Model      string            `json:"model"`
	Stream     bool              `json:"stream"`
	Input      json.RawMessage   `json:"input"`
	Tools      []json.RawMessage `json:"tools"`
	ToolChoice json.RawMessage   `json:"tool_choice"`

	Background         json.RawMessage `json:"background"`
	Instructions       json.RawMessage `json:"instructions"`
	MaxOutputTokens    json.RawMessage `json:"max_output_tokens"`
	MaxToolCalls       json.RawMessage `json:"max_tool_calls"`
	Metadata           json.RawMessage `json:"metadata"`
	ParallelToolCalls  json.RawMessage `json:"parallel_tool_calls"`
	PreviousResponseID json.RawMessage `json:"previous_response_id"`
	PromptCacheKey     json.RawMessage `json:"prompt_cache_key"`
	Reasoning          json.RawMessage `json:"reasoning"`
	SafetyIdentifier   json.RawMessage `json:"safety_identifier"`
	Store              json.RawMessage `json:"store"`
	Temperature        json.RawMessage `json:"temperature"`
	Text               json.RawMessage `json:"text"`
	TopLogprobs        json.RawMessage `json:"top_logprobs"`
	TopP               json.RawMessage `json:"top_p"`
	Truncation         json.RawMessage `json:"truncation"`
	User               json.RawMessage `json:"user"`
}

// rawOr returns raw when the request carried the field, else def.
func rawOr(raw json.RawMessage, def any) any {
	if len(raw) == 0 {
		return def
	}
	return raw
}

// responsesTools returns the callable tools (function and custom, in declaration
// order), their kinds by name, and the tools as the real API echoes them: function
// tools gain the defaults it fills in (strict true, description and parameters null).
func responsesTools(raws []json.RawMessage) (names []string, kinds map[string]string, echo []any) {
	kinds = map[string]string{}
	echo = []any{}
	for _, raw := range raws {
		var t struct{ Type, Name string }
		_ = json.Unmarshal(raw, &t)
		if (t.Type == "function" || t.Type == "custom") && t.Name != "" {
			if _, dup := kinds[t.Name]; !dup {
				names = append(names, t.Name)
				kinds[t.Name] = t.Type
			}
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if t.Type != "function" || dec.Decode(&m) != nil {
			echo = append(echo, raw)
			continue
		}
		for k, v := range map[string]any{"strict": true, "description": nil, "parameters": nil} {
			if _, ok := m[k]; !ok {
				m[k] = v
			}
		}
		echo = append(echo, m)
	}
	return names, kinds, echo
}

// responsesToolChoice maps a Responses tool_choice to plan's choice ("none", "" for auto,
// "*" for required, or a tool name); allowed is non-nil for an allowed_tools choice.
func responsesToolChoice(raw json.RawMessage) (choice string, allowed []string) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "none":
			return "none", nil
		case "required":
			return "*", nil
		}
		return "", nil
	}
	var o struct {
		Type, Name, Mode string
		Tools            []struct{ Type, Name string }
	}
	if json.Unmarshal(raw, &o) != nil {
		return "", nil
	}
	if o.Type == "allowed_tools" {
		allowed = []string{}
		for _, t := range o.Tools {
			if t.Name != "" {
				allowed = append(allowed, t.Name)
			}
		}
		if o.Mode == "required" {
			return "*", allowed
		}
		return "", allowed
	}
	return o.Name, nil // function or custom; "" for hosted tool types
}

// responsesUsage is the Responses usage object. Like the chat endpoint's prompt_tokens,
// input_tokens counts the cache-read (cached_tokens) and cache-write (cache_write_tokens,
// which the SDKs require) tokens too.
func responsesUsage(u Usage) obj {
	in := u.InputTokens + u.CacheReadTokens + u.CacheCreationTokens
	return obj{
		"input_tokens", in,
		"input_tokens_details", obj{"cache_write_tokens", u.CacheCreationTokens,
			"cached_tokens", u.CacheReadTokens},
		"output_tokens", u.OutputTokens,
		"output_tokens_details", obj{"reasoning_tokens", 0},
		"total_tokens", in + u.OutputTokens,
	}
}

func (s *Server) responses(w http.ResponseWriter, r *http.Request, body []byte, sc Script) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, openAI, http.StatusBadRequest, "We could not parse the JSON body of your request.")
		return
	}
	if req.Model == "" {
		writeError(w, openAI, http.StatusBadRequest, "Missing required parameter: 'model'.")
		return
	}
	names, kinds, toolsEcho := responsesTools(req.Tools)
	choice, allowed := responsesToolChoice(req.ToolChoice)
	if allowed != nil {
		var keep []string
		for _, n := range names {
			for _, a := range allowed {
				if n == a {
					keep = append(keep, n)
					break
				}
			}
		}
		names = keep
	}
	a := plan(body, sc, names, choice, "call_")
	custom := kinds[a.tool] == "custom"
	respID, msgID, created := newID("resp_"), newID("msg_"), time.Now().Unix()
	itemID := newID("fc_")
	if custom {
		itemID = newID("ctc_")
	}
	w.Header().Set("x-request-id", newID("req_"))
	w.Header().Set("openai-processing-ms", "1")

	response := func(status string, output []any, usage any) obj {
		var completedAt any
		if status == "completed" {
			completedAt = time.Now().Unix()
		}
		return obj{
			"id", respID, "object", "response", "created_at", created, "status", status,
			"background", rawOr(req.Background, false), "completed_at", completedAt,
			"error", nil, "incomplete_details", nil,
			"instructions", rawOr(req.Instructions, nil),
			"max_output_tokens", rawOr(req.MaxOutputTokens, nil),
			"max_tool_calls", rawOr(req.MaxToolCalls, nil),
			"model", req.Model, "output", output,
			"parallel_tool_calls", rawOr(req.ParallelToolCalls, true),
			"previous_response_id", rawOr(req.PreviousResponseID, nil),
			"prompt_cache_key", rawOr(req.PromptCacheKey, nil),
			"reasoning", rawOr(req.Reasoning, obj{"effort", nil, "summary", nil}),
			"safety_identifier", rawOr(req.SafetyIdentifier, nil),
			"service_tier", "default", "store", rawOr(req.Store, true),
			"temperature", rawOr(req.Temperature, 1.0),
			"text", rawOr(req.Text, obj{"format", obj{"type", "text"}, "verbosity", "medium"}),
			"tool_choice", rawOr(req.ToolChoice, "auto"), "tools", toolsEcho,
			"top_logprobs", rawOr(req.TopLogprobs, 0), "top_p", rawOr(req.TopP, 1.0),
			"truncation", rawOr(req.Truncation, "disabled"), "usage", usage,
			"user", rawOr(req.User, nil), "metadata", rawOr(req.Metadata, obj{}),
		}
	}
	textPart := func(text string) obj {
		return obj{"type", "output_text", "annotations", []any{}, "logprobs", []any{}, "text", text}
	}
	message := func(status string, content []any) obj {
		return obj{"id", msgID, "type", "message", "status", status, "content", content,
			"role", "assistant"}
	}
	toolItem := func(status, args string) obj {
		if custom {
			return obj{"id", itemID, "type", "custom_tool_call", // no status field in the SDK types
				"call_id", a.toolID, "input", args, "name", a.tool}
		}
		return obj{"id", itemID, "type", "function_call", "status", status,
			"arguments", args, "call_id", a.toolID, "name", a.tool}
	}
	output := []any{}
	if a.text != "" {
		output = append(output, message("completed", []any{textPart(a.text)}))
	}
	if a.tool != "" {
		output = append(output, toolItem("completed", ToolArguments))
	}
	if !req.Stream {
		writeAnswer(w, sc, response("completed", output, responsesUsage(a.usage)))
		return
	}

	st := startSSE(w, r, sc)
	seq := 0
	emit := func(typ string, fields ...any) bool {
		ev := append(obj{"type", typ, "sequence_number", seq}, fields...)
		seq++
		return st.send(typ, ev)
	}
	if !emit("response.created", "response", response("in_progress", []any{}, nil)) ||
		!emit("response.in_progress", "response", response("in_progress", []any{}, nil)) {
		return
	}
	index := 0
	if a.text != "" {
		if !emit("response.output_item.added", "output_index", index,
			"item", message("in_progress", []any{})) ||
			!emit("response.content_part.added", "item_id", msgID, "output_index", index,
				"content_index", 0, "part", textPart("")) {
			return
		}
		for _, p := range a.pieces {
			if !emit("response.output_text.delta", "item_id", msgID, "output_index", index,
				"content_index", 0, "delta", p, "logprobs", []any{}) {
				return
			}
		}
		if !emit("response.output_text.done", "item_id", msgID, "output_index", index,
			"content_index", 0, "text", a.text, "logprobs", []any{}) ||
			!emit("response.content_part.done", "item_id", msgID, "output_index", index,
				"content_index", 0, "part", textPart(a.text)) ||
			!emit("response.output_item.done", "output_index", index, "item", output[index]) {
			return
		}
		index++
	}
	if a.tool != "" {
		delta, done := "response.function_call_arguments.delta", "response.function_call_arguments.done"
		doneFields := []any{"arguments", ToolArguments, "name", a.tool}
		if custom {
			delta, done = "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done"
			doneFields = []any{"input", ToolArguments}
		}
		if !emit("response.output_item.added", "output_index", index, "item", toolItem("in_progress", "")) {
			return
		}
		for _, p := range a.argPieces {
			if !emit(delta, "item_id", itemID, "output_index", index, "delta", p) {
				return
			}
		}
		if !emit(done, append([]any{"item_id", itemID, "output_index", index}, doneFields...)...) ||
			!emit("response.output_item.done", "output_index", index, "item", output[index]) {
			return
		}
	}
	emit("response.completed", "response", response("completed", output, responsesUsage(a.usage)))
}

// responsesWebSocket answers Codex's WebSocket-mode probe (GET /v1/responses): 426 makes
// it fall back to HTTP at once, where other statuses cost retries or are fatal.
func (s *Server) responsesWebSocket(w http.ResponseWriter, _ *http.Request, _ []byte, _ Script) {
	writeError(w, openAI, http.StatusUpgradeRequired,
		"WebSocket mode is not supported by this provider; use HTTP POST /v1/responses.")
}

// compact answers POST /v1/responses/compact the way the real API does: the request's
// user messages, then one compaction item whose encrypted_content is an opaque,
// Fernet-looking URL-safe base64 token (version byte, timestamp, a digest of the body,
// the summary text; not encrypted, and no client can decode it anyway).
func (s *Server) compact(w http.ResponseWriter, _ *http.Request, body []byte, sc Script) {
	var req struct {
		Model string          `json:"model"`
		Input json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, openAI, http.StatusBadRequest, "We could not parse the JSON body of your request.")
		return
	}
	if req.Model == "" {
		writeError(w, openAI, http.StatusBadRequest, "Missing required parameter: 'model'.")
		return
	}
	summary := DefaultText
	if sc.Text != "" {
		summary = sc.Text
	}
	now := time.Now().Unix()
	digest := sha256.Sum256(body)
	token := []byte{0x80}
	token = binary.BigEndian.AppendUint64(token, uint64(now))
	token = append(token, digest[:]...)
	token = append(token, summary...)
	output := append(userMessages(req.Input), obj{"id", newID("cmp_"), "type", "compaction",
		"encrypted_content", base64.URLEncoding.EncodeToString(token)})
	u := Usage{InputTokens: max(1, (len(body)+3)/4), OutputTokens: len(split(summary, ChunkSize))}
	if sc.Usage != nil {
		u = *sc.Usage
	}
	w.Header().Set("x-request-id", newID("req_"))
	w.Header().Set("openai-processing-ms", "1")
	writeAnswer(w, sc, obj{"id", newID("resp_"), "object", "response.compaction",
		"created_at", now, "output", output, "usage", responsesUsage(u)})
}

// userMessages returns the user messages of a Responses input (a string is one user
// message) as completed output message items with input_text content.
func userMessages(input json.RawMessage) []any {
	out := []any{}
	msg := func(content any) obj {
		return obj{"id", newID("msg_"), "type", "message", "status", "completed",
			"content", content, "role", "user"}
	}
	var s string
	if json.Unmarshal(input, &s) == nil {
		return append(out, msg([]any{obj{"type", "input_text", "text", s}}))
	}
	var items []struct {
		Type, Role string
		Content    json.RawMessage
	}
	_ = json.Unmarshal(input, &items)
	for _, it := range items {
		if it.Role != "user" || (it.Type != "" && it.Type != "message") {
			continue
		}
		if json.Unmarshal(it.Content, &s) == nil {
			out = append(out, msg([]any{obj{"type", "input_text", "text", s}}))
		} else if len(it.Content) > 0 {
			out = append(out, msg(it.Content))
		}
	}
	return out
}
