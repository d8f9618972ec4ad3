package translate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// claudeUsage is the usage of the fake's Claude answers and claudeWantUsage the Result's
// for it. Anthropic's input_tokens excludes the cache reads and writes.
const claudeUsage = `"usage":{"input_tokens":200,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":50}`

var claudeWantUsage = attempt.Usage{InputTokens: 200 + 1000 + 300, OutputTokens: 50, CacheReadTokens: 1000, CacheCreationTokens: 300}

// claudeModel is the model Claude on Vertex names in its answers.
const claudeModel = "claude-sonnet-4-20250514"

// claudeAnswer is a Messages response with the content blocks and stop reason.
func claudeAnswer(content, stop string) string {
	return `{"id":"msg_vrtx_01A","type":"message","role":"assistant","model":"` + claudeModel + `","content":[` + content +
		`],"stop_reason":"` + stop + `","stop_sequence":null,` + claudeUsage + `}`
}

// claudeToolUses are two parallel calls of one function, as Claude returns them.
const claudeToolUses = `{"type":"tool_use","id":"toolu_vrtx_Pa1","name":"get_weather","input":{"city":"Paris"}},` +
	`{"type":"tool_use","id":"toolu_vrtx_Lo2","name":"get_weather","input":{"city":"London"}}`

// claudeEvent is one event of a Messages stream.
func claudeEvent(typ, data string) string { return "event: " + typ + "\ndata: " + data + "\n\n" }

var (
	claudeTextJSON = claudeAnswer(`{"type":"text","text":"It is sunny in Paris."}`, "end_turn")
	claudeToolJSON = claudeAnswer(`{"type":"text","text":"Checking."},`+claudeToolUses, "tool_use")

	claudeStart = claudeEvent("message_start", `{"type":"message_start","message":{"id":"msg_vrtx_01S","type":"message","role":"assistant","model":"`+
		claudeModel+`","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":200,"cache_creation_input_tokens":300,"cache_read_input_tokens":1000,"output_tokens":1}}}`)
	claudeTextEvents = []string{
		claudeStart,
		claudeEvent("ping", `{"type": "ping"}`),
		claudeEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"It is "}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"sunny "}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"in Paris."}}`),
		claudeEvent("content_block_stop", `{"type":"content_block_stop","index":0}`),
		claudeEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":50}}`),
		claudeEvent("message_stop", `{"type":"message_stop"}`),
	}
	claudeToolEvents = []string{
		claudeStart,
		claudeEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Checking."}}`),
		claudeEvent("content_block_stop", `{"type":"content_block_stop","index":0}`),
		claudeEvent("content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_vrtx_Pa1","name":"get_weather","input":{}}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":"}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`),
		claudeEvent("content_block_stop", `{"type":"content_block_stop","index":1}`),
		claudeEvent("content_block_start", `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_vrtx_Lo2","name":"get_weather","input":{}}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"London\"}"}}`),
		claudeEvent("content_block_stop", `{"type":"content_block_stop","index":2}`),
		claudeEvent("message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":50}}`),
		claudeEvent("message_stop", `{"type":"message_stop"}`),
	}
	claudeWantCalls = []clientCall{{"toolu_vrtx_Pa1", "get_weather", `{"city":"Paris"}`}, {"toolu_vrtx_Lo2", "get_weather", `{"city":"London"}`}}
)

// vertexFamilies are the model families the lane serves on Vertex, with the fake's
// answers and what each client must read from them.
var vertexFamilies = []struct {
	name, model, publisher, respModel string
	// respStreamModel is the ResponseModel of a Responses stream, which the lane takes
	// from the first chunk: Bifrost names Claude's model on the last one only.
	respStreamModel    string
	textJSON, toolJSON string
	text, tool         []string // stream frames
	usage              attempt.Usage
	calls              []clientCall
	compare            func(t *testing.T, got, want clientAnswer)
}{
	{"claude", vertexClaude, "anthropic", claudeModel, vertexClaude, claudeTextJSON, claudeToolJSON, claudeTextEvents, claudeToolEvents,
		claudeWantUsage, claudeWantCalls, compareBedrockAnswers},
	{"gemini", vertexGemini, "google", "gemini-2.5-flash-001", "gemini-2.5-flash-001", geminiTextJSON, geminiToolJSON, geminiFrames(geminiTextChunks), geminiFrames(geminiToolChunks),
		geminiWantUsage, geminiWantCalls, compareAnswers},
}

