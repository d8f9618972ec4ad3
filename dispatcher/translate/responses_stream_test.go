package translate

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// A stream the provider cuts ends with exactly one response.failed carrying an error, never
// a clean end; the Result is committed with the error and the usage message_start reported.
func TestResponsesStreamCut(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	for _, cut := range []int{1, 2, 4, 6} {
		marker := "cut-" + string(rune('0'+cut))
		fake.Script(marker, fakeprovider.Script{Text: "A longer answer that will not arrive whole.", CutAfterEvents: cut, Usage: fakeUsage})
		res, rec := doResponses(t, e, responsesRequest(url, true, responsesBody(marker, true, nil, "")))
		if !res.Committed || res.Err == nil || res.FinishReasons != nil {
			t.Fatalf("cut %d: result %+v", cut, res)
		}
		evs, final := checkResponsesStream(t, rec.Body.String())
		if evs[len(evs)-1].typ != "response.failed" || final["status"] != "failed" {
			t.Fatalf("cut %d: events %v", cut, types(evs))
		}
		if code, msg := get(final, "error", "code"), get(final, "error", "message"); code != "server_error" || msg == "" || msg == nil {
			t.Fatalf("cut %d: error %v", cut, final["error"])
		}
		assertNoSecrets(t, rec.Body.String())
		want := attempt.Usage{InputTokens: wantUsage.InputTokens, OutputTokens: 1, CacheReadTokens: 8192, CacheCreationTokens: 1536}
		if res.Usage != want {
			t.Errorf("cut %d: Usage %+v, want the input message_start reported %+v", cut, res.Usage, want)
		}
	}
}

