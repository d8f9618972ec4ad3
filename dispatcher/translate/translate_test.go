package translate

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

const testKey = "sk-test-canary-7f3a9c"

func newEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := New(context.Background(), Config{
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		RequestTimeout:    10 * time.Second,
		StreamIdleTimeout: 5 * time.Second,
		Concurrency:       4,
		QueueSize:         16,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// received is one request as the fake upstream saw it.
type received struct {
	Path   string
	Header http.Header
	Body   map[string]any
	Raw    []byte
}

// upstream is a scripted fake provider.
type upstream struct {
	*httptest.Server
	mu  sync.Mutex
	got []received
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		rec := received{Path: r.URL.Path, Header: r.Header.Clone(), Raw: raw}
		_ = json.Unmarshal(raw, &rec.Body)
		u.mu.Lock()
		u.got = append(u.got, rec)
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t *testing.T) received {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.got) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.got[len(u.got)-1]
}

// jsonReply answers with a status and a JSON body.
func jsonReply(status int, body string, hdr ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

// sseReply streams frames (each a complete SSE event) with a flush between them. With
// abort set the connection is torn down after the last frame instead of ending cleanly.
func sseReply(frames []string, abort bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for _, f := range frames {
			_, _ = io.WriteString(w, f)
			w.(http.Flusher).Flush()
		}
		if abort {
			panic(http.ErrAbortHandler)
		}
	}
}

func request(format wire.Format, pt config.ProviderType, baseURL string, stream bool, body string) *attempt.Request {
	ep := wire.ChatCompletions
	if format == wire.Anthropic {
		ep = wire.Messages
	}
	return &attempt.Request{
		RequestID:    "req-123",
		ClientFormat: format,
		Endpoint:     ep,
		Provider:     &attempt.Provider{ID: "p1", Type: pt, BaseURL: baseURL, APIKey: testKey},
		Model:        "upstream-model",
		Stream:       stream,
		Body:         []byte(body),
		Header:       http.Header{},
	}
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	Event string
	Data  string
}

// parseSSE splits a stream into events and fails on anything that is not well-formed
// (a line outside event/data, an event without data).
func parseSSE(t *testing.T, s string) []sseEvent {
	t.Helper()
	if s != "" && !strings.HasSuffix(s, "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", s)
	}
	var out []sseEvent
	for _, frame := range strings.Split(strings.TrimSuffix(s, "\n\n"), "\n\n") {
		if frame == "" {
			continue
		}
		var ev sseEvent
		sc := bufio.NewScanner(strings.NewReader(frame))
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				ev.Event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				if ev.Data != "" {
					t.Fatalf("multi-line data in frame %q", frame)
				}
				ev.Data = strings.TrimPrefix(line, "data: ")
			default:
				t.Fatalf("unexpected SSE line %q", line)
			}
		}
		if ev.Data == "" {
			t.Fatalf("frame without data: %q", frame)
		}
		out = append(out, ev)
	}
	return out
}

func decode(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("invalid JSON %q: %v", s, err)
	}
	return m
}

// get walks a decoded JSON value: keys for objects, ints for arrays.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

// assertNothingWritten checks the uncommitted contract on the client side.
func assertNothingWritten(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Body.Len() != 0 || rec.Flushed || len(rec.Header()) != 0 {
		t.Fatalf("lane wrote to the client before failing: headers=%v body=%q", rec.Header(), rec.Body.String())
	}
}

func assertNoSecrets(t *testing.T, s string) {
	t.Helper()
	for _, bad := range []string{testKey, "failed to", "dial tcp", "EOF", "bifrost"} {
		if strings.Contains(s, bad) {
			t.Fatalf("client-visible output contains %q: %s", bad, s)
		}
	}
}