// geminiFrames frames Gemini stream chunks as Vertex sends them (alt=sse).
func geminiFrames(chunks []string) []string {
	out := make([]string, len(chunks))
	for i, c := range chunks {
		out[i] = "data: " + c + "\r\n\r\n"
	}
	return out
}

// Every client format, streamed and not, text and parallel tool calls, for a Claude and a
// Gemini model, answered by the fake Vertex API through the proxy with a token the fake
// token endpoint issued for the provider's service account: the request Vertex receives,
// the answer each client reads, the usage pinned to the family's raw figures. The whole
// run costs one token exchange.
func TestVertexClients(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, nil)
	sa, email := testServiceAccount()
	for _, fam := range vertexFamilies {
		tests := []struct {
			name   string
			json   string
			frames []string
			want   clientAnswer
			finish map[wire.Endpoint]string
		}{
			{"text", fam.textJSON, fam.text, clientAnswer{text: "It is sunny in Paris."},
				map[wire.Endpoint]string{wire.ChatCompletions: "stop", wire.Messages: "end_turn", wire.Responses: "completed"}},
			{"tool calls", fam.toolJSON, fam.tool, clientAnswer{text: "Checking.", calls: fam.calls},
				map[wire.Endpoint]string{wire.ChatCompletions: "tool_calls", wire.Messages: "tool_use", wire.Responses: "completed"}},
		}
		for _, c := range geminiClients {
			for _, tc := range tests {
				for _, stream := range []bool{false, true} {
					name := fam.name + " " + c.name + " " + tc.name
					if stream {
						name += " stream"
					}
					t.Run(name, func(t *testing.T) {
						if stream {
							fake.setReply(sseReply(tc.frames, false))
						} else {
							fake.setReply(jsonReply(200, tc.json))
						}
						rec := httptest.NewRecorder()
						res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", sa, fam.model, stream,
							geminiClientBodies[c.ep](stream)), rec)
						ct := "application/json"
						if stream {
							ct = "text/event-stream"
						}
						wantCommitted(t, res, rec, ct)
						got := fake.last(t)
						if got.Account != email || got.Publisher != fam.publisher || got.Model != fam.model || got.Stream != stream {
							t.Errorf("upstream %s %s/%s stream %v, want %s's token, %s/%s stream %v",
								got.Account, got.Publisher, got.Model, got.Stream, email, fam.publisher, fam.model, stream)
						}
						if fam.publisher == "anthropic" {
							checkVertexClaudeUpstream(t, got, c.ep)
						} else {
							checkVertexGeminiUpstream(t, got, c.ep)
						}

						answer := readAnswer(t, c.format, c.ep, stream, rec.Body.String())
						want := tc.want
						want.finish = tc.finish[c.ep]
						fam.compare(t, answer, want)
						if res.Usage != fam.usage {
							t.Errorf("Usage = %+v, want %+v", res.Usage, fam.usage)
						}
						respModel := fam.respModel
						if c.ep == wire.Responses && stream {
							respModel = fam.respStreamModel
						}
						if res.ResponseModel != respModel || strings.Join(res.FinishReasons, ",") != want.finish {
							t.Errorf("ResponseModel %q FinishReasons %v, want %s [%s]", res.ResponseModel, res.FinishReasons, respModel, want.finish)
						}
						if c.ep == wire.Responses {
							checkUsage(t, answer.usage, fam.usage)
						} else {
							checkClientUsage(t, c.format, stream, rec.Body.String(), fam.usage)
						}
						assertNoVertexSecrets(t, tokens, rec.Body.String())
					})
				}
			}
		}
	}
	if n := tokens.exchangesFor(email); n != 1 {
		t.Errorf("%d token exchanges for one service account, want 1 (the token is reused)", n)
	}
}

