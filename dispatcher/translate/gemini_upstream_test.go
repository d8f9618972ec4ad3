package translate

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// The pool and the URL an attempt goes to, for the base URLs an operator may configure.
func TestGeminiUpstream(t *testing.T) {
	tests := []struct {
		base, model string
		stream      bool
		pool        schemas.ModelProvider
		target      string
	}{
		{"", "gemini-2.5-flash", false, schemas.Gemini,
			"//generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"},
		{"https://generativelanguage.googleapis.com/", "gemini-2.5-pro", true, schemas.Gemini,
			"//generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"},
		{"https://generativelanguage.googleapis.com/v1alpha", "models/gemini-x", false, schemas.Gemini,
			"//generativelanguage.googleapis.com/v1alpha/models/gemini-x:generateContent"},
		{"http://10.0.0.7:8080/gemini", "tunedModels/my-tune", false, geminiHTTP,
			"//10.0.0.7:8080/gemini/v1beta/tunedModels/my-tune:generateContent"},
		{"HTTP://proxy.local/v1", "a b?c", false, geminiHTTP, "//proxy.local/v1/models/a%20b%3Fc:generateContent"},
	}
	for _, tc := range tests {
		pool, target := geminiUpstream(tc.base)
		got := target(&attempt.Request{Model: tc.model, Stream: tc.stream})
		if pool != tc.pool || got != tc.target {
			t.Errorf("base %q model %q: pool %s target %q, want %s %q", tc.base, tc.model, pool, got, tc.pool, tc.target)
		}
		if geminiPools[pool]+got == "" || !strings.HasPrefix(geminiPools[pool], "http") {
			t.Errorf("pool %s has no scheme", pool)
		}
	}
}

// One engine serves several Gemini providers at once, each attempt going to its own
// provider's base URL (with a path prefix, or naming the API version) through the one
// http pool, and an https provider through the https pool.
func TestGeminiProvidersShareAPool(t *testing.T) {
	tlsFake := &fakeGemini{t: t, reply: geminiJSON(geminiTextJSON)}
	tlsFake.Server = httptest.NewTLSServer(tlsFake)
	t.Cleanup(tlsFake.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsFake.Certificate().Raw})

	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Concurrency: 4,
		QueueSize: 64, RequestTimeout: 10 * time.Second, caCertPEM: string(ca)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	prefixed := newFakeGemini(t, "/proxy/gemini", geminiJSON(geminiTextJSON))
	versioned := newFakeGemini(t, "", geminiSSE(geminiTextChunks, false))
	providers := []struct {
		fake   *fakeGemini
		base   string
		stream bool
	}{
		{prefixed, prefixed.baseURL(), false},
		{versioned, versioned.URL + "/v1beta", true},
		{tlsFake, tlsFake.URL, false},
	}
	if !strings.HasPrefix(tlsFake.URL, "https://") {
		t.Fatalf("TLS fake at %s", tlsFake.URL)
	}
	var wg sync.WaitGroup
	for i := range 30 {
		p := providers[i%len(providers)]
		wg.Go(func() {
			req := geminiRequest(wire.OpenAI, wire.ChatCompletions, p.base, p.stream, geminiClientBodies[wire.ChatCompletions](p.stream))
			req.Provider.ID = fmt.Sprintf("gemini-%d", i%len(providers))
			req.Model = fmt.Sprintf("model-%d", i%len(providers))
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), req, rec)
			if !res.Committed || res.Err != nil || !strings.Contains(rec.Body.String(), "sunny") {
				t.Errorf("provider %s: result %+v body %s", req.Provider.ID, res, rec.Body)
			}
		})
	}
	wg.Wait()
	for i, p := range providers {
		p.fake.mu.Lock()
		n := len(p.fake.calls)
		for _, c := range p.fake.calls {
			if c.Model != fmt.Sprintf("model-%d", i) {
				t.Errorf("provider %d received model %s", i, c.Model)
			}
		}
		p.fake.mu.Unlock()
		if n != 10 {
			t.Errorf("provider %d received %d requests, want 10", i, n)
		}
	}
}

