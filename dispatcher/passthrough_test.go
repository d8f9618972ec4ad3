package dispatcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// seen is what the fake provider received.
type seen struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

// upstream is a fake provider: handler scripts the answer, every request is recorded.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []seen
}

func newUpstream(t testing.TB, handler http.HandlerFunc) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.reqs = append(u.reqs, seen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		u.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t testing.TB) seen {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func reply(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func lane() *Passthrough { return NewPassthrough(PassthroughConfig{}) }

func attemptTo(u *upstream, typ config.ProviderType, key, model, body string) *attempt.Request {
	f, ep := wire.OpenAI, wire.ChatCompletions
	if typ == config.ProviderAnthropic {
		f, ep = wire.Anthropic, wire.Messages
	}
	return &attempt.Request{
		RequestID: "rid-1", ClientFormat: f, Endpoint: ep,
		Provider: &attempt.Provider{ID: "p", Type: typ, BaseURL: u.URL, APIKey: key},
		Model:    model, Body: []byte(body), Header: http.Header{"User-Agent": {"sdk/1.0"}},
	}
}

func TestPassthroughForwardsBytes(t *testing.T) {
	// Odd spacing, escapes, key order and number forms must all survive untouched.
	reqBody := "{ \"messages\" : [{\"role\":\"user\",\"content\":\"h\\u00e9llo \\\"model\\\"\"}],\n\t\"model\":\"m-1\", \"n\":1.50e0 }"
	respBody := "{\"id\":\"x\",  \"choices\":[],\"note\":\"\\u2603\"}\n"
	tests := []struct {
		name       string
		typ        config.ProviderType
		key        string
		path       string
		clientHdr  http.Header
		wantHeader map[string]string
	}{
		{"openai", config.ProviderOpenAI, "sk-up", "/v1/chat/completions", nil, map[string]string{
			"Authorization": "Bearer sk-up", "X-Api-Key": "", "Anthropic-Version": "", "Content-Type": "application/json",
		}},
		{"compatible without key", config.ProviderOpenAICompatible, "", "/v1/chat/completions", nil, map[string]string{
			"Authorization": "", "X-Api-Key": "",
		}},
		{"anthropic default version", config.ProviderAnthropic, "sk-ant", "/v1/messages", nil, map[string]string{
			"X-Api-Key": "sk-ant", "Authorization": "", "Anthropic-Version": "2023-06-01",
		}},
		{"anthropic client version and beta kept", config.ProviderAnthropic, "sk-ant", "/v1/messages",
			http.Header{"Anthropic-Version": {"2024-10-22"}, "Anthropic-Beta": {"tools-2024"}, "Content-Type": {"application/json; charset=utf-8"}},
			map[string]string{"X-Api-Key": "sk-ant", "Anthropic-Version": "2024-10-22", "Anthropic-Beta": "tools-2024", "Content-Type": "application/json; charset=utf-8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, reply(200, map[string]string{
				"Content-Type": "application/json", "X-Provider-Id": "abc", "X-Sluice-Ctx": "evil",
			}, respBody))
			req := attemptTo(u, tt.typ, tt.key, "m-1", reqBody)
			req.RawQuery = "beta=true"
			for k, v := range tt.clientHdr {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			res := lane().Do(context.Background(), req, rec)
			if !res.Committed || res.Status != 200 || res.Err != nil {
				t.Errorf("result = %+v, want committed 200", res)
			}
			got := u.last(t)
			if got.Method != "POST" || got.Path != tt.path || got.RawQuery != "beta=true" {
				t.Errorf("upstream got %s %s?%s, want POST %s?beta=true", got.Method, got.Path, got.RawQuery, tt.path)
			}
			if got.Body != reqBody {
				t.Errorf("upstream body = %q, want the client's bytes %q", got.Body, reqBody)
			}
			if cl := got.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(reqBody)) {
				t.Errorf("Content-Length = %s, want %d", cl, len(reqBody))
			}
			if ua := got.Header.Get("User-Agent"); ua != "sdk/1.0" {
				t.Errorf("User-Agent = %q, want the client's", ua)
			}
			for k, want := range tt.wantHeader {
				if v := got.Header.Get(k); v != want {
					t.Errorf("upstream header %s = %q, want %q", k, v, want)
				}
			}
			if rec.Code != 200 || rec.Body.String() != respBody {
				t.Errorf("client got %d %q, want 200 and the provider's bytes %q", rec.Code, rec.Body.String(), respBody)
			}
			if rec.Header().Get("X-Provider-Id") != "abc" || rec.Header().Get("X-Sluice-Ctx") != "" {
				t.Errorf("client headers = %v: want provider headers relayed, x-sluice-* dropped", rec.Header())
			}
			if req.Header.Get("Authorization") != "" || req.Header.Get("X-Api-Key") != "" {
				t.Errorf("lane wrote the provider credential into req.Header")
			}
		})
	}
}