// checkVertexClaudeUpstream asserts the Messages request Claude on Vertex received for a
// client request of the given endpoint (see geminiClientBodies).
func checkVertexClaudeUpstream(t *testing.T, got vertexCall, ep wire.Endpoint) {
	t.Helper()
	b := got.Body
	prompts := map[wire.Endpoint][2]string{ // system, first user text
		wire.ChatCompletions: {"Be brief.", "Weather in Paris?"},
		wire.Messages:        {"You are terse.", "Weather in Paris?"},
		wire.Responses:       {"You are Codex. [g]", "Fix the bug."},
	}[ep]
	system, _ := get(b, "system", 0, "text").(string)
	if s, ok := get(b, "system").(string); ok {
		system = s
	}
	if system != prompts[0] {
		t.Errorf("system %v, want %q", get(b, "system"), prompts[0])
	}
	user, _ := get(b, "messages", 0, "content").(string)
	if s, ok := get(b, "messages", 0, "content", 0, "text").(string); ok {
		user = s
	}
	if get(b, "messages", 0, "role") != "user" || user != prompts[1] {
		t.Errorf("first message %v, want the user's %q", get(b, "messages", 0), prompts[1])
	}
	if get(b, "tools", 0, "name") != "get_weather" || get(b, "tools", 0, "input_schema", "type") != "object" {
		t.Errorf("tools %v", get(b, "tools"))
	}
	switch ep {
	case wire.Messages:
		checkClaudePassthrough(t, got.Raw, []byte(anthropicReq(got.Stream)))
	case wire.ChatCompletions:
		if get(b, "max_tokens") != float64(256) || get(b, "temperature") != 0.2 {
			t.Errorf("max_tokens %v temperature %v", get(b, "max_tokens"), get(b, "temperature"))
		}
	}
}

// checkClaudePassthrough asserts that Claude received the Anthropic client's own body:
// every member but model and stream byte for byte (cache_control included), model removed,
// anthropic_version added, stream only when streaming.
func checkClaudePassthrough(t *testing.T, got, client []byte) {
	t.Helper()
	var g, c map[string]json.RawMessage
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(client, &c); err != nil {
		t.Fatal(err)
	}
	for k, v := range c {
		switch k {
		case "model":
			if _, ok := g[k]; ok {
				t.Errorf("model sent in the body")
			}
		case "stream":
		default:
			if !bytes.Equal(g[k], v) {
				t.Errorf("%s changed on the way:\n got %s\nwant %s", k, g[k], v)
			}
		}
	}
	for k := range g {
		if _, ok := c[k]; !ok && k != "anthropic_version" {
			t.Errorf("%s added to the client's body: %s", k, g[k])
		}
	}
	if !bytes.Contains(got, []byte(`"cache_control":{"type":"ephemeral"}`)) {
		t.Errorf("cache_control lost: %s", got)
	}
}

// checkVertexGeminiUpstream asserts the generateContent request Gemini on Vertex received.
func checkVertexGeminiUpstream(t *testing.T, got vertexCall, ep wire.Endpoint) {
	t.Helper()
	b := got.Body
	prompts := map[wire.Endpoint][2]string{
		wire.ChatCompletions: {"Be brief.", "Weather in Paris?"},
		wire.Messages:        {"You are terse.", "Weather in Paris?"},
		wire.Responses:       {"You are Codex. [g]", "Fix the bug."},
	}[ep]
	if get(b, "systemInstruction", "parts", 0, "text") != prompts[0] ||
		get(b, "contents", 0, "role") != "user" || get(b, "contents", 0, "parts", 0, "text") != prompts[1] {
		t.Errorf("systemInstruction %v first content %v, want %q, %q", get(b, "systemInstruction"), get(b, "contents", 0), prompts[0], prompts[1])
	}
	if decl := get(b, "tools", 0, "functionDeclarations", 0); get(decl, "name") != "get_weather" {
		t.Errorf("function declaration %v", decl)
	}
	if ep == wire.Messages {
		fr := get(b, "contents", 2, "parts", 0, "functionResponse")
		if get(fr, "name") != "get_weather" || get(fr, "response", "content") != "sunny, 21C" {
			t.Errorf("function response %v", get(b, "contents", 2))
		}
	}
}

// assertNoVertexSecrets checks client-visible output for internals, the test key and the
// issued tokens.
func assertNoVertexSecrets(t *testing.T, tokens *fakeGoogleToken, s string) {
	t.Helper()
	assertNoSecrets(t, s)
	assertNoVertexCredentials(t, tokens, s)
}

// assertNoVertexCredentials checks s (output, an error for the logs) for the test key, the
// signed assertions and the issued tokens.
func assertNoVertexCredentials(t *testing.T, tokens *fakeGoogleToken, s string) {
	t.Helper()
	secrets := append(tokens.issued(), testKeyFragment(), "ya29.", "PRIVATE KEY", "eyJhbGciOiJSUzI1NiIs")
	for _, bad := range secrets {
		if strings.Contains(s, bad) {
			t.Fatalf("client-visible output contains a credential (%.12s…): %s", bad, s)
		}
	}
}

