package translate

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// Vertex's errors before anything reached the client leave the attempt uncommitted, with
// the provider's status, retryable for 429 and 5xx only, in the client's envelope, with
// Google's message and status name as the code. Claude on Vertex answers in Google's
// envelope for the platform's errors (quota, permission) and in Anthropic's for the model
// server's (overloaded_error), the same for a Claude model's streams, where Bifrost reads
// only Anthropic's envelope: the status holds, Google's message is not relayed.
func TestVertexErrorsBeforeCommit(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, nil)
	sa, _ := testServiceAccount()
	tests := []struct {
		name      string
		reply     http.HandlerFunc
		google    bool // Google's envelope
		claude    bool // only Claude answers so
		status    int
		retryable bool
		code      string
		message   string
	}{
		{"429 quota", geminiError(429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model."),
			true, false, 429, true, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model."},
		{"429 quota, listed", jsonReply(429, `[{"error":{"code":429,"message":"Resource exhausted. Please try again later.","status":"RESOURCE_EXHAUSTED"}}]`),
			true, false, 429, true, "RESOURCE_EXHAUSTED", "Resource exhausted. Please try again later."},
		{"503 unavailable", geminiError(503, "UNAVAILABLE", "The service is currently unavailable."),
			true, false, 503, true, "UNAVAILABLE", "The service is currently unavailable."},
		{"500 internal", geminiError(500, "INTERNAL", "Internal error encountered."), true, false, 500, true, "INTERNAL", "Internal error encountered."},
		{"400 invalid argument", geminiError(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
			true, false, 400, false, "INVALID_ARGUMENT", "Request contains an invalid argument."},
		{"403 permission denied", geminiError(403, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource."),
			true, false, 403, false, "PERMISSION_DENIED", "Permission 'aiplatform.endpoints.predict' denied on resource."},
		{"404 model not found", geminiError(404, "NOT_FOUND", "Publisher Model was not found or your project does not have access to it."),
			true, false, 404, false, "NOT_FOUND", "Publisher Model was not found or your project does not have access to it."},
		{"529 overloaded", anthropicErrorReply(529, "overloaded_error", "Overloaded"), false, true, 529, true, "overloaded_error", "Overloaded"},
		{"400 from Claude", anthropicErrorReply(400, "invalid_request_error", "messages.1.content.0: unexpected tool_use_id"),
			false, true, 400, false, "invalid_request_error", "messages.1.content.0: unexpected tool_use_id"},
		{"html 502", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(502)
			_, _ = w.Write([]byte("<html>Bad Gateway</html>"))
		}, false, false, 502, true, "", "The provider answered with HTTP 502."},
	}
	for _, fam := range vertexFamilies {
		for _, c := range geminiClients {
			for _, tc := range tests {
				if tc.claude && fam.publisher != "anthropic" {
					continue
				}
				for _, stream := range []bool{false, true} {
					name := fam.name + " " + c.name + " " + tc.name
					if stream {
						name += " stream"
					}
					t.Run(name, func(t *testing.T) {
						fake.setReply(tc.reply)
						code, message := tc.code, tc.message
						if fam.publisher == "anthropic" && stream && tc.google {
							code, message = "provider_error", fmt.Sprintf("The provider answered with HTTP %d.", tc.status)
						}
						rec := httptest.NewRecorder()
						res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", sa, fam.model, stream, geminiClientBodies[c.ep](stream)), rec)
						checkVertexFailure(t, tokens, rec, res, c.format, tc.status, tc.retryable, code, message)
					})
				}
			}
		}
	}
}

// checkVertexFailure asserts the attempt failed uncommitted as described, in the client's
// envelope; an empty code or message is not checked.
func checkVertexFailure(t *testing.T, tokens *fakeGoogleToken, rec *httptest.ResponseRecorder, res attempt.Result,
	format wire.Format, status int, retryable bool, code, message string) {
	t.Helper()
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
		t.Errorf("message %v, want %q", get(b, "error", "message"), message)
	}
	if code != "" && format == wire.OpenAI && get(b, "error", "code") != code {
		t.Errorf("code %v, want %q", get(b, "error", "code"), code)
	}
	assertNoVertexSecrets(t, tokens, string(res.Body))
	assertNoVertexCredentials(t, tokens, res.Err.Error())
}

// A token exchange that fails (a revoked or deleted key, Google's token endpoint down)
// fails the attempt before anything is sent to Vertex: uncommitted, retryable (another
// provider may serve), a 502 in the client's envelope; the token endpoint's answer is in
// Result.Err for the logs only.
func TestVertexTokenExchangeFails(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, jsonReply(200, claudeTextJSON))
	for _, refusal := range []struct {
		name  string
		reply http.HandlerFunc
	}{
		{"invalid grant", jsonReply(400, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)},
		{"disabled account", jsonReply(401, `{"error":"invalid_client","error_description":"The OAuth client was disabled."}`)},
		{"token endpoint unavailable", jsonReply(503, `{"error":"temporarily_unavailable"}`)},
	} {
		for _, fam := range vertexFamilies {
			for _, c := range geminiClients {
				for _, stream := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s %s %s stream %v", refusal.name, fam.name, c.name, stream), func(t *testing.T) {
						tokens.mu.Lock()
						tokens.refuse = refusal.reply
						tokens.mu.Unlock()
						sa, email := testServiceAccount()
						rec := httptest.NewRecorder()
						res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", sa, fam.model, stream, geminiClientBodies[c.ep](stream)), rec)
						checkVertexFailure(t, tokens, rec, res, c.format, http.StatusBadGateway, true, "upstream_error", "")
						if !strings.Contains(res.Err.Error(), "token") || tokens.exchangesFor(email) != 1 {
							t.Errorf("Err %v after %d exchanges, want a token error after 1", res.Err, tokens.exchangesFor(email))
						}
					})
				}
			}
		}
	}
	if n := fake.count(); n != 0 {
		t.Errorf("Vertex received %d requests without a token", n)
	}
}

