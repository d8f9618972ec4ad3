package translate

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// newFake starts the fake Anthropic provider, accepting only testKey.
func newFake(t *testing.T) (*fakeprovider.Server, string) {
	t.Helper()
	fake := fakeprovider.New(fakeprovider.Config{AnthropicKey: testKey})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	return fake, ts.URL
}

// responsesRequest is a Responses attempt on an Anthropic provider.
func responsesRequest(baseURL string, stream bool, body string) *attempt.Request {
	req := request(wire.OpenAI, config.ProviderAnthropic, baseURL, stream, body)
	req.Endpoint = wire.Responses
	return req
}

// Tools as Codex declares them: a function tool and the apply_patch custom tool with its
// Lark grammar.
const (
	shellTool = `{"type":"function","name":"shell","description":"Runs a shell command.","strict":false,` +
		`"parameters":{"type":"object","properties":{"command":{"type":"array","items":{"type":"string"}}},"required":["command"]}}`
	applyPatchTool = `{"type":"custom","name":"apply_patch","description":"Use apply_patch to edit files.",` +
		`"format":{"type":"grammar","syntax":"lark","definition":"start: begin_patch hunk+ end_patch\nbegin_patch: \"*** Begin Patch\" LF"}}`
)

// responsesBody is a Codex-like request: instructions carrying the fake's script marker, a
// user message, the given tools and extra top-level fields.
func responsesBody(marker string, stream bool, tools []string, extra string) string {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-5-codex","instructions":"You are Codex. [` + marker + `]",`)
	b.WriteString(`"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"Fix the bug."}]}],`)
	b.WriteString(`"tools":[` + strings.Join(tools, ",") + `],`)
	if extra != "" {
		b.WriteString(extra + ",")
	}
	if stream {
		b.WriteString(`"stream":true,`)
	}
	b.WriteString(`"store":false,"parallel_tool_calls":false}`)
	return b.String()
}

// sseParser is an incremental SSE parser that, like a client's, sees the stream in
// arbitrary pieces.
type sseParser struct {
	pending []byte
	cur     sseEvent
	started bool
	events  []sseEvent
}

func (p *sseParser) feed(b []byte) {
	p.pending = append(p.pending, b...)
	for {
		i := bytes.IndexByte(p.pending, '\n')
		if i < 0 {
			return
		}
		line := strings.TrimSuffix(string(p.pending[:i]), "\r")
		p.pending = p.pending[i+1:]
		switch {
		case line == "":
			if p.started {
				p.events = append(p.events, p.cur)
			}
			p.cur, p.started = sseEvent{}, false
		case strings.HasPrefix(line, "event:"):
			p.cur.Event, p.started = strings.TrimSpace(strings.TrimPrefix(line, "event:")), true
		case strings.HasPrefix(line, "data:"):
			if p.cur.Data != "" {
				p.cur.Data += "\n"
			}
			p.cur.Data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			p.started = true
		}
	}
}

// respEv is one parsed Responses event.
type respEv struct {
	typ  string
	data map[string]any
}

