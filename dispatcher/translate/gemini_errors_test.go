package translate

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/wire"
)

// Gemini's errors before anything reached the client leave the attempt uncommitted, with
// the provider's status, retryable for 429 and 5xx only, and Gemini's message in the
// client's envelope, its status name as the code. A 200 stream whose first event is an
// error is the same.
func TestGeminiErrorsBeforeCommit(t *testing.T) {
	e := newEngine(t)
	fake := newFakeGemini(t, "", nil)
	tests := []struct {
		name      string
		reply     http.HandlerFunc
		status    int
		retryable bool
		code      string
		message   string
	}{
		{"429 resource exhausted", geminiError(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
			429, true, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."},
		{"503 unavailable", geminiError(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
			503, true, "UNAVAILABLE", "The model is overloaded. Please try again later."},
		{"500 internal", geminiError(500, "INTERNAL", "An internal error has occurred."), 500, true, "INTERNAL", "An internal error has occurred."},
		{"400 invalid argument", geminiError(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
			400, false, "INVALID_ARGUMENT", "Request contains an invalid argument."},
		{"403 permission denied", geminiError(403, "PERMISSION_DENIED", "Permission denied."), 403, false, "PERMISSION_DENIED", "Permission denied."},
		{"404 model not found", geminiError(404, "NOT_FOUND", "models/upstream-model is not found for API version v1beta."),
			404, false, "NOT_FOUND", "models/upstream-model is not found for API version v1beta."},
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
					checkGeminiFailure(t, e, c.format, c.ep, fake.baseURL(), stream, tc.status, tc.retryable, tc.code, tc.message)
				})
			}
		}
	}
	for _, c := range geminiClients {
		t.Run(c.name+" error as the first stream event", func(t *testing.T) {
			fake.setReply(geminiSSE([]string{`{"error":{"code":429,"message":"Quota exceeded.","status":"RESOURCE_EXHAUSTED"}}`}, false))
			checkGeminiFailure(t, e, c.format, c.ep, fake.baseURL(), true, 429, true, "", "")
		})
	}
	t.Run("wrong API key", func(t *testing.T) {
		fake.setReply(geminiJSON(geminiTextJSON))
		req := geminiRequest(wire.OpenAI, wire.ChatCompletions, fake.baseURL(), false, geminiClientBodies[wire.ChatCompletions](false))
		req.Provider.APIKey = "AIza-wrong"
		res := e.Do(t.Context(), req, httptest.NewRecorder())
		if res.Committed || res.Status != 400 || res.Retryable {
			t.Fatalf("result %+v, want Gemini's 400, not retryable", res)
		}
	})
}

// checkGeminiFailure runs one attempt and asserts it failed uncommitted as described; an
// empty code or message is not checked.
func checkGeminiFailure(t *testing.T, e *Engine, format wire.Format, ep wire.Endpoint, baseURL string, stream bool,
	status int, retryable bool, code, message string) {
	t.Helper()
	rec := httptest.NewRecorder()
	res := e.Do(t.Context(), geminiRequest(format, ep, baseURL, stream, geminiClientBodies[ep](stream)), rec)
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
		t.Errorf("message %v, want Gemini's %q", get(b, "error", "message"), message)
	}
	if code != "" && get(b, "error", "code") != code {
		t.Errorf("code %v, want %q", get(b, "error", "code"), code)
	}
	assertNoSecrets(t, string(res.Body))
}

// A stream that breaks after the client got its first bytes ends with the client's error
// event (OpenAI chat: an error chunk and no [DONE]; Anthropic: event: error and no
// message_stop; Responses: response.failed), after what arrived before the break; the
// Result is committed with the error.
func TestGeminiStreamBreaksAfterCommit(t *testing.T) {
	e := newEngine(t)
	fake := newFakeGemini(t, "", nil)
	head := geminiTextChunks[:2] // "It is sunny "
	breaks := []struct {
		name  string
		reply http.HandlerFunc
	}{
		{"connection aborted", geminiSSE(head, true)},
		{"clean EOF without a finish reason", geminiSSE(head, false)},
		{"error event", geminiSSE(append(append([]string{}, head...),
			`{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`), false)},
	}
	for _, c := range geminiClients {
		for _, br := range breaks {
			t.Run(c.name+" "+br.name, func(t *testing.T) {
				fake.setReply(br.reply)
				rec := httptest.NewRecorder()
				res := e.Do(t.Context(), geminiRequest(c.format, c.ep, fake.baseURL(), true, geminiClientBodies[c.ep](true)), rec)
				if !res.Committed || res.Err == nil || res.FinishReasons != nil {
					t.Fatalf("result %+v, want committed with an error and no finish reason", res)
				}
				body := rec.Body.String()
				if !strings.Contains(body, "It is ") || !strings.Contains(body, "sunny ") {
					t.Errorf("text before the break lost: %s", body)
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
				assertNoSecrets(t, body)
			})
		}
	}
}

// A client parsing a rendered Gemini stream in two pieces split at any byte, or byte by
// byte, sees the same events as one parsing it whole (Anthropic and OpenAI chat framing;
// Responses framing is the same code as for Anthropic providers).
func TestGeminiStreamSplitAnywhere(t *testing.T) {
	e := newEngine(t)
	chunks := []string{
		geminiAnswer(`{"text":"Héllo — ünïcode\nand \"quotes\" "}`, "", geminiPartialUsage),
		geminiAnswer(`{"text":"then a call."},`+geminiCalls, "STOP", geminiUsage),
	}
	fake := newFakeGemini(t, "", geminiSSE(chunks, false))
	for _, c := range geminiClients[:2] {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), geminiRequest(c.format, c.ep, fake.baseURL(), true, geminiClientBodies[c.ep](true)), rec)
			wantCommitted(t, res, rec, "text/event-stream")
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
