package translate

import (
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// bedrockUsage is the usage of the fake's answers and bedrockWantUsage the Result's for
// it. Converse's inputTokens excludes the cache reads and writes; totalTokens counts all.
const bedrockUsage = `"usage":{"inputTokens":200,"outputTokens":50,"totalTokens":1550,"cacheReadInputTokens":1000,"cacheWriteInputTokens":300}`

var bedrockWantUsage = attempt.Usage{InputTokens: 200 + 1000 + 300, OutputTokens: 50, CacheReadTokens: 1000, CacheCreationTokens: 300}

// converseAnswer is a Converse response with the content blocks and stop reason.
func converseAnswer(content, stop string) string {
	return `{"output":{"message":{"role":"assistant","content":[` + content + `]}},"stopReason":"` + stop + `",` +
		bedrockUsage + `,"metrics":{"latencyMs":420}}`
}

// bedrockToolUses are two parallel calls of one function, as Converse returns them.
const bedrockToolUses = `{"toolUse":{"toolUseId":"tooluse_Pa1","name":"get_weather","input":{"city":"Paris"}}},` +
	`{"toolUse":{"toolUseId":"tooluse_Lo2","name":"get_weather","input":{"city":"London"}}}`

var (
	bedrockTextJSON = converseAnswer(`{"text":"It is sunny in Paris."}`, "end_turn")
	bedrockToolJSON = converseAnswer(`{"text":"Checking."},`+bedrockToolUses, "tool_use")

	bedrockTextEvents = [][]byte{
		bedrockEvent("messageStart", `{"role":"assistant"}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"It is "}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"sunny "}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"in Paris."}}`),
		bedrockEvent("contentBlockStop", `{"contentBlockIndex":0}`),
		bedrockEvent("messageStop", `{"stopReason":"end_turn"}`),
		bedrockEvent("metadata", `{`+bedrockUsage+`,"metrics":{"latencyMs":420}}`),
	}
	bedrockToolEvents = [][]byte{
		bedrockEvent("messageStart", `{"role":"assistant"}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Checking."}}`),
		bedrockEvent("contentBlockStop", `{"contentBlockIndex":0}`),
		bedrockEvent("contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_Pa1","name":"get_weather"}}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"\"Paris\"}"}}}`),
		bedrockEvent("contentBlockStop", `{"contentBlockIndex":1}`),
		bedrockEvent("contentBlockStart", `{"contentBlockIndex":2,"start":{"toolUse":{"toolUseId":"tooluse_Lo2","name":"get_weather"}}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":2,"delta":{"toolUse":{"input":"{\"city\":\"London\"}"}}}`),
		bedrockEvent("contentBlockStop", `{"contentBlockIndex":2}`),
		bedrockEvent("messageStop", `{"stopReason":"tool_use"}`),
		bedrockEvent("metadata", `{`+bedrockUsage+`,"metrics":{"latencyMs":420}}`),
	}
	bedrockWantCalls = []clientCall{{"tooluse_Pa1", "get_weather", `{"city":"Paris"}`}, {"tooluse_Lo2", "get_weather", `{"city":"London"}`}}
)

// Every client format, streamed and not, text and parallel tool calls, answered by the fake
// Bedrock API through the proxy with a SigV4-signed request (temporary credentials): the
// Converse request Bedrock receives, the answer each client reads, the usage pinned to
// Converse's raw figures.
func TestBedrockClients(t *testing.T) {
	e := newCloudEngine(t)
	fake := newFakeBedrock(t, "us-east-1", nil)
	fake.session = true
	tests := []struct {
		name   string
		json   string
		events [][]byte
		want   clientAnswer
		finish map[wire.Endpoint]string
	}{
		{"text", bedrockTextJSON, bedrockTextEvents, clientAnswer{text: "It is sunny in Paris."},
			map[wire.Endpoint]string{wire.ChatCompletions: "stop", wire.Messages: "end_turn", wire.Responses: "completed"}},
		{"tool calls", bedrockToolJSON, bedrockToolEvents, clientAnswer{text: "Checking.", calls: bedrockWantCalls},
			map[wire.Endpoint]string{wire.ChatCompletions: "tool_calls", wire.Messages: "tool_use", wire.Responses: "completed"}},
	}
	for _, c := range geminiClients {
		for _, tc := range tests {
			for _, stream := range []bool{false, true} {
				name := c.name + " " + tc.name
				if stream {
					name += " stream"
				}
				t.Run(name, func(t *testing.T) {
					if stream {
						fake.setReply(bedrockStream(tc.events, false, 0))
					} else {
						fake.setReply(converseJSON(tc.json))
					}
					rec := httptest.NewRecorder()
					res := e.Do(t.Context(), bedrockRequest(c.format, c.ep, "us-east-1", testCredentials(true), stream,
						geminiClientBodies[c.ep](stream)), rec)
					ct := "application/json"
					if stream {
						ct = "text/event-stream"
					}
					wantCommitted(t, res, rec, ct)
					got := fake.last(t)
					if got.Auth != "sigv4:"+testAccessKeyID+":us-east-1" {
						t.Errorf("credential %q, want SigV4 for %s in us-east-1", got.Auth, testAccessKeyID)
					}
					checkBedrockUpstream(t, got, c.ep, stream)

					answer := readAnswer(t, c.format, c.ep, stream, rec.Body.String())
					want := tc.want
					want.finish = tc.finish[c.ep]
					compareBedrockAnswers(t, answer, want)
					if res.Usage != bedrockWantUsage {
						t.Errorf("Usage = %+v, want %+v", res.Usage, bedrockWantUsage)
					}
					if res.ResponseModel != bedrockClaude || strings.Join(res.FinishReasons, ",") != want.finish {
						t.Errorf("ResponseModel %q FinishReasons %v, want %s [%s]", res.ResponseModel, res.FinishReasons, bedrockClaude, want.finish)
					}
					if c.ep == wire.Responses {
						checkUsage(t, answer.usage, bedrockWantUsage)
					} else {
						checkClientUsage(t, c.format, stream, rec.Body.String(), bedrockWantUsage)
					}
					assertNoBedrockSecrets(t, rec.Body.String())
				})
			}
		}
	}
}

// checkBedrockUpstream asserts the Converse request the fake received for a client request
// of the given endpoint (see geminiClientBodies).
func checkBedrockUpstream(t *testing.T, got bedrockCall, ep wire.Endpoint, stream bool) {
	t.Helper()
	if got.Model != bedrockClaude || got.Stream != stream {
		t.Errorf("upstream model %s stream %v, want %s, %v", got.Model, got.Stream, bedrockClaude, stream)
	}
	b := got.Body
	prompts := map[wire.Endpoint][2]string{ // system, first user text
		wire.ChatCompletions: {"Be brief.", "Weather in Paris?"},
		wire.Messages:        {"You are terse.", "Weather in Paris?"},
		wire.Responses:       {"You are Codex. [g]", "Fix the bug."},
	}[ep]
	if get(b, "system", 0, "text") != prompts[0] {
		t.Errorf("system %v, want %q", get(b, "system"), prompts[0])
	}
	if get(b, "messages", 0, "role") != "user" || get(b, "messages", 0, "content", 0, "text") != prompts[1] {
		t.Errorf("first message %v, want the user's %q", get(b, "messages", 0), prompts[1])
	}
	spec := get(b, "toolConfig", "tools", 0, "toolSpec")
	if get(spec, "name") != "get_weather" || get(spec, "inputSchema", "json", "type") != "object" {
		t.Errorf("tool spec %v", spec)
	}
	switch ep {
	case wire.Messages:
		use := get(b, "messages", 1, "content", 1, "toolUse")
		if get(b, "messages", 1, "content", 0, "text") != "Checking." || get(use, "toolUseId") != "toolu_9" ||
			get(use, "name") != "get_weather" || get(use, "input", "city") != "Paris" {
			t.Errorf("assistant turn %v", get(b, "messages", 1))
		}
		res := get(b, "messages", 2, "content", 0, "toolResult")
		if get(res, "toolUseId") != "toolu_9" || get(res, "content", 0, "text") != "sunny, 21C" {
			t.Errorf("tool result %v", get(b, "messages", 2))
		}
		if get(b, "inferenceConfig", "maxTokens") != float64(300) || get(b, "inferenceConfig", "stopSequences", 0) != "END" {
			t.Errorf("inferenceConfig %v", get(b, "inferenceConfig"))
		}
	case wire.ChatCompletions:
		if get(b, "inferenceConfig", "maxTokens") != float64(256) || get(b, "inferenceConfig", "temperature") != 0.2 {
			t.Errorf("inferenceConfig %v", get(b, "inferenceConfig"))
		}
	}
}

// compareBedrockAnswers checks a client's answer: text, calls with Bedrock's tool-use IDs,
// finish reason.
func compareBedrockAnswers(t *testing.T, got, want clientAnswer) {
	t.Helper()
	if got.text != want.text || got.finish != want.finish || len(got.calls) != len(want.calls) {
		t.Fatalf("client got text %q finish %q %d calls, want %q %q %d", got.text, got.finish, len(got.calls),
			want.text, want.finish, len(want.calls))
	}
	for i, c := range got.calls {
		if c.id != want.calls[i].id || c.name != want.calls[i].name || !jsonEqual(c.args, want.calls[i].args) {
			t.Errorf("call %d: %s %s(%s), want %s %s(%s)", i, c.id, c.name, c.args, want.calls[i].id, want.calls[i].name, want.calls[i].args)
		}
	}
}

// assertNoBedrockSecrets checks client-visible output for the test credentials.
func assertNoBedrockSecrets(t *testing.T, s string) {
	t.Helper()
	assertNoSecrets(t, s)
	for _, bad := range []string{testSecretKey, testSession, testBearerKey, testAccessKeyID} {
		if strings.Contains(s, bad) {
			t.Fatalf("client-visible output contains a credential: %s", s)
		}
	}
}

// One engine serves Bedrock providers in three regions at once, each with its own
// credential (an IAM key, temporary credentials, a Bedrock API key): every attempt reaches
// its provider's region, signed for that region or with that provider's bearer key.
func TestBedrockProvidersShareAPool(t *testing.T) {
	e := newCloudEngine(t)
	providers := []struct {
		fake       *fakeBedrock
		credential string
		auth       string
		stream     bool
	}{
		{newFakeBedrock(t, "us-east-1", converseJSON(bedrockTextJSON)), testCredentials(false), "sigv4:" + testAccessKeyID + ":us-east-1", false},
		{newFakeBedrock(t, "eu-west-1", bedrockStream(bedrockTextEvents, false, 0)), testBearerKey, "bearer:" + testBearerKey, true},
		{newFakeBedrock(t, "ap-southeast-2", converseJSON(bedrockTextJSON)), testCredentials(true), "sigv4:" + testAccessKeyID + ":ap-southeast-2", false},
	}
	providers[2].fake.session = true
	var wg sync.WaitGroup
	for i := range 30 {
		p := providers[i%len(providers)]
		wg.Go(func() {
			req := bedrockRequest(wire.OpenAI, wire.ChatCompletions, p.fake.region, p.credential, p.stream,
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
			if c.Auth != p.auth {
				t.Errorf("%s received credential %q, want %q", p.fake.region, c.Auth, p.auth)
			}
		}
		n := len(p.fake.calls)
		p.fake.mu.Unlock()
		if n != 10 {
			t.Errorf("%s received %d requests, want 10", p.fake.region, n)
		}
	}
}

// Another Converse model family (Amazon Nova) goes the same way.
func TestBedrockOtherModel(t *testing.T) {
	e := newCloudEngine(t)
	fake := newFakeBedrock(t, "us-east-1", bedrockStream(bedrockTextEvents, false, 0))
	req := bedrockRequest(wire.Anthropic, wire.Messages, "us-east-1", testBearerKey, true, anthropicReq(true))
	req.Model = "amazon.nova-pro-v1:0"
	rec := httptest.NewRecorder()
	res := e.Do(t.Context(), req, rec)
	wantCommitted(t, res, rec, "text/event-stream")
	if got := fake.last(t); got.Model != "amazon.nova-pro-v1:0" || !got.Stream {
		t.Errorf("upstream %+v", got)
	}
	if a := readAnswer(t, wire.Anthropic, wire.Messages, true, rec.Body.String()); a.text != "It is sunny in Paris." || a.finish != "end_turn" {
		t.Errorf("answer %+v", a)
	}
}

// The credential and region an attempt carries, and the ones refused before anything is
// sent: Bifrost would sign a document without keys with the dispatcher's own AWS identity,
// and send a model naming a region to that region.
func TestBedrockKey(t *testing.T) {
	tests := []struct {
		name, credential, region, model string
		bearer, access, secret, session string
		refused                         int // the refusal's status, 0 if accepted
	}{
		{name: "IAM key", credential: testCredentials(false), region: "eu-west-1", access: testAccessKeyID, secret: testSecretKey},
		{name: "temporary credentials", credential: " " + testCredentials(true) + "\n", region: "us-east-1",
			access: testAccessKeyID, secret: testSecretKey, session: testSession},
		{name: "API key", credential: testBearerKey, region: "us-east-1", bearer: testBearerKey},
		{name: "API key with a newline", credential: testBearerKey + "\n", region: "us-east-1", bearer: testBearerKey},
		{name: "no credential", credential: "", region: "us-east-1", refused: 500},
		{name: "document without a secret", credential: `{"access_key_id":"AKIA1"}`, region: "us-east-1", refused: 500},
		{name: "document in other names", credential: `{"accessKeyId":"AKIA1","secretAccessKey":"s"}`, region: "us-east-1", refused: 500},
		{name: "broken document", credential: `{"access_key_id":"AKIA1",`, region: "us-east-1", refused: 500},
		{name: "API key with a space", credential: "abc def", region: "us-east-1", refused: 500},
		{name: "no region", credential: testBearerKey, region: "", refused: 500},
		{name: "region not a region", credential: testBearerKey, region: "evil.example.com/x", refused: 500},
		{name: "model names a region", credential: testBearerKey, region: "us-east-1", model: "eu-west-1/" + bedrockClaude, refused: 400},
		{name: "inference profile", credential: testBearerKey, region: "eu-west-1", model: "eu.anthropic.claude-sonnet-4-20250514-v1:0", bearer: testBearerKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := bedrockRequest(wire.OpenAI, wire.ChatCompletions, tc.region, tc.credential, false, "{}")
			if tc.model != "" {
				req.Model = tc.model
			}
			k, f, err := bedrockKey(req)
			if tc.refused != 0 {
				if err == nil || f.status != tc.refused || f.retryable != (tc.refused >= 500) {
					t.Fatalf("failure %+v err %v, want a refusal with %d", f, err, tc.refused)
				}
				for _, s := range []string{testSecretKey, testBearerKey, "AKIA1", "abc def"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q quotes the credential", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			bk := k.BedrockKeyConfig
			if bk == nil || bk.Region == nil || bk.Region.GetValue() != tc.region {
				t.Fatalf("key region %+v, want %s", bk, tc.region)
			}
			var session string
			if bk.SessionToken != nil {
				session = bk.SessionToken.GetValue()
			}
			if k.Value.GetValue() != tc.bearer || bk.AccessKey.GetValue() != tc.access || bk.SecretKey.GetValue() != tc.secret || session != tc.session {
				t.Errorf("key: bearer %q access %q secret %q session %q", k.Value.GetValue(), bk.AccessKey.GetValue(), bk.SecretKey.GetValue(), session)
			}
			if k.ID != req.Provider.ID || len(k.Models) != 1 || k.Models[0] != "*" {
				t.Errorf("key ID %q models %v", k.ID, k.Models)
			}
		})
	}
}

// A refused attempt sends nothing and fails uncommitted in the client's envelope:
// retryable for a misconfigured provider (another may serve), not for the model name.
func TestBedrockRefusedAttempt(t *testing.T) {
	e := newCloudEngine(t)
	fake := newFakeBedrock(t, "us-east-1", converseJSON(bedrockTextJSON))
	for _, c := range geminiClients {
		for _, bad := range []struct {
			name, credential, model string
			status                  int
			code                    string
		}{
			{"keyless document", `{"session_token":"x"}`, bedrockClaude, 500, "provider_misconfigured"},
			{"model with a region", testBearerKey, "eu-west-1/" + bedrockClaude, 400, "invalid_request_error"},
		} {
			t.Run(c.name+" "+bad.name, func(t *testing.T) {
				req := bedrockRequest(c.format, c.ep, "us-east-1", bad.credential, true, geminiClientBodies[c.ep](true))
				req.Model = bad.model
				rec := httptest.NewRecorder()
				res := e.Do(t.Context(), req, rec)
				assertNothingWritten(t, rec)
				if res.Committed || res.Status != bad.status || res.Retryable != (bad.status >= 500) || res.Err == nil {
					t.Fatalf("result %+v", res)
				}
				b := decode(t, string(res.Body))
				if get(b, "error", "message") == nil || (c.format == wire.OpenAI && get(b, "error", "code") != bad.code) {
					t.Errorf("body %s", res.Body)
				}
			})
		}
	}
	if n := fake.count(); n != 0 {
		t.Errorf("the fake received %d requests", n)
	}
}

// The lane answers for every client format a Bedrock provider is asked; other endpoints
// are refused.
func TestBedrockPick(t *testing.T) {
	for _, tc := range []struct {
		format wire.Format
		ep     wire.Endpoint
		ok     bool
	}{
		{wire.OpenAI, wire.ChatCompletions, true}, {wire.Anthropic, wire.Messages, true}, {wire.OpenAI, wire.Responses, true},
		{wire.OpenAI, wire.Embeddings, false}, {wire.Anthropic, wire.CountTokens, false},
	} {
		req := request(tc.format, config.ProviderBedrock, "", false, "{}")
		req.Endpoint = tc.ep
		if d, ok := pick(req); ok != tc.ok || (ok && (d.upstream != "bedrock" || d.key == nil)) {
			t.Errorf("%s %s: ok %v upstream %s", tc.format, tc.ep, ok, d.upstream)
		}
	}
}

// Bedrock's figures without cache, and an answer cut at max tokens.
func TestBedrockUsageWithoutCache(t *testing.T) {
	e := newCloudEngine(t)
	usage := `"usage":{"inputTokens":37,"outputTokens":12,"totalTokens":49}`
	want := attempt.Usage{InputTokens: 37, OutputTokens: 12}
	fake := newFakeBedrock(t, "us-east-1", nil)
	for _, stream := range []bool{false, true} {
		if stream {
			fake.setReply(bedrockStream([][]byte{bedrockEvent("messageStart", `{"role":"assistant"}`),
				bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"It is"}}`),
				bedrockEvent("contentBlockStop", `{"contentBlockIndex":0}`), bedrockEvent("messageStop", `{"stopReason":"max_tokens"}`),
				bedrockEvent("metadata", `{`+usage+`,"metrics":{"latencyMs":1}}`)}, false, 0))
		} else {
			fake.setReply(converseJSON(`{"output":{"message":{"role":"assistant","content":[{"text":"It is"}]}},"stopReason":"max_tokens",` +
				usage + `,"metrics":{"latencyMs":1}}`))
		}
		for _, c := range geminiClients {
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), bedrockRequest(c.format, c.ep, "us-east-1", testBearerKey, stream, geminiClientBodies[c.ep](stream)), rec)
			wantFinish := map[wire.Endpoint]string{wire.ChatCompletions: "length", wire.Messages: "max_tokens",
				wire.Responses: "max_output_tokens"}[c.ep]
			if !res.Committed || res.Usage != want || strings.Join(res.FinishReasons, ",") != wantFinish {
				t.Errorf("%s stream %v: Usage %+v FinishReasons %v, want %+v [%s]", c.name, stream, res.Usage, res.FinishReasons, want, wantFinish)
			}
		}
	}
}
