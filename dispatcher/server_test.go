package dispatcher

import (
	"context"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/wire"
)

func TestNewRequiresDependencies(t *testing.T) {
	v, _ := ctxtoken.NewVerifier(testSignKey)
	if _, err := New(Config{Verifier: v}); err == nil {
		t.Errorf("New without Logger: got nil error")
	}
	if _, err := New(Config{Logger: slog.New(slog.DiscardHandler)}); err == nil {
		t.Errorf("New without Verifier: got nil error")
	}
}

func TestLoad(t *testing.T) {
	s := newServer(t, newLane(t), nil, "")
	bad := testConfig("http://x")
	bad.Providers[0].APIKeyEnv = "UNSET"
	if err := s.Load(bad); err == nil || !strings.Contains(err.Error(), "UNSET") {
		t.Errorf("Load(missing credential) = %v, want error naming UNSET", err)
	}
	if err := s.Load(&config.Config{Version: 99}); err == nil {
		t.Errorf("Load(invalid) = nil, want error")
	}
	// The first config is still in force.
	p := (*s.providers.Load())["oa"]
	if p == nil || p.APIKey != testProvider || p.BaseURL != "http://provider.invalid" {
		t.Fatalf("provider oa after refused loads = %+v", p)
	}
	// Defaults: public base URL, trailing slash trimmed.
	c := testConfig("http://x/")
	c.Providers[0].BaseURL = ""
	if err := s.Load(c); err != nil {
		t.Fatal(err)
	}
	ps := *s.providers.Load()
	if got := ps["oa"].BaseURL; got != "https://api.openai.com" {
		t.Errorf("default base URL = %q", got)
	}
	if got := ps["an"].BaseURL; got != "http://x" {
		t.Errorf("base URL = %q, want trailing slash trimmed", got)
	}
	if got := ps["oa2"].APIKey; got != "" {
		t.Errorf("oa2 has no api_key_env but APIKey = %q", got)
	}
}

func expiredToken(t *testing.T) string {
	c := claims(wire.OpenAI, false, chain("oa:gpt-4o")...)
	c.Issuer = "sluice-extproc"
	c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
	c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(testSignKey)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestInvalidContext(t *testing.T) {
	lane := newLane(t)
	s := newServer(t, lane, lane, "")
	tokens := map[string]string{
		"missing":  "",
		"garbage":  "a.b.c",
		"forged":   sign(t, forgedKey, claims(wire.OpenAI, false, chain("oa:gpt-4o")...)),
		"expired":  expiredToken(t),
		"no chain": sign(t, testSignKey, claims(wire.OpenAI, false)),
	}
	paths := []struct {
		path   string
		format wire.Format
	}{
		{"/v1/chat/completions", wire.OpenAI},
		{"/v1/messages", wire.Anthropic},
		{"/v1/messages?beta=true", wire.Anthropic},
	}
	for name, tok := range tokens {
		for _, p := range paths {
			t.Run(name+" "+p.path, func(t *testing.T) {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, request(t, p.path, `{"model":"gpt-4o"}`, tok))
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("status = %d, want 401", rec.Code)
				}
				if code := errorCode(t, p.format, rec.Body.Bytes()); code != "invalid_context" {
					t.Errorf("code = %q, want invalid_context", code)
				}
				id := rec.Header().Get(wire.HeaderRequestID)
				if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
					t.Errorf("request id = %q, want 32 hex digits", id)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			})
		}
	}
	if len(lane.calls) != 0 {
		t.Errorf("lane called %d times without a valid context", len(lane.calls))
	}
}

func TestPathMustMatchToken(t *testing.T) {
	lane := newLane(t)
	s := newServer(t, lane, nil, "")
	tok := sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:gpt-4o")...))
	for _, path := range []string{"/v1/messages", "/v1/embeddings"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, request(t, path, `{}`, tok))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s with a chat token: status %d, want 404", path, rec.Code)
		}
	}
	if len(lane.calls) != 0 {
		t.Errorf("lane called on a path the token does not name")
	}
}