// An error event in the middle of an Anthropic stream (overloaded) ends the stream with
// response.failed after the items that were finished.
func TestResponsesStreamErrorEvent(t *testing.T) {
	e := newEngine(t)
	frames := append(append([]string{}, anthropicStreamFrames[:6]...),
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
	up := newUpstream(t, sseReply(frames, false))
	res, rec := doResponses(t, e, responsesRequest(up.URL, true, responsesBody("x", true, []string{shellTool}, "")))
	if !res.Committed || res.Err == nil || res.FinishReasons != nil {
		t.Fatalf("result %+v", res)
	}
	evs, final := checkResponsesStream(t, rec.Body.String())
	if evs[len(evs)-1].typ != "response.failed" || get(final, "error", "code") != "server_error" {
		t.Fatalf("events %v, final %v", types(evs), final)
	}
	if out := final["output"].([]any); len(out) != 1 || get(out, 0, "content", 0, "text") != "Let me check." {
		t.Fatalf("failed response output %v, want the finished message", out)
	}
}

// Streams arrive cut anywhere: a client parsing the rendered stream in two pieces split at
// any byte, or byte by byte, sees the same events as one parsing it whole.
func TestResponsesStreamSplitAnywhere(t *testing.T) {
	e := newEngine(t)
	fake, url := newFake(t)
	fake.Script("split", fakeprovider.Script{Text: "Héllo — ünïcode\nand \"quotes\".", Usage: fakeUsage})
	res, rec := doResponses(t, e, responsesRequest(url, true, responsesBody("split", true, []string{shellTool}, "")))
	wantCommitted(t, res, rec, "text/event-stream")
	body := rec.Body.Bytes()
	var whole sseParser
	whole.feed(body)
	if len(whole.events) < 10 {
		t.Fatalf("only %d events", len(whole.events))
	}
	checkResponsesStream(t, string(body))
	for i := 0; i <= len(body); i++ {
		var p sseParser
		p.feed(body[:i])
		p.feed(body[i:])
		if !reflect.DeepEqual(p.events, whole.events) {
			t.Fatalf("split at byte %d: events differ", i)
		}
	}
	var p sseParser
	for i := range body {
		p.feed(body[i : i+1])
	}
	if !reflect.DeepEqual(p.events, whole.events) {
		t.Fatal("byte-by-byte: events differ")
	}
}

// anthropicThinkingStream is an Anthropic stream with a thinking block (text and
// signature), a redacted thinking block, then a tool call.
var anthropicThinkingStream = []string{
	"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_T\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-real\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":70,\"output_tokens\":1}}}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The bug is in \"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"a.go.\"}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"SIG-abc==\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"REDACTED-xyz\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
	"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_T\",\"name\":\"shell\",\"input\":{}}}\n\n",
	"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"command\\\":[\\\"ls\\\"]}\"}}\n\n",
	"event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
	"event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":40,\"output_tokens_details\":{\"thinking_tokens\":12}}}\n\n",
	"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
}

// Thinking comes back as reasoning items whose summary is the thinking text and whose
// encrypted_content carries the blocks; sent back as input, they reach Anthropic as the
// same thinking (signature intact) and redacted thinking blocks, ahead of the tool call.
// Reasoning items from another provider are dropped.
func TestResponsesReasoningRoundTrip(t *testing.T) {
	e := newEngine(t)
	up := newUpstream(t, sseReply(anthropicThinkingStream, false))
	res, rec := doResponses(t, e, responsesRequest(up.URL, true, responsesBody("r", true, []string{shellTool},
		`"reasoning":{"effort":"medium","summary":"auto"}`)))
	wantCommitted(t, res, rec, "text/event-stream")
	evs, final := checkResponsesStream(t, rec.Body.String())
	got := collapse(types(evs))
	want := []string{"response.created", "response.in_progress",
		"response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
		"response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
		"response.output_item.added", "response.output_item.done",
		"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done",
		"response.output_item.done", "response.completed"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v\nwant %v", got, want)
	}
	if res.Usage.ReasoningTokens != 12 || res.Usage.OutputTokens != 40 || res.Usage.InputTokens != 70 {
		t.Errorf("Usage %+v", res.Usage)
	}
	out := final["output"].([]any)
	if get(out, 0, "type") != "reasoning" || get(out, 0, "summary", 0, "text") != "The bug is in a.go." ||
		get(out, 1, "type") != "reasoning" || get(out, 2, "type") != "function_call" {
		t.Fatalf("output %v", out)
	}

	// Next turn: the client replays the output, with the tool's result, plus a foreign
	// reasoning item (OpenAI's) that Anthropic could not verify.
	var items []string
	for _, it := range out {
		items = append(items, string(mustJSON(it)))
	}
	body := `{"model":"gpt-5-codex","instructions":"[replay]","reasoning":{"effort":"medium"},"tools":[` + shellTool + `],"input":[` +
		`{"type":"message","role":"user","content":[{"type":"input_text","text":"Fix the bug."}]},` +
		`{"type":"reasoning","id":"rs_openai","summary":[{"type":"summary_text","text":"foreign"}],"encrypted_content":"gAAAAB-openai"},` +
		strings.Join(items, ",") + `,{"type":"function_call_output","call_id":"toolu_T","output":"a.go"}]}`
	up2 := newUpstream(t, jsonReply(200, anthropicCacheJSON("1", "0", "0", "1", "end_turn")))
	res, rec = doResponses(t, e, responsesRequest(up2.URL, false, body))
	wantCommitted(t, res, rec, "application/json")
	sent := up2.last(t)
	if bytes.Contains(sent.Raw, []byte("foreign")) || bytes.Contains(sent.Raw, []byte("gAAAAB")) {
		t.Errorf("foreign reasoning sent upstream: %s", sent.Raw)
	}
	msgs := sent.Body["messages"].([]any)
	if len(msgs) != 3 {
		t.Fatalf("messages %s", sent.Raw)
	}
	blocks := get(msgs, 1, "content").([]any)
	if get(msgs, 1, "role") != "assistant" || len(blocks) != 3 ||
		get(blocks, 0, "type") != "thinking" || get(blocks, 0, "thinking") != "The bug is in a.go." || get(blocks, 0, "signature") != "SIG-abc==" ||
		get(blocks, 1, "type") != "redacted_thinking" || get(blocks, 1, "data") != "REDACTED-xyz" ||
		get(blocks, 2, "type") != "tool_use" || get(blocks, 2, "id") != "toolu_T" {
		t.Fatalf("assistant turn sent as %s", mustJSON(msgs[1]))
	}
}