// Bifrost exchanges the key with context.Background() and http.DefaultClient, which has
// no timeout: a token endpoint that never answers holds the Bifrost worker (and every
// attempt with that credential, behind the token source's lock). The attempt itself still
// ends with its context, uncommitted. (A Claude model: with a Gemini model Bifrost's
// converter writes the request's model while Bifrost's caller reads it after the context
// ends, a data race in Bifrost the race detector reports.)
func TestVertexTokenEndpointHangs(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the token server closes (cleanups run last first)
	tokens.refuse = func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		jsonReply(503, `{"error":"temporarily_unavailable"}`)(w, r)
	}
	newFakeVertex(t, "us-east5", tokens, jsonReply(200, claudeTextJSON))
	sa, _ := testServiceAccount()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rec := httptest.NewRecorder()
	done := make(chan attempt.Result, 1)
	go func() {
		done <- e.Do(ctx, vertexRequest(wire.OpenAI, wire.ChatCompletions, "us-east5", sa, vertexClaude, false,
			geminiClientBodies[wire.ChatCompletions](false)), rec)
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the token exchange never reached the token endpoint")
	}
	cancel()
	select {
	case res := <-done:
		checkVertexFailure(t, tokens, rec, res, wire.OpenAI, 499, false, "client_closed_request", "")
	case <-time.After(5 * time.Second):
		t.Fatal("the attempt waits for the token exchange after its context ended")
	}
}