func TestChainWalk(t *testing.T) {
	tests := []struct {
		name      string
		format    wire.Format
		chain     []ctxtoken.Attempt
		steps     []step
		wantCalls []string
		status    int
		body      string // exact, or "" to check code instead
		code      string
		fallback  string
	}{
		{
			name: "first answers", format: wire.OpenAI, chain: chain("oa:gpt-4o", "oa2:llama"),
			steps: []step{answer(200, `{"ok":1}`)}, wantCalls: []string{"oa:gpt-4o"},
			status: 200, body: `{"ok":1}`, fallback: "0",
		},
		{
			name: "503 then 200", format: wire.OpenAI, chain: chain("oa:gpt-4o", "oa2:llama"),
			steps:     []step{fail(503, true, `{"error":"busy"}`), answer(200, `{"ok":2}`)},
			wantCalls: []string{"oa:gpt-4o", "oa2:llama"}, status: 200, body: `{"ok":2}`, fallback: "1",
		},
		{
			name: "429 then 200", format: wire.OpenAI, chain: chain("oa:gpt-4o", "oa2:llama"),
			steps:     []step{fail(429, true, `{"error":"slow"}`), answer(200, `{"ok":3}`)},
			wantCalls: []string{"oa:gpt-4o", "oa2:llama"}, status: 200, body: `{"ok":3}`, fallback: "1",
		},
		{
			name: "network error then 200", format: wire.OpenAI, chain: chain("oa:a", "oa2:b"),
			steps:     []step{{res: attempt.Result{Retryable: true}}, answer(200, `{"ok":4}`)},
			wantCalls: []string{"oa:a", "oa2:b"}, status: 200, body: `{"ok":4}`, fallback: "1",
		},
		{
			name: "400 relayed verbatim, no fallback", format: wire.OpenAI, chain: chain("oa:gpt-4o", "oa2:llama"),
			steps:     []step{fail(400, false, `{"error":{"message":"bad messages","type":"invalid_request_error"}}`)},
			wantCalls: []string{"oa:gpt-4o"}, status: 400,
			body: `{"error":{"message":"bad messages","type":"invalid_request_error"}}`, fallback: "0",
		},
		{
			name: "all 503: last one relayed", format: wire.OpenAI, chain: chain("oa:a", "oa2:b"),
			steps:     []step{fail(503, true, `first`), fail(502, true, `second`)},
			wantCalls: []string{"oa:a", "oa2:b"}, status: 502, body: `second`, fallback: "1",
		},
		{
			name: "network errors everywhere, openai", format: wire.OpenAI, chain: chain("oa:a", "oa2:b"),
			steps:     []step{{res: attempt.Result{Retryable: true}}, {res: attempt.Result{Retryable: true}}},
			wantCalls: []string{"oa:a", "oa2:b"}, status: 502, code: "upstream_unavailable",
		},
		{
			name: "network errors everywhere, anthropic", format: wire.Anthropic, chain: chain("an:claude"),
			steps:     []step{{res: attempt.Result{Retryable: true}}},
			wantCalls: []string{"an:claude"}, status: 502, code: "upstream_unavailable",
		},
		{
			name: "non-retryable failure with no response", format: wire.OpenAI, chain: chain("oa:a", "oa2:b"),
			steps:     []step{{res: attempt.Result{}}},
			wantCalls: []string{"oa:a"}, status: 502, code: "upstream_unavailable",
		},
		{
			name: "committed result stops the walk even if retryable", format: wire.OpenAI, chain: chain("oa:a", "oa2:b"),
			steps:     []step{{write: answer(200, "partial").write, res: attempt.Result{Status: 200, Committed: true, Retryable: true}}},
			wantCalls: []string{"oa:a"}, status: 200, body: "partial", fallback: "0",
		},
		{
			name: "unconfigured provider skipped", format: wire.OpenAI, chain: chain("ghost:x", "oa:a"),
			steps: []step{answer(200, "ok")}, wantCalls: []string{"oa:a"}, status: 200, body: "ok", fallback: "0",
		},
		{
			name: "only unconfigured providers", format: wire.OpenAI, chain: chain("ghost:x"),
			wantCalls: nil, status: 502, code: "upstream_unavailable",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lane := newLane(t, tt.steps...)
			s := newServer(t, lane, lane, "")
			path := "/v1/chat/completions"
			if tt.format == wire.Anthropic {
				path = "/v1/messages"
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, request(t, path, `{"model":"client-model"}`, sign(t, testSignKey, claims(tt.format, false, tt.chain...))))
			if got := lane.providers(); !reflect.DeepEqual(got, tt.wantCalls) {
				t.Errorf("lane calls = %q, want %q", got, tt.wantCalls)
			}
			if rec.Code != tt.status {
				t.Errorf("status = %d, want %d", rec.Code, tt.status)
			}
			if tt.body != "" && rec.Body.String() != tt.body {
				t.Errorf("body = %q, want %q", rec.Body.String(), tt.body)
			}
			if tt.code != "" {
				if code := errorCode(t, tt.format, rec.Body.Bytes()); code != tt.code {
					t.Errorf("code = %q, want %q", code, tt.code)
				}
			}
			if tt.fallback != "" {
				if got := rec.Header().Get(wire.HeaderFallbackCount); got != tt.fallback {
					t.Errorf("%s = %q, want %q", wire.HeaderFallbackCount, got, tt.fallback)
				}
			}
			if got := rec.Header().Get(wire.HeaderRequestID); got != "0123456789abcdef0123456789abcdef" {
				t.Errorf("request id = %q, want the token's", got)
			}
			if len(lane.steps) != 0 {
				t.Errorf("%d scripted steps unused", len(lane.steps))
			}
		})
	}
}

