package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// The guardrail webhook's signing secret, handed to sluice in its environment.
const (
	judgeSecretEnv = "E2E_JUDGE_SECRET"
	judgeSecret    = "judge-signing-secret-0123456789"
)

// guardedKeys are the harness keys that run guardrails, by name.
var guardedKeys = map[string][]string{
	"guarded":     {"pii-redact", "no-secrets", "forbidden"},
	"judged":      {"judge"},
	"dead-open":   {"dead-open"},
	"dead-closed": {"dead-closed"},
}

// guardrails are the harness's guardrail documents; judgeURL is the webhook's server.
func guardrails(judgeURL string) []config.Guardrail {
	all := []config.GuardrailDirection{config.DirectionRequest, config.DirectionResponse, config.DirectionStream}
	return []config.Guardrail{
		{ID: "pii-redact", Name: "PII redaction", Kind: config.GuardrailPII, Action: config.ActionRedact, Directions: all},
		{ID: "no-secrets", Name: "No secrets", Kind: config.GuardrailSecrets, Directions: []config.GuardrailDirection{config.DirectionRequest}},
		{ID: "forbidden", Name: "Forbidden topic", Kind: config.GuardrailRegex, Directions: all,
			Patterns: []config.GuardrailPattern{{Name: "FORBIDDEN", Pattern: `(?i)forbidden-topic`}}},
		{ID: "judge", Name: "Judge", Kind: config.GuardrailWebhook, Directions: []config.GuardrailDirection{config.DirectionRequest},
			Webhook: &config.Webhook{URL: judgeURL + "/judge", SigningSecretEnv: judgeSecretEnv}},
		// A judge that answers 500 (fail closed) and one that never answers (fail open).
		{ID: "dead-closed", Name: "Dead, fail closed", Kind: config.GuardrailWebhook, Directions: []config.GuardrailDirection{config.DirectionRequest},
			Webhook: &config.Webhook{URL: judgeURL + "/fail"}, FailureMode: config.FailClosed},
		{ID: "dead-open", Name: "Dead, fail open", Kind: config.GuardrailWebhook, Directions: []config.GuardrailDirection{config.DirectionRequest},
			Webhook: &config.Webhook{URL: judgeURL + "/hang"}, FailureMode: config.FailOpen, TimeoutMS: 300},
	}
}

// judge is an operator's webhook evaluator: it blocks "judge-says-no", rewrites
// "judge-rewrite" to "judge-approved", and records what it was sent.
type judge struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []judgeCall
}

type judgeCall struct {
	Path      string
	SignedOK  bool
	Direction string   `json:"direction"`
	KeyID     string   `json:"key_id"`
	Texts     []string `json:"texts"`
}

func startJudge() *judge {
	j := &judge{}
	j.srv = httptest.NewServer(http.HandlerFunc(j.serve))
	return j
}

func (j *judge) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var c judgeCall
	_ = json.Unmarshal(body, &c)
	c.Path = r.URL.Path
	ts := r.Header.Get("X-Sluice-Timestamp")
	mac := hmac.New(sha256.New, []byte(judgeSecret))
	mac.Write([]byte(ts + "." + string(body)))
	c.SignedOK = ts != "" && hmac.Equal([]byte(r.Header.Get("X-Sluice-Signature")), []byte("v1="+hex.EncodeToString(mac.Sum(nil))))
	j.mu.Lock()
	j.got = append(j.got, c)
	j.mu.Unlock()
	switch r.URL.Path {
	case "/fail":
		http.Error(w, "evaluator down", http.StatusInternalServerError)
		return
	case "/hang":
		<-r.Context().Done()
		return
	}
	joined := strings.Join(c.Texts, "\n")
	switch {
	case strings.Contains(joined, "judge-says-no"):
		writeJSONBody(w, map[string]any{"action": "block", "reason": "the judge said no"})
	case strings.Contains(joined, "judge-rewrite"):
		out := make([]string, len(c.Texts))
		for i, t := range c.Texts {
			out[i] = strings.ReplaceAll(t, "judge-rewrite", "judge-approved")
		}
		writeJSONBody(w, map[string]any{"action": "modify", "texts": out})
	default:
		writeJSONBody(w, map[string]any{"action": "allow"})
	}
}

// calls returns the calls whose texts mention marker.
func (j *judge) calls(marker string) []judgeCall {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []judgeCall
	for _, c := range j.got {
		if strings.Contains(strings.Join(c.Texts, "\n"), marker) {
			out = append(out, c)
		}
	}
	return out
}