// The service-account key is exchanged for an access token at Google's token endpoint
// (the fake verifies the signed assertion: RS256 with the key, the cloud-platform scope,
// the endpoint as audience), and the token is what Vertex receives. Bifrost keeps one token
// per credential document and fetches another when it nears expiry or Vertex refuses it
// (401 on a non-streaming call); each provider's document gets its own.
func TestVertexTokenExchange(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, jsonReply(200, claudeTextJSON))
	do := func(t *testing.T, sa string, stream bool) attempt.Result {
		t.Helper()
		if stream {
			fake.setReply(sseReply(claudeTextEvents, false))
		} else {
			fake.setReply(jsonReply(200, claudeTextJSON))
		}
		rec := httptest.NewRecorder()
		res := e.Do(t.Context(), vertexRequest(wire.OpenAI, wire.ChatCompletions, "us-east5", sa, vertexClaude, stream,
			geminiClientBodies[wire.ChatCompletions](stream)), rec)
		if !res.Committed || res.Err != nil {
			t.Fatalf("result %+v", res)
		}
		return res
	}

	t.Run("one exchange per document", func(t *testing.T) {
		saA, emailA := testServiceAccount()
		saB, emailB := testServiceAccount()
		for i := range 4 {
			do(t, saA, i%2 == 1)
			if got := fake.last(t).Account; got != emailA {
				t.Fatalf("Vertex received a token of %q, want %q's", got, emailA)
			}
		}
		do(t, saB, false)
		if got := fake.last(t).Account; got != emailB {
			t.Fatalf("Vertex received a token of %q, want %q's", got, emailB)
		}
		if a, b := tokens.exchangesFor(emailA), tokens.exchangesFor(emailB); a != 1 || b != 1 {
			t.Errorf("exchanges %d and %d, want one per document", a, b)
		}
	})

	t.Run("a token near expiry is replaced", func(t *testing.T) {
		tokens.mu.Lock()
		tokens.expiresIn = 5 // within oauth2's 10 s early-expiry margin: stale on arrival
		tokens.mu.Unlock()
		defer func() {
			tokens.mu.Lock()
			tokens.expiresIn = 0
			tokens.mu.Unlock()
		}()
		sa, email := testServiceAccount()
		for range 3 {
			do(t, sa, false)
		}
		if n := tokens.exchangesFor(email); n != 3 {
			t.Errorf("%d exchanges, want 3", n)
		}
	})

	t.Run("a token Vertex refuses is replaced", func(t *testing.T) {
		sa, email := testServiceAccount()
		do(t, sa, false)
		fake.setReply(geminiError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
		res := e.Do(t.Context(), vertexRequest(wire.OpenAI, wire.ChatCompletions, "us-east5", sa, vertexClaude, false,
			geminiClientBodies[wire.ChatCompletions](false)), httptest.NewRecorder())
		if res.Committed || res.Status != 401 || res.Retryable {
			t.Fatalf("result %+v, want Vertex's 401, not retryable", res)
		}
		do(t, sa, false)
		if n := tokens.exchangesFor(email); n != 2 {
			t.Errorf("%d exchanges, want 2 (Bifrost drops the token source after a 401)", n)
		}
	})

	// Bifrost 1.7.15 drops the token source after a 401 on non-streaming calls only: a
	// stream refused for its token keeps the token until it nears expiry.
	t.Run("a token refused on a stream is kept", func(t *testing.T) {
		sa, email := testServiceAccount()
		do(t, sa, true)
		fake.setReply(geminiError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."))
		res := e.Do(t.Context(), vertexRequest(wire.OpenAI, wire.ChatCompletions, "us-east5", sa, vertexClaude, true,
			geminiClientBodies[wire.ChatCompletions](true)), httptest.NewRecorder())
		if res.Committed || res.Status != 401 {
			t.Fatalf("result %+v, want Vertex's 401", res)
		}
		do(t, sa, true)
		if n := tokens.exchangesFor(email); n != 1 {
			t.Errorf("%d exchanges: Bifrost now drops the token after a refused stream; update the report", n)
		}
	})
}

// One engine serves Vertex providers in three locations (a region, another region,
// "global"), each with its own service account, at once: every attempt reaches its
// provider's location with its provider's token.
func TestVertexProvidersShareAPool(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	type provider struct {
		fake   *fakeVertex
		sa     string
		email  string
		model  string
		stream bool
	}
	var providers []provider
	for i, region := range vertexRegions {
		sa, email := testServiceAccount()
		p := provider{sa: sa, email: email, model: vertexClaude, stream: i == 1}
		if i == 2 {
			p.model = vertexGemini
		}
		reply := jsonReply(200, claudeTextJSON)
		switch {
		case p.stream:
			reply = sseReply(claudeTextEvents, false)
		case p.model == vertexGemini:
			reply = jsonReply(200, geminiTextJSON)
		}
		p.fake = newFakeVertex(t, region, tokens, reply)
		providers = append(providers, p)
	}
	var wg sync.WaitGroup
	for i := range 30 {
		p := providers[i%len(providers)]
		wg.Go(func() {
			req := vertexRequest(wire.OpenAI, wire.ChatCompletions, p.fake.region, p.sa, p.model, p.stream,
				geminiClientBodies[wire.ChatCompletions](p.stream))
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), req, rec)
			if !res.Committed || res.Err != nil || !strings.Contains(rec.Body.String(), "sunny") {
				t.Errorf("provider %s: result %+v body %s", req.Provider.ID, res, rec.Body)
			}
		})
	}
	wg.Wait()
	for _, p := range providers {
		p.fake.mu.Lock()
		for _, c := range p.fake.calls {
			if c.Account != p.email || c.Model != p.model {
				t.Errorf("%s received %s with a token of %q, want %s with %q's", p.fake.region, c.Model, c.Account, p.model, p.email)
			}
		}
		n := len(p.fake.calls)
		p.fake.mu.Unlock()
		if n != 10 {
			t.Errorf("%s received %d requests, want 10", p.fake.region, n)
		}
		if x := tokens.exchangesFor(p.email); x < 1 || x > 4 {
			t.Errorf("%s: %d token exchanges for 10 attempts", p.fake.region, x)
		}
	}
}

