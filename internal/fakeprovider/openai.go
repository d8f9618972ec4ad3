package fakeprovider

import (
	"encoding/json"
	"net/http"
	"time"
)

type chatRequest struct {
	Model         string          `json:"model"`
	Stream        bool            `json:"stream"`
	Messages      json.RawMessage `json:"messages"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
		Name string `json:"name"` // custom tools
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
}

// openAIToolChoice maps tool_choice to "none", "" (auto), "*" (required) or a tool name.
func openAIToolChoice(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "none":
			return "none"
		case "required":
			return "*"
		}
		return ""
	}
	var o struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if json.Unmarshal(raw, &o) == nil && o.Function.Name != "" {
		return o.Function.Name
	}
	return ""
}

func openAIUsage(u Usage) obj {
	prompt := u.InputTokens + u.CacheReadTokens + u.CacheCreationTokens
	return obj{
		"prompt_tokens", prompt,
		"completion_tokens", u.OutputTokens,
		"total_tokens", prompt + u.OutputTokens,
		"prompt_tokens_details", obj{
			"cached_tokens", u.CacheReadTokens, "audio_tokens", 0},
		"completion_tokens_details", obj{
			"reasoning_tokens", 0, "audio_tokens", 0,
			"accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0},
	}
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, body []byte, sc Script) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, openAI, http.StatusBadRequest, "We could not parse the JSON body of your request.")
		return
	}
	if req.Model == "" || len(req.Messages) == 0 {
		writeError(w, openAI, http.StatusBadRequest, "you must provide a model parameter and messages")
		return
	}
	var tools []string
	for _, t := range req.Tools {
		name := t.Function.Name
		if name == "" {
			name = t.Name
		}
		tools = append(tools, name)
	}
	a := plan(body, sc, tools, openAIToolChoice(req.ToolChoice), "call_")
	id, created := newID("chatcmpl-"), time.Now().Unix()
	w.Header().Set("x-request-id", newID("req_"))
	w.Header().Set("openai-processing-ms", "1")
	if !req.Stream {
		msg := obj{"role", "assistant", "content", nil, "refusal", nil,
			"annotations", []any{}}
		finish := "stop"
		if a.text != "" {
			msg.set("content", a.text)
		}
		if a.tool != "" {
			finish = "tool_calls"
			msg.set("tool_calls", []any{obj{"id", a.toolID, "type", "function",
				"function", obj{"name", a.tool, "arguments", ToolArguments}}})
		}
		writeAnswer(w, sc, obj{
			"id", id, "object", "chat.completion", "created", created, "model", req.Model,
			"choices", []any{obj{"index", 0, "message", msg, "logprobs", nil,
				"finish_reason", finish}},
			"usage", openAIUsage(a.usage), "service_tier", "default",
			"system_fingerprint", "fp_sluice_fake",
		})
		return
	}

	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	chunk := func(delta obj, finish any) obj {
		c := obj{"id", id, "object", "chat.completion.chunk", "created", created,
			"model", req.Model, "service_tier", "default", "system_fingerprint", "fp_sluice_fake",
			"choices", []any{obj{"index", 0, "delta", delta, "logprobs", nil,
				"finish_reason", finish}}}
		if includeUsage {
			c.set("usage", nil)
		}
		return c
	}
	st := startSSE(w, r, sc)
	role := obj{"role", "assistant", "content", "", "refusal", nil}
	if a.text == "" {
		role.set("content", nil)
	}
	if !st.send("", chunk(role, nil)) {
		return
	}
	for _, p := range a.pieces {
		if !st.send("", chunk(obj{"content", p}, nil)) {
			return
		}
	}
	finish := "stop"
	if a.tool != "" {
		finish = "tool_calls"
		first := obj{"tool_calls", []any{obj{"index", 0, "id", a.toolID,
			"type", "function", "function", obj{"name", a.tool, "arguments", ""}}}}
		if !st.send("", chunk(first, nil)) {
			return
		}
		for _, p := range a.argPieces {
			frag := obj{"tool_calls", []any{obj{"index", 0,
				"function", obj{"arguments", p}}}}
			if !st.send("", chunk(frag, nil)) {
				return
			}
		}
	}
	if !st.send("", chunk(obj{}, finish)) {
		return
	}
	if includeUsage {
		if !st.send("", obj{"id", id, "object", "chat.completion.chunk",
			"created", created, "model", req.Model, "service_tier", "default",
			"system_fingerprint", "fp_sluice_fake", "choices", []any{},
			"usage", openAIUsage(a.usage)}) {
			return
		}
	}
	st.send("", "[DONE]")
}
