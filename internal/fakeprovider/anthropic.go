package fakeprovider

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

type messagesRequest struct {
	Model     string          `json:"model"`
	Stream    bool            `json:"stream"`
	MaxTokens *int            `json:"max_tokens"`
	Messages  json.RawMessage `json:"messages"`
	Tools     []struct {
		Name string `json:"name"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
		Name string `json:"name"`
	} `json:"tool_choice"`
}

func anthropicUsage(u Usage, output int) obj {
	return obj{
		"input_tokens", u.InputTokens,
		"cache_creation_input_tokens", u.CacheCreationTokens,
		"cache_read_input_tokens", u.CacheReadTokens,
		"output_tokens", output,
		"service_tier", "standard",
	}
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, body []byte, sc Script) {
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, anthropic, http.StatusBadRequest, "Invalid JSON in request body")
		return
	}
	switch {
	case req.Model == "":
		writeError(w, anthropic, http.StatusBadRequest, "model: Field required")
		return
	case len(req.Messages) == 0:
		writeError(w, anthropic, http.StatusBadRequest, "messages: Field required")
		return
	case req.MaxTokens == nil:
		writeError(w, anthropic, http.StatusBadRequest, "max_tokens: Field required")
		return
	}
	var tools []string
	for _, t := range req.Tools {
		tools = append(tools, t.Name)
	}
	choice := ""
	if tc := req.ToolChoice; tc != nil {
		switch tc.Type {
		case "none":
			choice = "none"
		case "any":
			choice = "*"
		case "tool":
			choice = tc.Name
		}
	}
	a := plan(body, sc, tools, choice, "toolu_")
	id := newID("msg_")
	w.Header().Set("request-id", newID("req_"))
	stop := "end_turn"
	if a.tool != "" {
		stop = "tool_use"
	}
	input := json.RawMessage(ToolArguments)

	if !req.Stream {
		content := []any{}
		if a.text != "" {
			content = append(content, obj{"type", "text", "text", a.text})
		}
		if a.tool != "" {
			content = append(content, obj{"type", "tool_use", "id", a.toolID,
				"name", a.tool, "input", input})
		}
		writeAnswer(w, sc, obj{
			"id", id, "type", "message", "role", "assistant", "model", req.Model,
			"content", content, "stop_reason", stop, "stop_sequence", nil,
			"usage", anthropicUsage(a.usage, a.usage.OutputTokens),
		})
		return
	}

	st := startSSE(w, r, sc)
	if !st.send("message_start", obj{"type", "message_start", "message", obj{
		"id", id, "type", "message", "role", "assistant", "model", req.Model,
		"content", []any{}, "stop_reason", nil, "stop_sequence", nil,
		"usage", anthropicUsage(a.usage, min(1, a.usage.OutputTokens)),
	}}) {
		return
	}
	index := 0
	block := func(start obj, deltas []obj) bool {
		if !st.send("content_block_start", obj{"type", "content_block_start",
			"index", index, "content_block", start}) {
			return false
		}
		if index == 0 && !st.send("ping", obj{"type", "ping"}) {
			return false
		}
		for _, d := range deltas {
			if !st.send("content_block_delta", obj{"type", "content_block_delta",
				"index", index, "delta", d}) {
				return false
			}
		}
		ok := st.send("content_block_stop", obj{"type", "content_block_stop", "index", index})
		index++
		return ok
	}
	if a.text != "" || a.tool == "" {
		var deltas []obj
		for _, p := range a.pieces {
			deltas = append(deltas, obj{"type", "text_delta", "text", p})
		}
		if !block(obj{"type", "text", "text", ""}, deltas) {
			return
		}
	}
	if a.tool != "" {
		deltas := []obj{{"type", "input_json_delta", "partial_json", ""}}
		for _, p := range a.argPieces {
			deltas = append(deltas, obj{"type", "input_json_delta", "partial_json", p})
		}
		if !block(obj{"type", "tool_use", "id", a.toolID, "name", a.tool,
			"input", obj{}}, deltas) {
			return
		}
	}
	if !st.send("message_delta", obj{"type", "message_delta",
		"delta", obj{"stop_reason", stop, "stop_sequence", nil},
		"usage", obj{"output_tokens", a.usage.OutputTokens}}) {
		return
	}
	st.send("message_stop", obj{"type", "message_stop"})
}

func (s *Server) countTokens(w http.ResponseWriter, _ *http.Request, body []byte, sc Script) {
	a := plan(body, sc, nil, "none", "")
	writeJSON(w, http.StatusOK, obj{"input_tokens", a.usage.InputTokens})
}

// Models lists the fake models served by GET /v1/models.
var Models = []string{"gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-6", "claude-haiku-4-5"}

func (s *Server) models(w http.ResponseWriter, r *http.Request, _ []byte, _ Script) {
	anth := r.Header.Get("anthropic-version") != ""
	const created = 1735689600 // 2025-01-01
	model := func(id string) obj {
		if anth {
			return obj{"type", "model", "id", id, "display_name", id,
				"created_at", time.Unix(created, 0).UTC().Format(time.RFC3339)}
		}
		return obj{"id", id, "object", "model", "created", created, "owned_by", "sluice-fake"}
	}
	if id, ok := strings.CutPrefix(r.URL.Path, "/v1/models/"); ok {
		if id == "" {
			d := openAI
			if anth {
				d = anthropic
			}
			writeError(w, d, http.StatusNotFound, "model not found")
			return
		}
		writeJSON(w, http.StatusOK, model(id))
		return
	}
	data := make([]any, 0, len(Models))
	for _, id := range Models {
		data = append(data, model(id))
	}
	if anth {
		writeJSON(w, http.StatusOK, obj{"data", data, "has_more", false,
			"first_id", Models[0], "last_id", Models[len(Models)-1]})
		return
	}
	writeJSON(w, http.StatusOK, obj{"object", "list", "data", data})
}