func TestUpstreamErrorsBeforeCommit(t *testing.T) {
	e := newEngine(t)
	antErr := func(typ, msg string) string {
		return `{"type":"error","error":{"type":"` + typ + `","message":"` + msg + `"}}`
	}
	oaiErr := func(typ, msg string) string {
		return `{"error":{"message":"` + msg + `","type":"` + typ + `","param":null,"code":null}}`
	}
	oaiBody := `{"model":"gpt-x","messages":[{"role":"user","content":"hi"}],"stream":%s}`
	antBody := `{"model":"claude-x","max_tokens":50,"messages":[{"role":"user","content":"hi"}],"stream":%s}`
	tests := []struct {
		name      string
		client    wire.Format
		provider  config.ProviderType
		reply     http.HandlerFunc
		status    int
		retryable bool
		message   string
	}{
		{"openai client, anthropic 429", wire.OpenAI, config.ProviderAnthropic,
			jsonReply(429, antErr("rate_limit_error", "Slow down please"), "retry-after", "7"), 429, true, "Slow down please"},
		{"openai client, anthropic 529", wire.OpenAI, config.ProviderAnthropic,
			jsonReply(529, antErr("overloaded_error", "Overloaded")), 529, true, "Overloaded"},
		{"openai client, anthropic 503 html", wire.OpenAI, config.ProviderAnthropic,
			func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(503)
				_, _ = io.WriteString(w, "<html>bad gateway</html>")
			}, 503, true, ""},
		{"openai client, anthropic 400", wire.OpenAI, config.ProviderAnthropic,
			jsonReply(400, antErr("invalid_request_error", "max_tokens: too large")), 400, false, "max_tokens: too large"},
		{"anthropic client, openai 429", wire.Anthropic, config.ProviderOpenAI,
			jsonReply(429, oaiErr("rate_limit_exceeded", "Rate limit reached"), "retry-after-ms", "250"), 429, true, "Rate limit reached"},
		{"anthropic client, openai-compatible 503", wire.Anthropic, config.ProviderOpenAICompatible,
			jsonReply(503, oaiErr("server_error", "The engine is currently overloaded")), 503, true, "The engine is currently overloaded"},
		{"anthropic client, openai 400", wire.Anthropic, config.ProviderOpenAI,
			jsonReply(400, oaiErr("invalid_request_error", "Unknown parameter")), 400, false, "Unknown parameter"},
		{"anthropic client, openai 401", wire.Anthropic, config.ProviderOpenAI,
			jsonReply(401, oaiErr("invalid_request_error", "Incorrect API key provided")), 401, false, "Incorrect API key provided"},
	}
	for _, tc := range tests {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run(name, func(t *testing.T) {
				up := newUpstream(t, tc.reply)
				body := oaiBody
				if tc.client == wire.Anthropic {
					body = antBody
				}
				s := "false"
				if stream {
					s = "true"
				}
				req := request(tc.client, tc.provider, up.URL, stream, strings.Replace(body, "%s", s, 1))
				rec := httptest.NewRecorder()
				res := e.Do(context.Background(), req, rec)
				assertNothingWritten(t, rec)
				if res.Committed || res.Status != tc.status || res.Retryable != tc.retryable {
					t.Fatalf("result = committed %v status %d retryable %v, want false %d %v (err %v)",
						res.Committed, res.Status, res.Retryable, tc.status, tc.retryable, res.Err)
				}
				if ct := res.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
				b := decode(t, string(res.Body))
				var msg any
				if tc.client == wire.Anthropic {
					if get(b, "type") != "error" || get(b, "error", "type") == nil {
						t.Fatalf("not an Anthropic error envelope: %s", res.Body)
					}
					msg = get(b, "error", "message")
				} else {
					if get(b, "error", "type") == nil {
						t.Fatalf("not an OpenAI error envelope: %s", res.Body)
					}
					msg = get(b, "error", "message")
				}
				if tc.message != "" && msg != tc.message {
					t.Errorf("message = %v, want provider's %q", msg, tc.message)
				}
				assertNoSecrets(t, string(res.Body))
				if tc.name == "openai client, anthropic 429" && res.Header.Get("Retry-After") != "7" {
					t.Errorf("retry-after not relayed: %v", res.Header)
				}
				if tc.name == "anthropic client, openai 429" && res.Header.Get("Retry-After-Ms") != "250" {
					t.Errorf("retry-after-ms not relayed: %v", res.Header)
				}
			})
		}
	}
}

func TestNetworkErrorIsRetryable(t *testing.T) {
	e := newEngine(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	for _, stream := range []bool{false, true} {
		for _, client := range []wire.Format{wire.OpenAI, wire.Anthropic} {
			pt := config.ProviderAnthropic
			body := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`
			if client == wire.Anthropic {
				pt = config.ProviderOpenAI
				body = `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
			}
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), request(client, pt, "http://"+addr, stream, body), rec)
			assertNothingWritten(t, rec)
			if res.Committed || !res.Retryable || res.Status < 500 {
				t.Fatalf("client %v stream %v: %+v", client, stream, res)
			}
			assertNoSecrets(t, string(res.Body))
		}
	}
}

func TestRequestsTheLaneCannotServe(t *testing.T) {
	e := newEngine(t)
	tests := []struct {
		name      string
		req       *attempt.Request
		status    int
		retryable bool
	}{
		// The lane's own limit: retryable, so a later provider of the chain may serve it.
		{"same format is not a translation", request(wire.OpenAI, config.ProviderOpenAI, "http://127.0.0.1:1", false,
			`{"model":"m","messages":[{"role":"user","content":"hi"}]}`), 400, true},
		{"malformed body", request(wire.OpenAI, config.ProviderAnthropic, "http://127.0.0.1:1", false, `{"model":`), 400, false},
		{"no messages", request(wire.Anthropic, config.ProviderOpenAI, "http://127.0.0.1:1", false,
			`{"model":"m","max_tokens":5,"messages":[]}`), 400, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			res := e.Do(context.Background(), tc.req, rec)
			assertNothingWritten(t, rec)
			if res.Committed || res.Status != tc.status || res.Retryable != tc.retryable || len(res.Body) == 0 {
				t.Fatalf("got %+v", res)
			}
		})
	}
}

func TestClientGoneMidStream(t *testing.T) {
	e := newEngine(t)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, f := range anthropicStreamFrames[:4] {
			_, _ = io.WriteString(w, f)
		}
		w.(http.Flusher).Flush()
		select { // hold the stream open until the lane hangs up
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	rec := httptest.NewRecorder()
	done := make(chan attempt.Result)
	go func() {
		done <- e.Do(ctx, request(wire.OpenAI, config.ProviderAnthropic, up.URL, true, openAIReq(true, "")), rec)
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	select {
	case res := <-done:
		if !res.Committed {
			t.Fatalf("stream had started; result %+v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not return after the client went away")
	}
}