func TestPassthroughBasePrefix(t *testing.T) {
	u := newUpstream(t, reply(200, nil, "{}"))
	req := attemptTo(u, config.ProviderOpenAICompatible, "", "m", `{"model":"m"}`)
	req.Provider.BaseURL = u.URL + "/openai/proxy"
	lane().Do(context.Background(), req, httptest.NewRecorder())
	if got := u.last(t).Path; got != "/openai/proxy/v1/chat/completions" {
		t.Errorf("path = %q, want /openai/proxy/v1/chat/completions", got)
	}
}

func TestPassthroughModelRewrite(t *testing.T) {
	tests := []struct {
		name, body, model, want string
	}{
		{"same model untouched", `{"model":"gpt-4o", "messages":[]}`, "gpt-4o", `{"model":"gpt-4o", "messages":[]}`},
		{"alias rewritten", `{"model":"fast","messages":[{"role":"user","content":"model"}],"temperature":0.5}`, "gpt-4o-mini",
			`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"model"}],"temperature":0.5}`},
		{"rewritten in place", `{"stream":true,  "model" : "fast", "x":1}`, "claude-haiku-4", `{"stream":true,  "model" : "claude-haiku-4", "x":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUpstream(t, reply(200, nil, "{}"))
			req := attemptTo(u, config.ProviderOpenAI, "k", tt.model, tt.body)
			lane().Do(context.Background(), req, httptest.NewRecorder())
			got := u.last(t)
			if got.Body != tt.want {
				t.Errorf("upstream body = %s, want %s", got.Body, tt.want)
			}
			if cl := got.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(tt.want)) {
				t.Errorf("Content-Length = %s, want %d", cl, len(tt.want))
			}
			if string(req.Body) != tt.body {
				t.Errorf("req.Body changed to %s; the next attempt needs %s", req.Body, tt.body)
			}
		})
	}
}

func TestPassthroughNotCommitted(t *testing.T) {
	tests := []struct {
		status    int
		retryable bool
	}{
		{500, true}, {502, true}, {503, true}, {504, true}, {529, true}, {429, true},
		{400, false}, {401, false}, {403, false}, {404, false}, {413, false}, {422, false},
	}
	for _, tt := range tests {
		t.Run(strconv.Itoa(tt.status), func(t *testing.T) {
			body := `{"error":{"message":"provider says ` + strconv.Itoa(tt.status) + `"}}`
			u := newUpstream(t, reply(tt.status, map[string]string{"Content-Type": "application/json", "Retry-After": "3"}, body))
			res := lane().Do(context.Background(), attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`), strictWriter{t})
			if res.Committed || res.Retryable != tt.retryable || res.Status != tt.status {
				t.Errorf("result = committed %v retryable %v status %d; want false %v %d",
					res.Committed, res.Retryable, res.Status, tt.retryable, tt.status)
			}
			if string(res.Body) != body || res.Header.Get("Retry-After") != "3" {
				t.Errorf("result body %q header %v, want the provider's verbatim", res.Body, res.Header)
			}
		})
	}
}

func TestPassthroughNetworkError(t *testing.T) {
	u := newUpstream(t, reply(200, nil, "{}"))
	u.Close()
	res := lane().Do(context.Background(), attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`), strictWriter{t})
	if res.Committed || !res.Retryable || res.Status != 0 || res.Err == nil {
		t.Errorf("result = %+v, want uncommitted, retryable, status 0, with an error", res)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res = lane().Do(ctx, attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`), strictWriter{t})
	if res.Committed || res.Retryable {
		t.Errorf("client gone: result = %+v, want not retryable", res)
	}
}