func TestRelayedErrorHeaders(t *testing.T) {
	body := `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens"}}`
	lane := newLane(t, step{res: attempt.Result{Status: 400, Body: []byte(body), Header: http.Header{
		"Content-Type":        {"application/json"},
		"Request-Id":          {"req_provider_1"},
		"Content-Length":      {"9999"},
		"Connection":          {"close"},
		"Transfer-Encoding":   {"chunked"},
		"X-Sluice-Ctx":        {"provider-injected"},
		"X-Sluice-Request-Id": {"provider-injected"},
	}}})
	s := newServer(t, lane, nil, "")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, request(t, "/v1/messages", `{}`, sign(t, testSignKey, claims(wire.Anthropic, false, chain("an:c")...))))
	res := rec.Result()
	if res.StatusCode != 400 || rec.Body.String() != body {
		t.Errorf("got %d %q, want 400 and the provider body verbatim", res.StatusCode, rec.Body.String())
	}
	h := rec.Header()
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Request-Id": "req_provider_1",
		"Content-Length": strconv.Itoa(len(body)), "Connection": "", "Transfer-Encoding": "",
		"X-Sluice-Ctx": "", wire.HeaderRequestID: "0123456789abcdef0123456789abcdef",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
}

func TestLaneSelection(t *testing.T) {
	tests := []struct {
		name          string
		format        wire.Format
		chain         []ctxtoken.Attempt
		wantPass      []string
		wantTranslate []string
	}{
		{"openai to openai", wire.OpenAI, chain("oa:a"), []string{"oa:a"}, nil},
		{"openai to compatible", wire.OpenAI, chain("oa2:a"), []string{"oa2:a"}, nil},
		{"openai to anthropic", wire.OpenAI, chain("an:c"), nil, []string{"an:c"}},
		{"anthropic to anthropic", wire.Anthropic, chain("an:c"), []string{"an:c"}, nil},
		{"anthropic to openai", wire.Anthropic, chain("oa:a"), nil, []string{"oa:a"}},
		{"mixed chain", wire.OpenAI, chain("an:c", "oa:a"), []string{"oa:a"}, []string{"an:c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			retry := fail(503, true, "busy")
			pass := newLane(t, retry, retry)
			tr := newLane(t, retry, retry)
			s := newServer(t, pass, tr, "")
			path := map[wire.Format]string{wire.OpenAI: "/v1/chat/completions", wire.Anthropic: "/v1/messages"}[tt.format]
			s.ServeHTTP(httptest.NewRecorder(), request(t, path, `{}`, sign(t, testSignKey, claims(tt.format, false, tt.chain...))))
			if got := pass.providers(); !reflect.DeepEqual(got, tt.wantPass) {
				t.Errorf("passthrough calls = %q, want %q", got, tt.wantPass)
			}
			if got := tr.providers(); !reflect.DeepEqual(got, tt.wantTranslate) {
				t.Errorf("translator calls = %q, want %q", got, tt.wantTranslate)
			}
		})
	}
}

func TestNoTranslator(t *testing.T) {
	for _, f := range []wire.Format{wire.OpenAI, wire.Anthropic} {
		t.Run(f.String(), func(t *testing.T) {
			pass := newLane(t)
			s := newServer(t, pass, nil, "")
			other, path := "an:c", "/v1/chat/completions"
			if f == wire.Anthropic {
				other, path = "oa:a", "/v1/messages"
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, request(t, path, `{}`, sign(t, testSignKey, claims(f, false, chain(other)...))))
			if rec.Code != http.StatusBadGateway {
				t.Errorf("status = %d, want 502", rec.Code)
			}
			if code := errorCode(t, f, rec.Body.Bytes()); code != "translation_unavailable" {
				t.Errorf("code = %q, want translation_unavailable", code)
			}
			if len(pass.calls) != 0 {
				t.Errorf("passthrough called for a cross-format attempt")
			}
		})
	}
}