// checkResponsesStream parses a rendered Responses stream and asserts the contract Codex
// and the OpenAI SDK rely on; it returns the events and the terminal event's response.
//   - every frame is "event: T" + "data: {json with type T}", and nothing trails the last;
//   - sequence_number runs 0, 1, 2, … with no gap;
//   - response.created, then response.in_progress, open the stream;
//   - exactly one terminal event (completed, incomplete or failed), and it is the last;
//   - output items are added at output_index 0, 1, 2, …; each item's events name its index
//     and id; each added item gets exactly one output_item.done unless the stream failed;
//   - a message's one part is added before its deltas and done after them, and its text
//     deltas add up to output_text.done's text, which is the done item's text; function
//     argument deltas add up to function_call_arguments.done's arguments, which are the done
//     item's; a custom tool call's input deltas add up to its done input;
//   - a completed stream's response.output is exactly the done items, in order.
func checkResponsesStream(t *testing.T, body string) ([]respEv, map[string]any) {
	t.Helper()
	var p sseParser
	p.feed([]byte(body))
	if len(p.pending) != 0 || p.started {
		t.Fatalf("stream ends mid-event: %q", p.pending)
	}
	var evs []respEv
	for i, e := range p.events {
		d := decode(t, e.Data)
		if d["type"] != e.Event {
			t.Fatalf("event %d: SSE name %q, data type %v", i, e.Event, d["type"])
		}
		if seq, _ := d["sequence_number"].(float64); int(seq) != i {
			t.Fatalf("event %d (%s): sequence_number %v, want %d", i, e.Event, d["sequence_number"], i)
		}
		evs = append(evs, respEv{e.Event, d})
	}
	if len(evs) < 3 || evs[0].typ != "response.created" || evs[1].typ != "response.in_progress" {
		t.Fatalf("stream does not open with response.created, response.in_progress: %v", types(evs))
	}
	terminals := 0
	for _, e := range evs {
		switch e.typ {
		case "response.completed", "response.incomplete", "response.failed":
			terminals++
		}
	}
	last := evs[len(evs)-1]
	if terminals != 1 || (last.typ != "response.completed" && last.typ != "response.incomplete" && last.typ != "response.failed") {
		t.Fatalf("want exactly one terminal event, last: %v", types(evs))
	}
	failed := last.typ == "response.failed"

	type itemState struct {
		id                  string
		added, done, opened bool
		closed              bool
		text, args, input   strings.Builder
		item                map[string]any
	}
	var items []*itemState
	at := func(e respEv) *itemState {
		idx, ok := e.data["output_index"].(float64)
		if !ok || int(idx) >= len(items) || idx < 0 {
			t.Fatalf("%s: output_index %v of %d items", e.typ, e.data["output_index"], len(items))
		}
		it := items[int(idx)]
		if id, ok := e.data["item_id"]; ok && id != it.id {
			t.Fatalf("%s: item_id %v, item at that index is %q", e.typ, id, it.id)
		}
		if it.done {
			t.Fatalf("%s after output_item.done of item %d", e.typ, int(idx))
		}
		return it
	}
	for _, e := range evs[2:] {
		switch e.typ {
		case "response.output_item.added":
			if idx := e.data["output_index"]; idx != float64(len(items)) {
				t.Fatalf("output_item.added at output_index %v, want %d", idx, len(items))
			}
			item, _ := e.data["item"].(map[string]any)
			id, _ := item["id"].(string)
			if id == "" || item["type"] == nil {
				t.Fatalf("added item without id or type: %v", item)
			}
			items = append(items, &itemState{id: id, added: true})
		case "response.content_part.added":
			it := at(e)
			if e.data["content_index"] != float64(0) || it.opened {
				t.Fatalf("content_part.added: %v", e.data)
			}
			it.opened = true
		case "response.output_text.delta":
			it := at(e)
			if !it.opened || it.closed || e.data["content_index"] != float64(0) {
				t.Fatalf("output_text.delta outside its part: %v", e.data)
			}
			it.text.WriteString(e.data["delta"].(string))
		case "response.output_text.done":
			it := at(e)
			if e.data["text"] != it.text.String() {
				t.Fatalf("output_text.done text %q, deltas %q", e.data["text"], it.text.String())
			}
			it.closed = true
		case "response.content_part.done":
			it := at(e)
			if !it.closed || get(e.data, "part", "text") != it.text.String() {
				t.Fatalf("content_part.done: %v (deltas %q)", e.data, it.text.String())
			}
		case "response.function_call_arguments.delta":
			at(e).args.WriteString(e.data["delta"].(string))
		case "response.function_call_arguments.done":
			it := at(e)
			if it.args.Len() > 0 && e.data["arguments"] != it.args.String() {
				t.Fatalf("arguments.done %q, deltas %q", e.data["arguments"], it.args.String())
			}
			it.args.Reset()
			it.args.WriteString(e.data["arguments"].(string))
		case "response.custom_tool_call_input.delta":
			at(e).input.WriteString(e.data["delta"].(string))
		case "response.custom_tool_call_input.done":
			it := at(e)
			if e.data["input"] != it.input.String() {
				t.Fatalf("custom_tool_call_input.done %q, deltas %q", e.data["input"], it.input.String())
			}
		case "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
			"response.reasoning_summary_text.done", "response.reasoning_summary_part.done":
			at(e)
		case "response.output_item.done":
			it := at(e)
			it.done = true
			it.item, _ = e.data["item"].(map[string]any)
			if it.item["id"] != it.id || it.item["status"] == "in_progress" {
				t.Fatalf("done item %v, added id %q", it.item, it.id)
			}
			switch it.item["type"] {
			case "message":
				if !it.closed || get(it.item, "content", 0, "text") != it.text.String() {
					t.Fatalf("done message %v, deltas %q", it.item, it.text.String())
				}
			case "function_call":
				if it.item["arguments"] != it.args.String() {
					t.Fatalf("done call %v, arguments %q", it.item, it.args.String())
				}
			case "custom_tool_call":
				if it.item["input"] != it.input.String() {
					t.Fatalf("done custom call %v, input %q", it.item, it.input.String())
				}
			}
		case "response.completed", "response.incomplete", "response.failed":
		default:
			t.Fatalf("unexpected event %s", e.typ)
		}
	}
	final, _ := last.data["response"].(map[string]any)
	out, _ := final["output"].([]any)
	if !failed {
		if len(out) != len(items) {
			t.Fatalf("final output has %d items, stream had %d", len(out), len(items))
		}
		for i, it := range items {
			if !it.done {
				t.Fatalf("item %d (%s) has no output_item.done", i, it.id)
			}
			a, _ := json.Marshal(it.item)
			b, _ := json.Marshal(out[i])
			if !bytes.Equal(a, b) {
				t.Fatalf("final output[%d] %s, done item %s", i, b, a)
			}
		}
	}
	return evs, final
}

