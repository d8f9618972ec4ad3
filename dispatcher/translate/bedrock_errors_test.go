package translate

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/wire"
)

// Bedrock's errors before anything reached the client leave the attempt uncommitted, with
// the provider's status, retryable for 429 and 5xx only, and Bedrock's message in the
// client's envelope, the exception name as the code. A 200 stream whose first event is an
// exception is the same.
func TestBedrockErrorsBeforeCommit(t *testing.T) {
	e := newCloudEngine(t)
	fake := newFakeBedrock(t, "us-east-1", nil)
	tests := []struct {
		name      string
		reply     http.HandlerFunc
		status    int
		retryable bool
		code      string
		message   string
	}{
		{"429 throttling", bedrockError(429, "ThrottlingException", "Too many requests, please wait before trying again."),
			429, true, "ThrottlingException", "Too many requests, please wait before trying again."},
		{"503 service unavailable", bedrockError(503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
			503, true, "ServiceUnavailableException", "Bedrock is unable to process your request."},
		{"500 internal", bedrockError(500, "InternalServerException", "The server encountered an internal error."),
			500, true, "InternalServerException", "The server encountered an internal error."},
		{"400 validation", bedrockError(400, "ValidationException", "The provided model identifier is invalid."),
			400, false, "ValidationException", "The provided model identifier is invalid."},
		{"403 access denied", bedrockError(403, "AccessDeniedException", "You don't have access to the model with the specified model ID."),
			403, false, "AccessDeniedException", "You don't have access to the model with the specified model ID."},
		{"404 not found", bedrockError(404, "ResourceNotFoundException", "Model not found."), 404, false, "ResourceNotFoundException", "Model not found."},
		{"html 502", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("<html>Bad Gateway</html>"))
		}, 502, true, "", ""},
	}
	for _, c := range geminiClients {
		for _, tc := range tests {
			for _, stream := range []bool{false, true} {
				name := c.name + " " + tc.name
				if stream {
					name += " stream"
				}
				t.Run(name, func(t *testing.T) {
					fake.setReply(tc.reply)
					checkBedrockFailure(t, e, c.format, c.ep, stream, tc.status, tc.retryable, tc.code, tc.message)
				})
			}
		}
	}
	for _, c := range geminiClients {
		t.Run(c.name+" exception as the first stream event", func(t *testing.T) {
			fake.setReply(bedrockStream([][]byte{bedrockException("throttlingException", "Too many tokens, please wait before trying again.")}, false, 0))
			checkBedrockFailure(t, e, c.format, c.ep, true, 429, true, "", "")
		})
	}
	t.Run("unknown access key", func(t *testing.T) {
		fake.setReply(converseJSON(bedrockTextJSON))
		req := bedrockRequest(wire.OpenAI, wire.ChatCompletions, "us-east-1", `{"access_key_id":"AKIAOTHER","secret_access_key":"x"}`,
			false, geminiClientBodies[wire.ChatCompletions](false))
		res := e.Do(t.Context(), req, httptest.NewRecorder())
		if res.Committed || res.Status != 403 || res.Retryable {
			t.Fatalf("result %+v, want Bedrock's 403, not retryable", res)
		}
	})
}

