package extproc

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	procv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// guardFixture is a server whose keys run guardrails:
//
//	vk_plain   none
//	vk_req     pii redact on requests; a regex block on requests
//	vk_stream  pii redact on streams and answers
//	vk_broken  a guardrail that does not exist
func guardFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t)
	all := []config.GuardrailDirection{config.DirectionRequest, config.DirectionResponse, config.DirectionStream}
	c := &config.Config{Version: config.Version,
		Providers: []config.Provider{{ID: "oa", Type: config.ProviderOpenAI}, {ID: "an", Type: config.ProviderAnthropic}},
		Guardrails: []config.Guardrail{
			{ID: "pii-req", Name: "pii", Kind: config.GuardrailPII, Action: config.ActionRedact, Directions: []config.GuardrailDirection{config.DirectionRequest}},
			{ID: "deny", Name: "deny", Kind: config.GuardrailRegex, Directions: []config.GuardrailDirection{config.DirectionRequest},
				Patterns: []config.GuardrailPattern{{Name: "SECRET_PROJECT", Pattern: `(?i)project zephyr`}}},
			{ID: "pii-out", Name: "pii", Kind: config.GuardrailPII, Action: config.ActionRedact, Directions: all[1:]},
		},
		Keys: []config.Key{
			{ID: "vk_plain", Hash: f.hash("vk_plain")},
			{ID: "vk_req", Hash: f.hash("vk_req"), Guardrails: []string{"pii-req", "deny"}},
			{ID: "vk_stream", Hash: f.hash("vk_stream"), Guardrails: []string{"pii-out"}},
		},
	}
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// A key naming a guardrail the snapshot lacks, as a half-applied push could leave it.
	broken := &config.VirtualKey{ID: "vk_broken", Name: "b", Scope: config.MustParseScope("ORG:default"),
		Hash: f.hash("vk_broken"), DisplayPrefix: "sk-sluice-", Status: config.KeyActive,
		Config: config.KeyConfig{Guardrails: []string{"gone"}}}
	snap.Resources[config.KindVirtualKey]["vk_broken"] = mustJSONDoc(t, broken)
	if err := f.srv.LoadSnapshot(snap); err == nil || !strings.Contains(err.Error(), "guardrail gone does not exist") {
		t.Fatalf("LoadSnapshot = %v, want the missing guardrail reported", err)
	}
	return f
}

func mustJSONDoc(t *testing.T, r config.Resource) []byte {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func responseHeadersMsg(status, ctype string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{
		Headers: headersMsg("", "", false, ":status", status, "content-type", ctype).GetRequestHeaders().Headers}}}
}

func responseBodyMsg(b string, end bool) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{
		ResponseBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: end}}}
}

func TestGuardNoGuardrailsNoResponsePhases(t *testing.T) {
	f := guardFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_plain")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"mail bob@example.com"}]}`))
	if len(sent) != 2 || sent[0].ModeOverride != nil || sent[1].GetRequestBody().GetResponse().GetBodyMutation() != nil {
		t.Fatalf("a key without guardrails got a mode override or a body mutation: %v", sent)
	}
}

func TestGuardRedactsRequest(t *testing.T) {
	f := guardFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_req")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"mail bob@example.com or call"}]}`))
	if sent[0].ModeOverride != nil {
		t.Errorf("request-only guardrails turned on response phases: %v", sent[0].ModeOverride)
	}
	common := sent[1].GetRequestBody().GetResponse()
	got := string(common.GetBodyMutation().GetBody())
	want := `{"model":"gpt-4o","messages":[{"role":"user","content":"mail [REDACTED:EMAIL] or call"}]}`
	if got != want {
		t.Fatalf("body mutation = %s, want %s", got, want)
	}
	if cl, _ := setValue(common.GetHeaderMutation(), "content-length"); cl != strconv.Itoa(len(want)) {
		t.Errorf("content-length = %q, want %d", cl, len(want))
	}
	if _, ok := setValue(common.GetHeaderMutation(), wire.HeaderContext); !ok {
		t.Error("the context token is missing beside the redaction")
	}
}