// A provider error answered before any byte reached the client walks on to the next provider;
// a 4xx does not. End to end through the server and the real lane.
func TestServerFallbackThroughPassthrough(t *testing.T) {
	var hits sync.Map
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Store(r.URL.Path, true)
		if strings.HasPrefix(r.URL.Path, "/compat") {
			reply(200, map[string]string{"Content-Type": "application/json"}, `{"from":"oa2"}`)(w, r)
			return
		}
		reply(503, nil, `{"error":"overloaded"}`)(w, r)
	})
	s := newServer(t, nil, nil, u.URL)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"x"}`,
		sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:gpt-4o", "oa2:llama3")...))))
	if rec.Code != 200 || rec.Body.String() != `{"from":"oa2"}` || rec.Header().Get(wire.HeaderFallbackCount) != "1" {
		t.Errorf("got %d %s fallback=%q, want 200 from oa2 after one fallback",
			rec.Code, rec.Body, rec.Header().Get(wire.HeaderFallbackCount))
	}
	if got := u.last(t).Body; got != `{"model":"llama3"}` {
		t.Errorf("second attempt body = %s, want the model rewritten from the original", got)
	}
}

func TestServerForwardsClientHeaders(t *testing.T) {
	u := newUpstream(t, reply(200, nil, "{}"))
	s := newServer(t, nil, nil, u.URL)
	tok := sign(t, testSignKey, claims(wire.Anthropic, false, chain("an:claude")...))
	r := request(t, "/v1/messages", `{"model":"claude"}`, tok)
	for k, v := range map[string]string{
		"Authorization": "Bearer sk-sluice-client", "X-Api-Key": "sk-sluice-client",
		"Anthropic-Version": "2023-06-01", "Anthropic-Beta": "prompt-caching", "User-Agent": "claude-cli/2",
		"X-Stainless-Os": "Linux", "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Connection": "keep-alive", "Keep-Alive": "timeout=5", "Proxy-Authorization": "Basic eA==",
		"X-Forwarded-For": "10.0.0.1", "X-Request-Id": "envoy", "X-Envoy-Attempt-Count": "1",
		"X-Sluice-Trace-Id": "client", "Accept-Encoding": "gzip, br",
	} {
		r.Header.Set(k, v)
	}
	s.ServeHTTP(httptest.NewRecorder(), r)
	h := u.last(t).Header
	for k, want := range map[string]string{
		"Anthropic-Version": "2023-06-01", "Anthropic-Beta": "prompt-caching", "User-Agent": "claude-cli/2",
		"X-Stainless-Os": "Linux", "Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-Api-Key": testProvider, "Authorization": "", "Keep-Alive": "", "Proxy-Authorization": "",
		"X-Forwarded-For": "", "X-Request-Id": "", "X-Envoy-Attempt-Count": "", "X-Sluice-Trace-Id": "",
		"X-Sluice-Ctx": "", "Accept-Encoding": "",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("provider saw %s = %q, want %q", k, got, want)
		}
	}
}

// sseHandler sends events one at a time; before each event after the first it waits for
// release (or for the request to end).
func sseHandler(events []string, release <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i, ev := range events {
			if i > 0 {
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
			}
			_, _ = io.WriteString(w, ev)
			w.(http.Flusher).Flush()
		}
	}
}

func TestPassthroughSSEFlushesEachEvent(t *testing.T) {
	events := []string{"data: {\"n\":1}\n\n", "data: {\"n\":2}\n\n", "data: [DONE]\n\n"}
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // before the servers' cleanups, which wait for in-flight requests
	u := newUpstream(t, sseHandler(events, release))
	front := httptest.NewServer(newServer(t, nil, nil, u.URL))
	t.Cleanup(front.Close)

	r, _ := http.NewRequest("POST", front.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	r.Header.Set(wire.HeaderContext, sign(t, testSignKey, claims(wire.OpenAI, true, chain("oa:m")...)))
	type firstEvent struct {
		resp  *http.Response
		br    *bufio.Reader
		event string
		err   error
	}
	// Without flushing, not even the status line would reach the client, so the request and
	// the first read both run under the guard.
	first := make(chan firstEvent, 1)
	go func() {
		resp, err := front.Client().Do(r)
		if err != nil {
			first <- firstEvent{err: err}
			return
		}
		br := bufio.NewReader(resp.Body)
		var b strings.Builder
		for !strings.HasSuffix(b.String(), "\n\n") {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if err != nil {
				break
			}
		}
		first <- firstEvent{resp: resp, br: br, event: b.String()}
	}()
	var got firstEvent
	select {
	case got = <-first:
	case <-time.After(10 * time.Second): // a deadlock guard, not a pacing sleep
		t.Fatal("first event did not reach the client before the provider sent the second: not flushed")
	}
	if got.err != nil {
		t.Fatal(got.err)
	}
	defer got.resp.Body.Close()
	if ct := got.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got.event != events[0] {
		t.Errorf("first event = %q, want %q", got.event, events[0])
	}
	unblock()
	rest, err := io.ReadAll(got.br)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Join(events[1:], ""); string(rest) != want {
		t.Errorf("rest of stream = %q, want %q", rest, want)
	}
}

func TestPassthroughSSECutMidStream(t *testing.T) {
	for _, typ := range []config.ProviderType{config.ProviderOpenAI, config.ProviderAnthropic} {
		t.Run(string(typ), func(t *testing.T) {
			const first = "event: message_start\ndata: {\"type\":\"message_start\"}\n\n"
			u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, first)
				w.(http.Flusher).Flush()
				conn, _, err := http.NewResponseController(w).Hijack()
				if err == nil {
					conn.Close() // no terminating chunk: the provider died mid-stream
				}
			})
			req := attemptTo(u, typ, "k", "m", `{"model":"m","stream":true}`)
			req.Stream = true
			rec := httptest.NewRecorder()
			res := lane().Do(context.Background(), req, rec)
			if !res.Committed || res.Err == nil {
				t.Errorf("result = %+v, want committed with an error", res)
			}
			got := rec.Body.String()
			if !strings.HasPrefix(got, first) {
				t.Fatalf("client stream = %q, want it to start with the provider's event", got)
			}
			tail := strings.TrimPrefix(got, first)
			prefix := "data: "
			if typ == config.ProviderAnthropic {
				prefix = "event: error\ndata: "
			}
			if !strings.HasPrefix(tail, prefix) || !strings.HasSuffix(tail, "\n\n") {
				t.Fatalf("appended event = %q, want %q…\\n\\n", tail, prefix)
			}
			var ev struct {
				Type  string `json:"type"`
				Error struct{ Code string }
			}
			if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimPrefix(tail, prefix), "\n\n")), &ev); err != nil {
				t.Fatalf("error event %q: %v", tail, err)
			}
			if ev.Error.Code != "upstream_stream_error" || (typ == config.ProviderAnthropic) != (ev.Type == "error") {
				t.Errorf("error event = %q, want upstream_stream_error in the %s envelope", tail, typ)
			}
			if !rec.Flushed {
				t.Errorf("error event not flushed")
			}
		})
	}
}

// A cut non-streaming body must not reach the client looking complete.
func TestPassthroughTruncatedJSONAborts(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "1000")
		_, _ = io.WriteString(w, `{"id":"chatcmpl-1",`)
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	})
	front := httptest.NewServer(newServer(t, nil, nil, u.URL))
	t.Cleanup(front.Close)
	r, _ := http.NewRequest("POST", front.URL+"/v1/chat/completions", strings.NewReader(`{"model":"m"}`))
	r.Header.Set(wire.HeaderContext, sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:m")...)))
	resp, err := front.Client().Do(r)
	if err != nil {
		return // aborted before the status line: also fine
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("client read a complete-looking body %q; want a transport error", b)
	}
}

func TestPassthroughNilHeader(t *testing.T) {
	u := newUpstream(t, reply(200, nil, "{}"))
	req := attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`)
	req.Header = nil
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Passthrough.Do panics on a nil req.Header (Clone of nil is nil): %v", r)
		}
	}()
	if res := lane().Do(context.Background(), req, httptest.NewRecorder()); !res.Committed {
		t.Errorf("result = %+v, want committed", res)
	}
}