// A stream that breaks after the client got its first bytes ends with the client's error
// event (OpenAI chat: an error chunk and no [DONE]; Anthropic: event: error and no
// message_stop; Responses: response.failed), after what arrived before the break; the
// Result is committed with the error. Claude's and Gemini's streams alike.
func TestVertexStreamBreaksAfterCommit(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, nil)
	sa, _ := testServiceAccount()
	claudeHead := claudeTextEvents[:5] // "It is sunny "
	geminiHead := geminiFrames(geminiTextChunks[:2])
	with := func(head []string, more ...string) []string { return append(append([]string{}, head...), more...) }
	breaks := map[string][]struct {
		name  string
		reply http.HandlerFunc
	}{
		"claude": {
			{"connection aborted", sseReply(claudeHead, true)},
			{"connection aborted inside an event", sseReply(with(claudeHead, claudeTextEvents[5][:40]), true)},
			{"clean end without message_stop", sseReply(claudeHead, false)},
			{"error event", sseReply(with(claudeHead, claudeEvent("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)), false)},
		},
		"gemini": {
			{"connection aborted", sseReply(geminiHead, true)},
			{"connection aborted inside an event", sseReply(with(geminiHead, geminiFrames(geminiTextChunks[2:])[0][:30]), true)},
			{"clean end without a finish reason", sseReply(geminiHead, false)},
			{"error chunk", sseReply(with(geminiHead, `data: {"error":{"code":500,"message":"Internal error.","status":"INTERNAL"}}`+"\r\n\r\n"), false)},
		},
	}
	for _, fam := range vertexFamilies {
		for _, c := range geminiClients {
			for _, br := range breaks[fam.name] {
				t.Run(fam.name+" "+c.name+" "+br.name, func(t *testing.T) {
					fake.setReply(br.reply)
					rec := httptest.NewRecorder()
					res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", sa, fam.model, true, geminiClientBodies[c.ep](true)), rec)
					if !res.Committed || res.Err == nil || res.FinishReasons != nil {
						t.Fatalf("result %+v, want committed with an error and no finish reason", res)
					}
					body := rec.Body.String()
					if !strings.Contains(body, "It is ") || !strings.Contains(body, "sunny ") || strings.Contains(body, "in Paris") {
						t.Errorf("text before the break lost, or after it sent: %s", body)
					}
					checkStreamEndsInError(t, c.format, c.ep, body)
					assertNoVertexSecrets(t, tokens, body)
				})
			}
		}
	}
}

// checkStreamEndsInError asserts a client stream ends with the client's error event.
func checkStreamEndsInError(t *testing.T, format wire.Format, ep wire.Endpoint, body string) {
	t.Helper()
	switch {
	case ep == wire.Responses:
		evs, final := checkResponsesStream(t, body)
		if evs[len(evs)-1].typ != "response.failed" || get(final, "error", "message") == nil {
			t.Fatalf("stream does not end with response.failed: %v", types(evs))
		}
	case format == wire.OpenAI:
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
}

// A client parsing a rendered Vertex stream (Claude's, text with multi-byte characters
// and two tool calls) in two pieces split at any byte, or byte by byte, sees the same
// events as one parsing it whole.
func TestVertexStreamSplitAnywhere(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	events := append([]string{
		claudeStart,
		claudeEvent("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Héllo — ünïcode\nand \"quotes\" "}}`),
		claudeEvent("content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"then a call."}}`),
	}, claudeToolEvents[3:]...)
	newFakeVertex(t, "us-east5", tokens, sseReply(events, false))
	sa, _ := testServiceAccount()
	for _, c := range geminiClients[:2] {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", sa, vertexClaude, true, geminiClientBodies[c.ep](true)), rec)
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

// The service-account key, the signed assertion and the access tokens reach Google's token
// endpoint and Vertex's Authorization header only: never a log line, even at debug level,
// nor anything the client sees or Result.Err, whatever the attempt's end.
func TestVertexCredentialsNeverLogged(t *testing.T) {
	var logs syncBuffer
	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Concurrency: 2, QueueSize: 8, RequestTimeout: 10 * time.Second, caCertPEM: testPKI.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, nil)
	sa, _ := testServiceAccount()
	broken := strings.Replace(sa, `"type":"service_account"`, `"type":"external_account"`, 1)
	for _, reply := range []http.HandlerFunc{jsonReply(200, claudeToolJSON), sseReply(claudeToolEvents[:5], true),
		geminiError(401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
		geminiError(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")} {
		fake.setReply(reply)
		for _, cred := range []string{sa, broken} {
			for _, c := range geminiClients {
				for _, stream := range []bool{false, true} {
					rec := httptest.NewRecorder()
					res := e.Do(t.Context(), vertexRequest(c.format, c.ep, "us-east5", cred, vertexClaude, stream, geminiClientBodies[c.ep](stream)), rec)
					assertNoVertexSecrets(t, tokens, rec.Body.String()+string(res.Body))
					if res.Err != nil {
						assertNoVertexCredentials(t, tokens, res.Err.Error())
					}
				}
			}
		}
	}
	tokens.mu.Lock()
	tokens.refuse = jsonReply(400, `{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`)
	tokens.mu.Unlock()
	fresh, _ := testServiceAccount()
	res := e.Do(t.Context(), vertexRequest(wire.OpenAI, wire.ChatCompletions, "us-east5", fresh, vertexGemini, false,
		geminiClientBodies[wire.ChatCompletions](false)), httptest.NewRecorder())
	assertNoVertexSecrets(t, tokens, string(res.Body))
	assertNoVertexCredentials(t, tokens, res.Err.Error())
	if len(tokens.issued()) == 0 {
		t.Fatal("no token was issued: the test proves nothing")
	}
	if !strings.Contains(logs.String(), "level=DEBUG") {
		t.Fatal("nothing was logged at debug level: the test proves nothing")
	}
	assertNoVertexCredentials(t, tokens, logs.String())
}