// The tool-call IDs the client got bring Gemini's thought signatures back: on the next
// turn the model's calls carry their signatures (Bifrost's placeholder for the unsigned
// one) and each result names its function, for OpenAI chat and Responses clients.
func TestGeminiToolCallRoundTrip(t *testing.T) {
	e := newEngine(t)
	fake := newFakeGemini(t, "", geminiJSON(geminiToolJSON))
	first := func(ep wire.Endpoint) clientAnswer {
		rec := httptest.NewRecorder()
		res := e.Do(t.Context(), geminiRequest(wire.OpenAI, ep, fake.baseURL(), false, geminiClientBodies[ep](false)), rec)
		wantCommitted(t, res, rec, "application/json")
		a := readAnswer(t, wire.OpenAI, ep, false, rec.Body.String())
		if len(a.calls) != 2 {
			t.Fatalf("first turn: %+v", a)
		}
		return a
	}
	checkSecondTurn := func(t *testing.T, a clientAnswer) {
		t.Helper()
		b := fake.last(t).Body
		var model, results any
		for i := 0; get(b, "contents", i) != nil; i++ {
			c := get(b, "contents", i)
			if get(c, "role") == "model" {
				model = c
			}
			if get(c, "parts", 0, "functionResponse") != nil {
				results = c
			}
		}
		var calls []any
		for i := 0; get(model, "parts", i) != nil; i++ {
			if p := get(model, "parts", i); get(p, "functionCall") != nil {
				calls = append(calls, p)
			}
		}
		if len(calls) != 2 || get(calls[0], "thoughtSignature") != "c2lnLTE=" || get(calls[0], "functionCall", "args", "city") != "Paris" ||
			get(calls[1], "thoughtSignature") != "skip_thought_signature_validator" {
			t.Fatalf("model turn %v", model)
		}
		for i, c := range a.calls {
			r := get(results, "parts", i, "functionResponse")
			if get(r, "name") != "get_weather" || get(r, "id") != c.id {
				t.Errorf("function response %d: %v, want get_weather for %s", i, r, c.id)
			}
		}
	}

	t.Run("openai chat", func(t *testing.T) {
		a := first(wire.ChatCompletions)
		body := fmt.Sprintf(`{"model":"gemini","messages":[{"role":"user","content":"Weather in Paris and London?"},
			{"role":"assistant","content":"Checking.","tool_calls":[
			 {"id":%q,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			 {"id":%q,"type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"London\"}"}}]},
			{"role":"tool","tool_call_id":%q,"content":"sunny"},{"role":"tool","tool_call_id":%q,"content":"rain"}]}`,
			a.calls[0].id, a.calls[1].id, a.calls[0].id, a.calls[1].id)
		res := e.Do(t.Context(), geminiRequest(wire.OpenAI, wire.ChatCompletions, fake.baseURL(), false, body), httptest.NewRecorder())
		if !res.Committed {
			t.Fatalf("second turn: %+v", res)
		}
		checkSecondTurn(t, a)
	})
	t.Run("openai responses", func(t *testing.T) {
		a := first(wire.Responses)
		body := fmt.Sprintf(`{"model":"gemini","input":[{"type":"message","role":"user","content":"Weather in Paris and London?"},
			{"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
			{"type":"function_call","call_id":%q,"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
			{"type":"function_call","call_id":%q,"name":"get_weather","arguments":"{\"city\":\"London\"}"},
			{"type":"reasoning","id":"rs_1","summary":[],"encrypted_content":"another-provider"},
			{"type":"function_call_output","call_id":%q,"output":"sunny"},
			{"type":"function_call_output","call_id":%q,"output":"rain"}],"store":false}`,
			a.calls[0].id, a.calls[1].id, a.calls[0].id, a.calls[1].id)
		res := e.Do(t.Context(), geminiRequest(wire.OpenAI, wire.Responses, fake.baseURL(), false, body), httptest.NewRecorder())
		if !res.Committed {
			t.Fatalf("second turn: %+v", res)
		}
		checkSecondTurn(t, a)
		if b := fake.last(t).Body; get(b, "contents", 1, "parts", 0, "text") != "Checking." || get(b, "contents", 3) != nil {
			t.Errorf("the assistant's text and calls are not one model turn: %s", fake.last(t).Raw)
		}
	})
}

// Gemini's usage in the Result for answers without cache or thoughts, and an answer cut
// at max tokens, streamed and not.
func TestGeminiUsageWithoutCache(t *testing.T) {
	e := newEngine(t)
	usage := `"usageMetadata":{"promptTokenCount":37,"candidatesTokenCount":12,"totalTokenCount":49}`
	want := attempt.Usage{InputTokens: 37, OutputTokens: 12}
	fake := newFakeGemini(t, "", nil)
	for _, stream := range []bool{false, true} {
		if stream {
			fake.setReply(geminiSSE([]string{geminiAnswer(`{"text":"It is"}`, "MAX_TOKENS", usage)}, false))
		} else {
			fake.setReply(geminiJSON(geminiAnswer(`{"text":"It is"}`, "MAX_TOKENS", usage)))
		}
		for _, c := range geminiClients {
			rec := httptest.NewRecorder()
			res := e.Do(t.Context(), geminiRequest(c.format, c.ep, fake.baseURL(), stream, geminiClientBodies[c.ep](stream)), rec)
			wantFinish := map[wire.Endpoint]string{wire.ChatCompletions: "length", wire.Messages: "max_tokens",
				wire.Responses: "max_output_tokens"}[c.ep]
			if !res.Committed || res.Usage != want || strings.Join(res.FinishReasons, ",") != wantFinish {
				t.Errorf("%s stream %v: Usage %+v FinishReasons %v, want %+v [%s]", c.name, stream, res.Usage, res.FinishReasons, want, wantFinish)
			}
		}
	}
}

// The provider's API key reaches Gemini in its header only: never a log line, even at
// debug level, nor anything the client sees.
func TestGeminiKeyNeverLogged(t *testing.T) {
	var logs syncBuffer
	e, err := New(t.Context(), Config{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Concurrency: 2, QueueSize: 8, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	fake := newFakeGemini(t, "", nil)
	for _, reply := range []http.HandlerFunc{geminiJSON(geminiToolJSON), geminiSSE(geminiToolChunks[:1], true),
		geminiError(429, "RESOURCE_EXHAUSTED", "Quota.")} {
		fake.setReply(reply)
		for _, c := range geminiClients {
			for _, stream := range []bool{false, true} {
				rec := httptest.NewRecorder()
				res := e.Do(t.Context(), geminiRequest(c.format, c.ep, fake.baseURL(), stream, geminiClientBodies[c.ep](stream)), rec)
				assertNoSecrets(t, rec.Body.String()+string(res.Body))
				if res.Err != nil && strings.Contains(res.Err.Error(), testKey) {
					t.Errorf("Result.Err holds the key: %v", res.Err)
				}
			}
		}
	}
	if got := logs.String(); strings.Contains(got, testKey) {
		t.Fatalf("the API key was logged:\n%s", got)
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of Bifrost's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