// noFlushWriter is a ResponseWriter without Flush or Unwrap, as some middleware produces.
type noFlushWriter struct {
	h       http.Header
	mu      sync.Mutex
	body    strings.Builder
	onWrite func()
}

func (w *noFlushWriter) Header() http.Header { return w.h }
func (w *noFlushWriter) WriteHeader(int)     {}
func (w *noFlushWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.body.Write(b)
	w.mu.Unlock()
	w.onWrite()
	return len(b), nil
}

func TestPassthroughSSEWithoutFlusher(t *testing.T) {
	events := []string{"data: 1\n\n", "data: 2\n\n"}
	release := make(chan struct{})
	var once sync.Once
	u := newUpstream(t, sseHandler(events, release))
	w := &noFlushWriter{h: http.Header{}, onWrite: func() { once.Do(func() { close(release) }) }}
	res := lane().Do(context.Background(), attemptTo(u, config.ProviderOpenAI, "k", "m", `{"model":"m"}`), w)
	once.Do(func() { close(release) })
	if got := w.body.String(); got != strings.Join(events, "") {
		if errors.Is(res.Err, http.ErrNotSupported) {
			t.Fatalf("SSE copy stops after the first chunk when the ResponseWriter cannot flush (got %q)", got)
		}
		t.Errorf("client stream = %q, want %q", got, strings.Join(events, ""))
	}
}