func TestGuardBlocksRequest(t *testing.T) {
	f := guardFixture(t)
	for _, c := range []struct {
		path, body string
		format     wire.Format
	}{
		{"/v1/chat/completions", `{"model":"gpt-4o","messages":[{"role":"user","content":"tell me about Project Zephyr"}]}`, wire.OpenAI},
		{"/v1/messages", `{"model":"claude-x","max_tokens":5,"system":"project zephyr is secret","messages":[{"role":"user","content":"hi"}]}`, wire.Anthropic},
	} {
		sent := f.run(t, headersMsg("POST", c.path, false, "authorization", f.bearer("vk_req")), bodyMsg(c.body))
		checkReject(t, sent[1], 403, c.format, "guardrail_blocked")
		msg := errorEnvelope(t, c.format, sent[1].GetImmediateResponse().GetBody(), "guardrail_blocked")
		if !strings.Contains(msg, "SECRET_PROJECT") || strings.Contains(strings.ToLower(msg), "zephyr") {
			t.Errorf("%s: message %q should name the finding, not echo the text", c.path, msg)
		}
	}
}

func TestGuardMissingGuardrailRefuses(t *testing.T) {
	f := guardFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_broken")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	checkReject(t, sent[len(sent)-1], 503, wire.OpenAI, "guardrail_unavailable")
}

func TestGuardRedactsBufferedAnswer(t *testing.T) {
	f := guardFixture(t)
	answer := `{"id":"c1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"reach me at bob@example.com"},"finish_reason":"stop"}]}`
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_stream")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`),
		responseHeadersMsg("200", "application/json"), responseBodyMsg(answer, true))
	if m := sent[0].ModeOverride; m == nil || m.ResponseHeaderMode != procv3.ProcessingMode_SEND || m.ResponseBodyMode != procv3.ProcessingMode_NONE {
		t.Fatalf("request headers mode override = %v, want response headers on, body off", m)
	}
	if m := sent[2].ModeOverride; m == nil || m.ResponseBodyMode != procv3.ProcessingMode_BUFFERED {
		t.Fatalf("response headers mode override = %v, want a buffered body", m)
	}
	common := sent[3].GetResponseBody().GetResponse()
	got := string(common.GetBodyMutation().GetBody())
	if !strings.Contains(got, `"content":"reach me at [REDACTED:EMAIL]"`) {
		t.Fatalf("answer = %s, want the email redacted", got)
	}
	if cl, _ := setValue(common.GetHeaderMutation(), "content-length"); cl != strconv.Itoa(len(got)) {
		t.Errorf("content-length = %q for %d bytes", cl, len(got))
	}
}

func TestGuardErrorAnswersPassUntouched(t *testing.T) {
	f := guardFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_stream")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`),
		responseHeadersMsg("429", "application/json"))
	if sent[2].ModeOverride != nil {
		t.Fatalf("an error answer was inspected: %v", sent[2].ModeOverride)
	}
}

func TestGuardStreamRedactsAcrossChunks(t *testing.T) {
	f := guardFixture(t)
	chunk := func(text string) string {
		return `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":` + strconv.Quote(text) + `},"finish_reason":null}]}` + "\n\n"
	}
	finish := `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\ndata: [DONE]\n\n"
	msgs := []*extprocv3.ProcessingRequest{
		headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_stream")),
		bodyMsg(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`),
		responseHeadersMsg("200", "text/event-stream; charset=utf-8"),
		responseBodyMsg(chunk("Write to alice.sm"), false),
		responseBodyMsg(chunk("ith@exam")+chunk("ple.com today."), false),
		responseBodyMsg(finish, true),
	}
	sent := f.run(t, msgs...)
	if m := sent[2].ModeOverride; m == nil || m.ResponseBodyMode != procv3.ProcessingMode_STREAMED {
		t.Fatalf("response headers mode override = %v, want a streamed body", m)
	}
	var out strings.Builder
	for _, r := range sent[3:] {
		out.Write(r.GetResponseBody().GetResponse().GetBodyMutation().GetBody())
	}
	text := contentOf(t, out.String())
	if text != "Write to [REDACTED:EMAIL] today." {
		t.Fatalf("client text = %q", text)
	}
	if strings.Contains(out.String(), "alice") || strings.Contains(out.String(), "exam") {
		t.Errorf("a fragment of the email reached the client: %s", out.String())
	}
	if !strings.HasSuffix(out.String(), "data: [DONE]\n\n") {
		t.Errorf("stream does not end cleanly: %q", out.String())
	}
}