func TestAttemptRequest(t *testing.T) {
	lane := newLane(t, fail(503, true, "x"), answer(200, "ok"))
	s := newServer(t, lane, nil, "")
	body := `{"model":"client-model","stream":true,"messages":[]}`
	r := request(t, "/v1/chat/completions?api-version=1", body,
		sign(t, testSignKey, claims(wire.OpenAI, true, chain("oa:gpt-4o", "oa2:llama3")...)))
	for k, v := range map[string]string{
		"Authorization": "Bearer sk-sluice-client", "X-Api-Key": "sk-sluice-client",
		"X-Sluice-Trace-Id": "t", "X-Envoy-Expected-Rq-Timeout-Ms": "1000", "X-Request-Id": "envoy-id",
		"X-Forwarded-For": "10.0.0.1", "X-Forwarded-Proto": "https", "Accept-Encoding": "gzip",
		"Connection": "keep-alive", "Keep-Alive": "timeout=5", "Te": "trailers", "Upgrade": "h2c",
		"Proxy-Authorization": "Basic x", "Transfer-Encoding": "chunked",
		"User-Agent": "OpenAI/Python 1.99.0", "X-Stainless-Lang": "python", "Openai-Beta": "assistants=v2",
		"Traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	} {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	if len(lane.calls) != 2 {
		t.Fatalf("lane calls = %d, want 2", len(lane.calls))
	}
	for i, c := range lane.calls {
		if c.Body != body || c.RawQuery != "api-version=1" || !c.Stream || c.Format != wire.OpenAI ||
			c.Endpoint != wire.ChatCompletions || c.RequestID != "0123456789abcdef0123456789abcdef" {
			t.Errorf("call %d = %+v", i, c)
		}
		var keys []string
		for k := range c.Header {
			keys = append(keys, k)
		}
		want := []string{"Content-Type", "Openai-Beta", "Traceparent", "User-Agent", "X-Stainless-Lang"}
		if !sameSet(keys, want) {
			t.Errorf("call %d forwarded headers %q, want %q", i, keys, want)
		}
	}
	if got := []string{lane.calls[0].FallbackHeader, lane.calls[1].FallbackHeader}; !reflect.DeepEqual(got, []string{"0", "1"}) {
		t.Errorf("fallback count as each attempt began = %q, want [0 1]", got)
	}
}

// RFC 9110 §7.6.1: headers named in Connection are hop-by-hop too.
func TestConnectionNominatedHeadersDropped(t *testing.T) {
	lane := newLane(t, answer(200, "ok"))
	s := newServer(t, lane, nil, "")
	r := request(t, "/v1/chat/completions", `{}`, sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:a")...)))
	r.Header.Set("Connection", "X-Hop-Secret")
	r.Header.Set("X-Hop-Secret", "for-the-next-hop-only")
	s.ServeHTTP(httptest.NewRecorder(), r)
	if got := lane.calls[0].Header.Get("X-Hop-Secret"); got != "" {
		t.Fatal("headers nominated by the client's Connection header are forwarded to the provider")
	}
}

func TestBodyLimit(t *testing.T) {
	lane := newLane(t, answer(200, "ok"))
	s := newServer(t, lane, nil, "")
	tok := sign(t, testSignKey, claims(wire.Anthropic, false, chain("an:c")...))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, request(t, "/v1/messages", strings.Repeat("x", 4097), tok))
	if rec.Code != http.StatusBadRequest || errorCode(t, wire.Anthropic, rec.Body.Bytes()) != "invalid_request_error" {
		t.Errorf("oversize body: %d %s, want 400 invalid_request_error", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, request(t, "/v1/messages", strings.Repeat("x", 4096), tok))
	if rec.Code != http.StatusOK {
		t.Errorf("body at the limit: %d, want 200", rec.Code)
	}
}

func TestClientGoneStopsWalk(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lane := newLane(t, fail(503, true, "busy"))
	s := newServer(t, laneFunc(func(c context.Context, req *attempt.Request, w http.ResponseWriter) attempt.Result {
		cancel() // the client leaves while the first provider is failing
		return lane.Do(c, req, w)
	}), nil, "")
	r := request(t, "/v1/chat/completions", `{}`, sign(t, testSignKey, claims(wire.OpenAI, false, chain("oa:a", "oa2:b")...))).WithContext(ctx)
	s.ServeHTTP(httptest.NewRecorder(), r)
	if got := lane.providers(); !reflect.DeepEqual(got, []string{"oa:a"}) {
		t.Errorf("lane calls = %q, want only the first attempt after the client left", got)
	}
}

type laneFunc func(context.Context, *attempt.Request, http.ResponseWriter) attempt.Result

func (f laneFunc) Do(ctx context.Context, req *attempt.Request, w http.ResponseWriter) attempt.Result {
	return f(ctx, req, w)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s]--; m[s] < 0 {
			return false
		}
	}
	return true
}