// Azure OpenAI: a model with a deployment goes to that deployment with the API version; any
// other to the resource's v1 API; the credential travels as api-key, never as a bearer.
func TestPassthroughAzure(t *testing.T) {
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	for _, tc := range []struct {
		model, query, wantPath, wantQuery string
		ep                                wire.Endpoint
		wantModel                         string
	}{
		{"gpt-4o", "", "/openai/deployments/prod gpt4o/chat/completions", "api-version=2025-01-01-preview", wire.ChatCompletions, "gpt-4o"},
		// The client cannot pick the API version.
		{"gpt-4o", "x=1&api-version=1999-01-01", "/openai/deployments/prod gpt4o/chat/completions", "api-version=2025-01-01-preview&x=1", wire.ChatCompletions, "gpt-4o"},
		{"text-embedding-3-small", "", "/openai/deployments/emb/embeddings", "api-version=2025-01-01-preview", wire.Embeddings, "text-embedding-3-small"},
		{"gpt-5", "", "/openai/v1/responses", "", wire.Responses, "gpt-5"},
		// Responses has no deployment path: the v1 API, the deployment named as the model.
		{"gpt-4o", "", "/openai/v1/responses", "", wire.Responses, "prod gpt4o"},
	} {
		req := attemptTo(u, config.ProviderOpenAI, "azure-key", tc.model, `{"model":"`+tc.model+`"}`)
		req.Provider.Type, req.Endpoint, req.RawQuery = config.ProviderAzure, tc.ep, tc.query
		req.Provider.Azure = config.AzureConfig{APIVersion: "2025-01-01-preview",
			Deployments: map[string]string{"gpt-4o": "prod gpt4o", "text-embedding-3-small": "emb"}}
		if res := lane().Do(context.Background(), req, httptest.NewRecorder()); res.Status != 200 {
			t.Fatalf("%s: %+v", tc.model, res)
		}
		got := u.last(t)
		if got.Path != tc.wantPath || got.RawQuery != tc.wantQuery {
			t.Errorf("%s: %s?%s, want %s?%s", tc.model, got.Path, got.RawQuery, tc.wantPath, tc.wantQuery)
		}
		if m := gjson.Get(got.Body, "model").Str; m != tc.wantModel {
			t.Errorf("%s: model %q sent, want %q", tc.model, m, tc.wantModel)
		}
		if got.Header.Get("Api-Key") != "azure-key" || got.Header.Get("Authorization") != "" {
			t.Errorf("%s: api-key %q, authorization %q", tc.model, got.Header.Get("Api-Key"), got.Header.Get("Authorization"))
		}
	}
}