func types(evs []respEv) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.typ
	}
	return out
}

// collapse drops repeats of the same event type, so a sequence with a variable number of
// deltas compares to a fixed list.
func collapse(ts []string) []string {
	var out []string
	for _, t := range ts {
		if len(out) == 0 || out[len(out)-1] != t {
			out = append(out, t)
		}
	}
	return out
}

// checkResponseObject asserts the parts of a response object every client reads.
func checkResponseObject(t *testing.T, r map[string]any, status string) {
	t.Helper()
	if r["object"] != "response" || r["status"] != status || r["id"] == "" || r["model"] == nil {
		t.Fatalf("response object: object %v status %v (want %s) id %v model %v", r["object"], r["status"], status, r["id"], r["model"])
	}
	if _, ok := r["created_at"].(float64); !ok {
		t.Fatalf("created_at %v", r["created_at"])
	}
	if _, ok := r["output"].([]any); !ok {
		t.Fatalf("output %v", r["output"])
	}
	if _, ok := r["tools"].([]any); !ok {
		t.Fatalf("tools %v", r["tools"])
	}
	for _, k := range []string{"extra_fields", "stop_reason", "provider_extra_fields"} {
		if _, ok := r[k]; ok {
			t.Fatalf("Bifrost field %q leaked: %v", k, r)
		}
	}
}

// checkUsage asserts the usage the client saw matches the Result's.
func checkUsage(t *testing.T, u any, want attempt.Usage) {
	t.Helper()
	num := func(path ...any) int64 {
		f, ok := get(u, path...).(float64)
		if !ok {
			t.Fatalf("usage %v: no %v", u, path)
		}
		return int64(f)
	}
	in, out := num("input_tokens"), num("output_tokens")
	if in != want.InputTokens || out != want.OutputTokens || num("input_tokens_details", "cached_tokens") != want.CacheReadTokens ||
		num("output_tokens_details", "reasoning_tokens") != want.ReasoningTokens || num("total_tokens") != in+out {
		t.Fatalf("client usage %v, want input %d (cached %d) output %d (reasoning %d)", u,
			want.InputTokens, want.CacheReadTokens, want.OutputTokens, want.ReasoningTokens)
	}
}

// doResponses runs one attempt and returns the Result and what the client received.
func doResponses(t *testing.T, e *Engine, req *attempt.Request) (attempt.Result, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	res := e.Do(t.Context(), req, rec)
	return res, rec
}

func wantCommitted(t *testing.T, res attempt.Result, rec *httptest.ResponseRecorder, contentType string) {
	t.Helper()
	if !res.Committed || res.Status != http.StatusOK || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	if ct := rec.Header().Get("Content-Type"); ct != contentType {
		t.Fatalf("Content-Type %q, want %q", ct, contentType)
	}
}