// contentOf concatenates the delta content of an OpenAI chat stream.
func contentOf(t *testing.T, sse string) string {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(sse, "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("bad chunk %q: %v", data, err)
		}
		for _, ch := range c.Choices {
			b.WriteString(ch.Delta.Content)
		}
	}
	return b.String()
}

func TestGuardStreamBlockEndsWithErrorEvent(t *testing.T) {
	f := newFixture(t)
	c := testConfig(f.hash)
	c.Guardrails = []config.Guardrail{{ID: "deny", Name: "deny", Kind: config.GuardrailRegex,
		Directions: []config.GuardrailDirection{config.DirectionStream},
		Patterns:   []config.GuardrailPattern{{Name: "BAD", Pattern: `badword`}}}}
	c.Keys[1].Guardrails = []string{"deny"} // vk_any
	if err := f.srv.Load(c); err != nil {
		t.Fatal(err)
	}
	ev := func(text string) string {
		return "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":" + strconv.Quote(text) + "}}\n\n"
	}
	sent := f.run(t,
		headersMsg("POST", "/v1/messages", false, "x-api-key", f.secret["vk_any"]),
		bodyMsg(`{"model":"claude-sonnet-4","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`),
		responseHeadersMsg("200", "text/event-stream"),
		responseBodyMsg(ev(strings.Repeat("fine text ", 10))+ev("then a badword appears")+ev(" and more"), false),
		responseBodyMsg("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", true))
	first := string(sent[3].GetResponseBody().GetResponse().GetBodyMutation().GetBody())
	if !strings.Contains(first, "fine text") || strings.Contains(first, "badword") {
		t.Errorf("released before the block: %q", first)
	}
	if !strings.Contains(first, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"permission_error\"") {
		t.Errorf("the block did not end the stream with an Anthropic error event: %q", first)
	}
	if rest := sent[4].GetResponseBody().GetResponse().GetBodyMutation(); !rest.GetClearBody() {
		t.Errorf("what upstream sent after the block was not dropped: %v", rest)
	}
}

// TestGuardUndecodableScopeRefuses: a key's project that this replica cannot decode may
// attach guardrails; its keys are refused rather than served without them.
func TestGuardUndecodableScopeRefuses(t *testing.T) {
	f := newFixture(t)
	c := testConfig(f.hash)
	snap, err := c.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Resources[config.KindProject]["proj1"] = []byte(`{"id":"proj1","org_id":"org1","name":"p","guardrails":"not-a-list"}`)
	if err := f.srv.LoadSnapshot(snap); err == nil {
		t.Fatal("LoadSnapshot accepted an undecodable project silently")
	}
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	checkReject(t, sent[len(sent)-1], 503, wire.OpenAI, "guardrail_unavailable")
	// A key elsewhere is unaffected.
	sent = f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_any")),
		bodyMsg(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	if sent[1].GetImmediateResponse() != nil {
		t.Fatalf("an unrelated key was refused: %v", sent[1])
	}
}

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{"text/event-stream": true, "Text/Event-Stream; charset=utf-8": true,
		"application/json": false, "text/event": false, "": false} {
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v", ct, got)
		}
	}
}