// An Anthropic client of a Claude model on Vertex has its own body sent: thinking blocks
// with their signatures, cache_control with a TTL, fields the chat schema has no room for,
// byte for byte; Bifrost only removes the model, adds anthropic_version, and carries the
// client's anthropic-beta flags Vertex accepts in anthropic_beta.
func TestVertexClaudeKeepsTheClientBody(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, nil)
	sa, _ := testServiceAccount()
	const body = `{"model":"claude-sonnet-4","max_tokens":2048,"stream":%s,
 "thinking":{"type":"enabled","budget_tokens":1024},
 "system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral","ttl":"1h"}}],
 "metadata":{"user_id":"u-42"},
 "messages":[
  {"role":"user","content":[{"type":"text","text":"Weather in Paris?","cache_control":{"type":"ephemeral"}}]},
  {"role":"assistant","content":[{"type":"thinking","thinking":"The user wants weather.","signature":"EqQBCkYIBxgCKkCsig=="},
   {"type":"tool_use","id":"toolu_9","name":"get_weather","input":{"city":"Paris"}}]},
  {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_9","content":[{"type":"text","text":"sunny, 21C"}],"cache_control":{"type":"ephemeral"}}]}],
 "tools":[{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}},"cache_control":{"type":"ephemeral"}}],
 "tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream %v", stream), func(t *testing.T) {
			if stream {
				fake.setReply(sseReply(claudeTextEvents, false))
			} else {
				fake.setReply(jsonReply(200, claudeTextJSON))
			}
			client := fmt.Sprintf(body, strconv.FormatBool(stream))
			req := vertexRequest(wire.Anthropic, wire.Messages, "us-east5", sa, vertexClaude, stream, client)
			req.Header.Set("anthropic-beta", "interleaved-thinking-2025-05-14,no-such-beta-2099-01-01")
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), req, rec)
			if !res.Committed || res.Err != nil {
				t.Fatalf("result %+v", res)
			}
			got := fake.last(t)
			var g, c map[string]json.RawMessage
			if err := json.Unmarshal(got.Raw, &g); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(client), &c); err != nil {
				t.Fatal(err)
			}
			for k, v := range c {
				if k != "model" && k != "stream" && !bytes.Equal(g[k], v) {
					t.Errorf("%s changed on the way:\n got %s\nwant %s", k, g[k], v)
				}
			}
			if _, ok := g["model"]; ok {
				t.Error("model sent in the body")
			}
			if len(g) != len(c)-1+2-map[bool]int{false: 1, true: 0}[stream] {
				t.Errorf("members %d, want the client's %d less model (and stream), plus anthropic_version and anthropic_beta: %s",
					len(g), len(c), got.Raw)
			}
			if betas := get(got.Body, "anthropic_beta"); !reflect.DeepEqual(betas, []any{"interleaved-thinking-2025-05-14"}) {
				t.Errorf("anthropic_beta %v, want the flag Vertex accepts", betas)
			}
		})
	}
}