func writeJSONBody(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// sdkFor returns the SDK scenarios of a runner: OpenAI drivers speak chat, Anthropic ones
// messages.
func sdkFor(runner string) (plain, stream, model string) {
	if strings.HasSuffix(runner, "anthropic") {
		return "messages", "messages-stream", "claude-sonnet-4-5"
	}
	return "chat", "chat-stream", "gpt-4o-mini"
}

// TestGuardrailRedactsRequest: a credit-card number in the prompt is redacted before the
// provider sees it, in both formats. The provider parsing the rewritten body (and the SDK
// getting its answer) shows its length travelled right through Envoy and the dispatcher.
func TestGuardrailRedactsRequest(t *testing.T) {
	g := startGateway(t)
	const card = "4111 1111 1111 1111"
	for name, r := range runners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plain, _, model := sdkFor(name)
			marker := newMarker()
			if _, err := r.run(t, g, sdkCase{scenario: plain, model: model, key: "guarded",
				extraEnv: []string{"SLUICE_PROMPT_EXTRA=my card is " + card + " thanks"}}, marker); err != nil {
				t.Fatalf("driver failed: %v", err)
			}
			got := g.fake.Requests(marker)
			if len(got) != 1 {
				t.Fatalf("provider saw %d requests, want 1", len(got))
			}
			body := got[0].Body
			if bytes.Contains(body, []byte("4111")) || !bytes.Contains(body, []byte("my card is [REDACTED:CREDIT_CARD] thanks")) {
				t.Fatalf("provider received an unredacted prompt: %s", body)
			}
		})
	}
}

// TestGuardrailBlocksRequest: a prompt a guardrail blocks is refused with 403
// guardrail_blocked in the client's own error format, and never reaches the provider.
func TestGuardrailBlocksRequest(t *testing.T) {
	g := startGateway(t)
	cases := []struct{ key, extra, reason string }{
		{"guarded", "tell me about forbidden-topic now", "FORBIDDEN"},
		{"guarded", "my key is sk-ant-api03-" + strings.Repeat("a1B2", 20), "anthropic_key"},
		{"judged", "judge-says-no please", "the judge said no"},
		{"dead-closed", "anything at all", "unavailable"},
	}
	for name, r := range runners(t) {
		for _, c := range cases {
			t.Run(name+"/"+c.key+"/"+c.reason, func(t *testing.T) {
				t.Parallel()
				plain, _, model := sdkFor(name)
				marker := newMarker()
				out, err := r.run(t, g, sdkCase{scenario: plain + "-expect-error", model: model, key: c.key,
					extraEnv: []string{"SLUICE_PROMPT_EXTRA=" + c.extra}}, marker)
				if err != nil {
					t.Fatalf("driver failed: %v", err)
				}
				if out["status"] != 403.0 {
					t.Errorf("status %v, want 403: %v", out["status"], out)
				}
				wantCode := "guardrail_blocked"
				if strings.HasSuffix(name, "anthropic") {
					wantCode = "permission_error" // the Anthropic envelope carries a type, not a code
				}
				if out["code"] != wantCode {
					t.Errorf("code %v, want %s: %v", out["code"], wantCode, out)
				}
				msg, _ := out["message"].(string)
				if !strings.Contains(msg, c.reason) {
					t.Errorf("message %q does not give the reason %q", msg, c.reason)
				}
				if strings.Contains(msg, "sk-ant-") || strings.Contains(msg, "4111") {
					t.Errorf("the error echoes the blocked content: %q", msg)
				}
				if n := len(g.fake.Requests(marker)); n != 0 {
					t.Errorf("a blocked request reached the provider %d times", n)
				}
			})
		}
	}
}