// checkBedrockFailure runs one attempt and asserts it failed uncommitted as described; an
// empty code or message is not checked.
func checkBedrockFailure(t *testing.T, e *Engine, format wire.Format, ep wire.Endpoint, stream bool,
	status int, retryable bool, code, message string) {
	t.Helper()
	rec := httptest.NewRecorder()
	res := e.Do(t.Context(), bedrockRequest(format, ep, "us-east-1", testCredentials(false), stream, geminiClientBodies[ep](stream)), rec)
	assertNothingWritten(t, rec)
	if res.Committed || res.Status != status || res.Retryable != retryable || res.Err == nil {
		t.Fatalf("result: committed %v status %d retryable %v err %v, want uncommitted %d retryable %v",
			res.Committed, res.Status, res.Retryable, res.Err, status, retryable)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	b := decode(t, string(res.Body))
	if format == wire.Anthropic && get(b, "type") != "error" {
		t.Fatalf("not an Anthropic error envelope: %s", res.Body)
	}
	if get(b, "error", "type") == nil || get(b, "error", "message") == "" {
		t.Fatalf("not an error envelope: %s", res.Body)
	}
	if message != "" && get(b, "error", "message") != message {
		t.Errorf("message %v, want Bedrock's %q", get(b, "error", "message"), message)
	}
	if code != "" && format == wire.OpenAI && get(b, "error", "code") != code {
		t.Errorf("code %v, want %q", get(b, "error", "code"), code)
	}
	assertNoBedrockSecrets(t, string(res.Body))
}

// A stream that breaks after the client got its first bytes ends with the client's error
// event (OpenAI chat: an error chunk and no [DONE]; Anthropic: event: error and no
// message_stop; Responses: response.failed), after what arrived before the break; the
// Result is committed with the error.
func TestBedrockStreamBreaksAfterCommit(t *testing.T) {
	e := newCloudEngine(t)
	fake := newFakeBedrock(t, "us-east-1", nil)
	head := bedrockTextEvents[:3] // "It is sunny "
	withMore := func(more ...[]byte) [][]byte { return append(append([][]byte{}, head...), more...) }
	breaks := []struct {
		name  string
		reply http.HandlerFunc
	}{
		{"connection aborted between events", bedrockStream(head, true, 0)},
		{"connection aborted inside an event", bedrockStream(withMore(bedrockTextEvents[3]), false, 20)},
		{"clean end without messageStop", bedrockStream(head, false, 0)},
		{"exception event", bedrockStream(withMore(bedrockException("modelStreamErrorException", "The model stream failed.")), false, 0)},
		{"corrupt event", bedrockStream(withMore(corrupt(bedrockTextEvents[3])), false, 0)},
	}
	for _, c := range geminiClients {
		for _, br := range breaks {
			t.Run(c.name+" "+br.name, func(t *testing.T) {
				fake.setReply(br.reply)
				rec := httptest.NewRecorder()
				res := e.Do(t.Context(), bedrockRequest(c.format, c.ep, "us-east-1", testCredentials(false), true, geminiClientBodies[c.ep](true)), rec)
				if !res.Committed || res.Err == nil || res.FinishReasons != nil {
					t.Fatalf("result %+v, want committed with an error and no finish reason", res)
				}
				body := rec.Body.String()
				if !strings.Contains(body, "It is ") || !strings.Contains(body, "sunny ") || strings.Contains(body, "in Paris") {
					t.Errorf("text before the break lost, or after it sent: %s", body)
				}
				switch {
				case c.ep == wire.Responses:
					evs, final := checkResponsesStream(t, body)
					if evs[len(evs)-1].typ != "response.failed" || get(final, "error", "message") == nil {
						t.Fatalf("stream does not end with response.failed: %v", types(evs))
					}
				case c.format == wire.OpenAI:
					evs := parseSSE(t, body)
					if strings.Contains(body, "[DONE]") || get(decode(t, evs[len(evs)-1].Data), "error", "message") == nil {
						t.Fatalf("stream does not end with an error chunk: %s", body)
					}
				default:
					evs := parseSSE(t, body)
					last := evs[len(evs)-1]
					if strings.Contains(body, "message_stop") || last.Event != "error" || get(decode(t, last.Data), "error", "type") == nil {
						t.Fatalf("stream does not end with event: error: %s", body)
					}
				}
				assertNoBedrockSecrets(t, body)
			})
		}
	}
}

// corrupt returns an event-stream message whose message CRC does not match.
func corrupt(msg []byte) []byte {
	out := append([]byte{}, msg...)
	out[len(out)-1] ^= 0xff
	return out
}

// A client parsing a rendered Bedrock stream in two pieces split at any byte, or byte by
// byte, sees the same events as one parsing it whole (Anthropic and OpenAI chat framing;
// Responses framing is the same code as for Anthropic providers).
func TestBedrockStreamSplitAnywhere(t *testing.T) {
	e := newCloudEngine(t)
	events := append([][]byte{
		bedrockEvent("messageStart", `{"role":"assistant"}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Héllo — ünïcode\nand \"quotes\" "}}`),
		bedrockEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"then a call."}}`),
	}, bedrockToolEvents[2:]...)
	fake := newFakeBedrock(t, "us-east-1", bedrockStream(events, false, 0))
	for _, c := range geminiClients[:2] {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), bedrockRequest(c.format, c.ep, "us-east-1", testBearerKey, true, geminiClientBodies[c.ep](true)), rec)
			wantCommitted(t, res, rec, "text/event-stream")
			if fake.last(t).Auth != "bearer:"+testBearerKey {
				t.Errorf("credential %q", fake.last(t).Auth)
			}
			body := rec.Body.Bytes()
			var whole sseParser
			whole.feed(body)
			if len(whole.events) < 8 {
				t.Fatalf("only %d events", len(whole.events))
			}
			got := readAnswer(t, c.format, c.ep, true, string(body))
			if got.text != "Héllo — ünïcode\nand \"quotes\" then a call." || len(got.calls) != 2 {
				t.Fatalf("answer %+v", got)
			}
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
				t.Fatal("byte by byte: events differ")
			}
		})
	}
}

// The provider's credentials reach Bedrock in the signature (the access key ID and the
// session token as AWS requires) or the Authorization header only: never a log line, even
// at debug level, nor anything the client sees.
func TestBedrockCredentialsNeverLogged(t *testing.T) {
	var logs syncBuffer
	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Concurrency: 2, QueueSize: 8, RequestTimeout: 10 * time.Second, caCertPEM: testPKI.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	fake := newFakeBedrock(t, "us-east-1", nil)
	fake.session = true
	for _, reply := range []http.HandlerFunc{converseJSON(bedrockToolJSON), bedrockStream(bedrockToolEvents[:4], true, 0),
		bedrockError(429, "ThrottlingException", "Too many requests.")} {
		fake.setReply(reply)
		for _, cred := range []string{testCredentials(true), testBearerKey, `{"access_key_id":"` + testAccessKeyID + `"}`} {
			for _, c := range geminiClients {
				for _, stream := range []bool{false, true} {
					rec := httptest.NewRecorder()
					res := e.Do(t.Context(), bedrockRequest(c.format, c.ep, "us-east-1", cred, stream, geminiClientBodies[c.ep](stream)), rec)
					assertNoBedrockSecrets(t, rec.Body.String()+string(res.Body))
					if res.Err != nil {
						for _, s := range []string{testSecretKey, testSession, testBearerKey} {
							if strings.Contains(res.Err.Error(), s) {
								t.Errorf("Result.Err holds a credential: %v", res.Err)
							}
						}
					}
				}
			}
		}
	}
	got := logs.String()
	for _, s := range []string{testSecretKey, testSession, testBearerKey} {
		if strings.Contains(got, s) {
			t.Fatalf("a credential was logged:\n%s", got)
		}
	}
}