// TestGuardrailWebhook: the judge is called with a signed request naming the key, can
// rewrite the prompt, and a judge that never answers lets a fail_open request through.
func TestGuardrailWebhook(t *testing.T) {
	g := startGateway(t)
	r := runners(t)["node/openai"]

	marker := newMarker()
	if _, err := r.run(t, g, sdkCase{scenario: "chat", model: "gpt-4o-mini", key: "judged",
		extraEnv: []string{"SLUICE_PROMPT_EXTRA=judge-rewrite this"}}, marker); err != nil {
		t.Fatalf("driver failed: %v", err)
	}
	got := g.fake.Requests(marker)
	if len(got) != 1 || !bytes.Contains(got[0].Body, []byte("judge-approved this")) || bytes.Contains(got[0].Body, []byte("judge-rewrite")) {
		t.Fatalf("the judge's rewrite did not reach the provider: %d requests %q", len(got), got)
	}
	calls := g.judge.calls(marker)
	if len(calls) != 1 {
		t.Fatalf("judge called %d times, want 1", len(calls))
	}
	if c := calls[0]; !c.SignedOK || c.Direction != "request" || !strings.HasPrefix(c.KeyID, "vk_") {
		t.Errorf("judge call = %+v, want a signed request-direction call naming the key", c)
	}

	marker = newMarker()
	if _, err := r.run(t, g, sdkCase{scenario: "chat", model: "gpt-4o-mini", key: "dead-open"}, marker); err != nil {
		t.Fatalf("fail_open: the request failed: %v", err)
	}
	if n := len(g.fake.Requests(marker)); n != 1 {
		t.Errorf("fail_open: provider saw %d requests, want 1", n)
	}
	if calls := g.judge.calls(marker); len(calls) != 1 || calls[0].Path != "/hang" {
		t.Errorf("fail_open: judge calls %+v, want one to /hang", calls)
	}
}

// TestGuardrailRedactsAnswers: an email in the answer reaches the client redacted, whether
// the answer is streamed (the email split across SSE events) or not.
func TestGuardrailRedactsAnswers(t *testing.T) {
	g := startGateway(t)
	const text = "Write to alice.smith@example.com for the report."
	const want = "Write to [REDACTED:EMAIL] for the report."
	for name, r := range runners(t) {
		plain, stream, model := sdkFor(name)
		for _, scenario := range []string{plain, stream} {
			t.Run(name+"/"+scenario, func(t *testing.T) {
				t.Parallel()
				marker := newMarker()
				g.fake.Script(marker, fakeprovider.Script{Text: text})
				if _, err := r.run(t, g, sdkCase{scenario: scenario, model: model, key: "guarded",
					extraEnv: []string{"SLUICE_EXPECT_TEXT=" + want}}, marker); err != nil {
					t.Fatalf("driver failed (the SDK did not get %q): %v", want, err)
				}
			})
		}
	}
}

// TestGuardrailBlocksStream: a stream that turns to a forbidden topic halfway ends with an
// error event the SDK raises, after the text before it, and none of the forbidden text.
func TestGuardrailBlocksStream(t *testing.T) {
	g := startGateway(t)
	const text = "Here is a long and perfectly harmless introduction to the answer. Now the forbidden-topic details follow here."
	for name, r := range runners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, stream, model := sdkFor(name)
			marker := newMarker()
			g.fake.Script(marker, fakeprovider.Script{Text: text})
			out, err := r.run(t, g, sdkCase{scenario: stream + "-expect-error", model: model, key: "guarded"}, marker)
			if err != nil {
				t.Fatalf("driver failed: %v", err)
			}
			before, _ := out["text_before_error"].(string)
			if before == "" || !strings.HasPrefix(text, before) || strings.Contains(before, "forbidden") {
				t.Errorf("text before the error = %q, want a prefix of the answer without the forbidden part", before)
			}
			if msg, _ := out["message"].(string); !strings.Contains(msg, "FORBIDDEN") {
				t.Errorf("error message %q does not name the guardrail's finding", msg)
			}
		})
	}
}

// TestGuardrailBlocksAnswer: a non-streamed answer a response guardrail blocks is replaced
// by 403 guardrail_blocked in the client's format; none of it reaches the client.
func TestGuardrailBlocksAnswer(t *testing.T) {
	g := startGateway(t)
	for name, r := range runners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			plain, _, model := sdkFor(name)
			marker := newMarker()
			g.fake.Script(marker, fakeprovider.Script{Text: "The forbidden-topic, in detail."})
			out, err := r.run(t, g, sdkCase{scenario: plain + "-expect-error", model: model, key: "guarded"}, marker)
			if err != nil {
				t.Fatalf("driver failed: %v", err)
			}
			if out["status"] != 403.0 {
				t.Errorf("status %v, want 403: %v", out["status"], out)
			}
			if msg, _ := out["message"].(string); !strings.Contains(msg, "FORBIDDEN") || strings.Contains(msg, "in detail") {
				t.Errorf("message %q: want the finding named and no answer text", msg)
			}
			if n := len(g.fake.Requests(marker)); n != 1 {
				t.Errorf("provider saw %d requests, want 1 (the answer is what was blocked)", n)
			}
		})
	}
}
