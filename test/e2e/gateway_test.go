package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// requestIDPattern matches the ids extproc mints, and the UUIDs Envoy's early header mutation
// mints for a reply Envoy sends before extproc's header answer arrives (a 413 on a chunked
// body can race it). Neither is ever the client's.
var requestIDPattern = regexp.MustCompile(`^([0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$`)

// TestPassthroughBytes: same-format requests reach the provider byte for byte — odd spacing,
// unknown fields and cache_control included — with anthropic-version and anthropic-beta intact.
func TestPassthroughBytes(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	cases := []struct {
		name, path string
		header     map[string]string
		body       string
	}{
		{"anthropic", "/v1/messages?beta=true", map[string]string{
			"x-api-key": g.keys["main"], "anthropic-version": "2023-06-01",
			"anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"},
			`{"model":"claude-sonnet-4-5",  "max_tokens":64,"system":[{"type":"text","text":"Be terse.","cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
				`"messages":[{"role":"user","content":[{"type":"text","text":"hi ` + marker + `a","cache_control":{"type":"ephemeral"}}]}],"x_unknown_field":{"kept":true}}`},
		{"openai", "/v1/chat/completions", map[string]string{"authorization": "Bearer " + g.keys["main"]},
			`{ "model" : "gpt-4o-mini", "messages":[{"role":"user","content":"hi ` + marker + `b"}], "x_unknown_field": [1,2,3] }`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.header["content-type"] = "application/json"
			resp, body := g.do(t, "POST", c.path, strings.NewReader(c.body), c.header)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			recs := g.fake.Requests(marker + c.name[:0])
			var rec *fakeprovider.Recorded
			for i := range recs {
				if strings.Contains(string(recs[i].Body), c.body[len(c.body)-40:]) {
					rec = &recs[i]
				}
			}
			if rec == nil {
				t.Fatal("the provider did not receive the request")
			}
			if string(rec.Body) != c.body {
				t.Errorf("provider body differs from the client's bytes\n got: %s\nwant: %s", rec.Body, c.body)
			}
			if c.name == "anthropic" {
				if rec.RawQuery != "beta=true" {
					t.Errorf("query = %q, want beta=true", rec.RawQuery)
				}
				for _, h := range []string{"anthropic-version", "anthropic-beta"} {
					if got := http.Header(rec.Header).Get(h); got != c.header[h] {
						t.Errorf("%s = %q, want %q", h, got, c.header[h])
					}
				}
			}
			checkProviderHeaders(t, g, rec.Header, c.name == "anthropic")
		})
	}
}

type errorCase struct {
	name      string
	method    string
	path      string
	header    map[string]string
	body      io.Reader
	status    int
	anthropic bool   // expect the Anthropic envelope
	code      string // OpenAI error.code, or Anthropic error.type
}

func checkError(t *testing.T, resp *http.Response, body []byte, c errorCase, g *gateway) {
	t.Helper()
	if resp.StatusCode != c.status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, c.status, body)
	}
	if ct := resp.Header.Get("content-type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("content-type = %q", ct)
	}
	if id := resp.Header.Get("x-sluice-request-id"); !requestIDPattern.MatchString(id) {
		t.Errorf("x-sluice-request-id = %q, want a gateway-minted id", id)
	}
	var env struct {
		Type  string `json:"type"`
		Error struct {
			Type, Code, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("error body is not JSON: %s", body)
	}
	if c.anthropic {
		if env.Type != "error" || env.Error.Type != c.code || env.Error.Message == "" {
			t.Errorf("want Anthropic envelope with error.type %q, got %s", c.code, body)
		}
	} else if env.Error.Code != c.code || env.Error.Type == "" || env.Error.Message == "" {
		t.Errorf("want OpenAI envelope with error.code %q, got %s", c.code, body)
	}
	for _, s := range g.keys {
		if bytes.Contains(body, []byte(s)) {
			t.Errorf("error body echoes a secret")
		}
	}
}

func TestErrors(t *testing.T) {
	g := startGateway(t)
	oa := func(key string) map[string]string {
		h := map[string]string{"content-type": "application/json"}
		if key != "" {
			h["authorization"] = "Bearer " + key
		}
		return h
	}
	an := func(key string) map[string]string {
		h := map[string]string{"content-type": "application/json", "anthropic-version": "2023-06-01"}
		if key != "" {
			h["x-api-key"] = key
		}
		return h
	}
	chat := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	msg := `{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	unknown := "sk-sluice-" + strings.Repeat("A", 38)
	big := func() io.Reader { return bytes.NewReader(bytes.Repeat([]byte("x"), 33<<20)) }
	// A reader without a length: the body arrives chunked and Envoy's buffer limit trips.
	chunked := func() io.Reader { return io.MultiReader(strings.NewReader(`{"model":"gpt-4o-mini","x":"`), big()) }
	cases := []errorCase{
		{"openai no key", "POST", "/v1/chat/completions", oa(""), strings.NewReader(chat), 401, false, "invalid_api_key"},
		{"openai unknown key", "POST", "/v1/chat/completions", oa(unknown), strings.NewReader(chat), 401, false, "invalid_api_key"},
		{"openai malformed key", "POST", "/v1/chat/completions", oa("sk-not-ours"), strings.NewReader(chat), 401, false, "invalid_api_key"},
		{"anthropic no key", "POST", "/v1/messages", an(""), strings.NewReader(msg), 401, true, "authentication_error"},
		{"anthropic unknown key", "POST", "/v1/messages", an(unknown), strings.NewReader(msg), 401, true, "authentication_error"},
		{"openai bad json", "POST", "/v1/chat/completions", oa(g.keys["main"]), strings.NewReader(`{"model":`), 400, false, "invalid_json"},
		{"anthropic bad json", "POST", "/v1/messages", an(g.keys["main"]), strings.NewReader(`{"model":"x",}`), 400, true, "invalid_request_error"},
		{"openai missing model", "POST", "/v1/chat/completions", oa(g.keys["main"]), strings.NewReader(`{"messages":[]}`), 400, false, "missing_model"},
		{"anthropic missing model", "POST", "/v1/messages", an(g.keys["main"]), strings.NewReader(`{"max_tokens":1}`), 400, true, "invalid_request_error"},
		{"openai empty body", "POST", "/v1/chat/completions", oa(g.keys["main"]), nil, 400, false, "invalid_request_error"},
		{"model not allowed", "POST", "/v1/chat/completions", oa(g.keys["mini-only"]), strings.NewReader(strings.Replace(chat, "gpt-4o-mini", "gpt-4o", 1)), 403, false, "model_not_allowed"},
		{"unknown model", "POST", "/v1/chat/completions", oa(g.keys["main"]), strings.NewReader(strings.Replace(chat, "gpt-4o-mini", "no-such-model", 1)), 404, false, "model_not_found"},
		{"unknown v1 path", "POST", "/v1/nope", oa(g.keys["main"]), strings.NewReader(chat), 404, false, "not_found"},
		{"path outside v1", "GET", "/healthz", oa(""), nil, 404, false, "not_found"},
		{"wrong method", "GET", "/v1/chat/completions", oa(g.keys["main"]), nil, 405, false, "method_not_allowed"},
		{"openai oversize", "POST", "/v1/chat/completions", oa(g.keys["main"]), big(), 413, false, "request_too_large"},
		{"anthropic oversize", "POST", "/v1/messages", an(g.keys["main"]), big(), 413, true, "request_too_large"},
		{"openai oversize chunked", "POST", "/v1/chat/completions", oa(g.keys["main"]), chunked(), 413, false, "request_too_large"},
		{"anthropic oversize chunked", "POST", "/v1/messages", an(g.keys["main"]), chunked(), 413, true, "request_too_large"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Neither may become the request id: checkError requires a gateway-minted one.
			c.header["x-request-id"] = "client-chosen-id"
			c.header["x-sluice-request-id"] = "client-chosen-id"
			resp, body := g.do(t, c.method, c.path, c.body, c.header)
			checkError(t, resp, body, c, g)
		})
	}
}

// TestLargeBodyAccepted: a body well over Envoy's default 1 MiB buffer passes through whole.
func TestLargeBodyAccepted(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	filler := strings.Repeat("lorem ipsum ", (5<<20)/12)
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + marker + filler + `"}]}`
	resp, b := g.do(t, "POST", "/v1/chat/completions", strings.NewReader(body),
		map[string]string{"authorization": "Bearer " + g.keys["main"], "content-type": "application/json"})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %.300s", resp.StatusCode, b)
	}
	recs := g.fake.Requests(marker)
	if len(recs) != 1 || len(recs[0].Body) != len(body) {
		t.Fatalf("provider did not receive the whole %d-byte body", len(body))
	}
}

func TestModels(t *testing.T) {
	g := startGateway(t)
	cases := []struct {
		name, key string
		anthropic bool
		want      []string
	}{
		{"openai shape", "main", false, []string{"claude-haiku-4-5", "claude-sonnet-4-5", "fast", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}},
		{"anthropic shape", "main", true, []string{"claude-haiku-4-5", "claude-sonnet-4-5", "fast", "gpt-4o", "gpt-4o-mini", "text-embedding-3-small"}},
		{"restricted key", "mini-only", false, []string{"gpt-4o-mini"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := map[string]string{"authorization": "Bearer " + g.keys[c.key]}
			if c.anthropic {
				h["anthropic-version"] = "2023-06-01"
			}
			resp, body := g.do(t, "GET", "/v1/models", nil, h)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if !requestIDPattern.MatchString(resp.Header.Get("x-sluice-request-id")) {
				t.Error("missing x-sluice-request-id")
			}
			var list struct {
				Object string
				Data   []struct{ ID, Type, Object string }
			}
			if err := json.Unmarshal(body, &list); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range list.Data {
				ids = append(ids, m.ID)
				if c.anthropic && m.Type != "model" || !c.anthropic && m.Object != "model" {
					t.Errorf("entry %s is not in the %v shape: %s", m.ID, c.anthropic, body)
				}
			}
			if strings.Join(ids, ",") != strings.Join(c.want, ",") {
				t.Errorf("models = %v, want %v", ids, c.want)
			}
			if !c.anthropic && list.Object != "list" {
				t.Errorf("object = %q, want list", list.Object)
			}
		})
	}
}

// TestDispatcherRequiresContext: the dispatcher refuses any request that did not pass extproc.
func TestDispatcherRequiresContext(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + marker + `"}]}`
	forge := func(method jwt.SigningMethod, key any) string {
		tok := jwt.NewWithClaims(method, jwt.MapClaims{
			"rid": "r", "kid": "vk_x", "model": "gpt-4o-mini", "fmt": "openai", "ep": "chat_completions",
			"chain": []map[string]string{{"p": "p-openai", "m": "gpt-4o-mini"}},
			"iss":   "sluice-extproc", "exp": time.Now().Add(time.Minute).Unix(),
		})
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cases := map[string]string{
		"missing":    "",
		"garbage":    "not-a-token",
		"wrong key":  forge(jwt.SigningMethodHS256, []byte(strings.Repeat("k", 32))),
		"alg none":   forge(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"gateway id": "x-sluice-ctx-from-client",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "http://"+g.dispatcher+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("content-type", "application/json")
			req.Header.Set("authorization", "Bearer "+g.keys["main"])
			if tok != "" {
				req.Header.Set("x-sluice-ctx", tok)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkError(t, resp, b, errorCase{status: 401, code: "invalid_context"}, g)
		})
	}
	if n := len(g.fake.Requests(marker)); n != 0 {
		t.Fatalf("a request without a valid context reached the provider %d times", n)
	}
}

// TestClientCannotSetInternalHeaders: client-sent x-sluice-* headers and X-Request-Id are
// neither trusted nor forwarded.
func TestClientCannotSetInternalHeaders(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	resp, body := g.do(t, "POST", "/v1/chat/completions",
		strings.NewReader(`{"model":"fast","messages":[{"role":"user","content":"`+marker+`"}]}`),
		map[string]string{
			"authorization": "Bearer " + g.keys["main"], "content-type": "application/json",
			"x-sluice-ctx": "forged", "x-sluice-request-id": "client-id", "x-sluice-anything": "1",
			"x-request-id": "client-id",
		})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if id := resp.Header.Get("x-sluice-request-id"); !requestIDPattern.MatchString(id) {
		t.Errorf("x-sluice-request-id = %q: the client's value was used", id)
	}
	recs := g.fake.Requests(marker)
	if len(recs) != 1 {
		t.Fatalf("provider saw %d requests", len(recs))
	}
	checkProviderHeaders(t, g, recs[0].Header, false)
	// The alias "fast" is resolved per attempt: the provider sees the real model name.
	var sent struct{ Model string }
	_ = json.Unmarshal(recs[0].Body, &sent)
	if sent.Model != "gpt-4o-mini" {
		t.Errorf("provider got model %q, want the alias target gpt-4o-mini", sent.Model)
	}
}

// TestProviderErrorVerbatim: a provider's 4xx reaches the client unchanged, with its status.
func TestProviderErrorVerbatim(t *testing.T) {
	g := startGateway(t)
	marker := newMarker()
	g.fake.Script(marker, fakeprovider.Script{Status: 400})
	resp, body := g.do(t, "POST", "/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"`+marker+`"}]}`),
		map[string]string{"authorization": "Bearer " + g.keys["main"], "content-type": "application/json"})
	if resp.StatusCode != 400 {
		t.Fatalf("status %d, want the provider's 400: %s", resp.StatusCode, body)
	}
	if !requestIDPattern.MatchString(resp.Header.Get("x-sluice-request-id")) {
		t.Error("missing x-sluice-request-id")
	}
	if n := len(g.fake.Requests(marker)); n != 1 {
		t.Errorf("provider saw %d attempts; a 400 must not be retried", n)
	}
}

// TestStreamCutEndsWithError: a provider stream that breaks after the first byte reached the
// client ends with an error event in the client's format, never a clean end.
func TestStreamCutEndsWithError(t *testing.T) {
	g := startGateway(t)
	cases := []struct {
		name, path, body, wantTail string
		header                     map[string]string
	}{
		{"openai", "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"MARK"}]}`,
			`data: {"error":`, map[string]string{"authorization": "Bearer " + g.keys["main"]}},
		{"anthropic", "/v1/messages", `{"model":"claude-sonnet-4-5","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"MARK"}]}`,
			"event: error\ndata: {\"type\":\"error\"", map[string]string{"x-api-key": g.keys["main"], "anthropic-version": "2023-06-01"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			marker := newMarker()
			g.fake.Script(marker, fakeprovider.Script{CutAfterEvents: 3})
			c.header["content-type"] = "application/json"
			resp, body := g.do(t, "POST", c.path, strings.NewReader(strings.Replace(c.body, "MARK", marker, 1)), c.header)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			s := strings.TrimSpace(string(body))
			i := strings.LastIndex(s, "\n\n")
			if last := s[i+2:]; !strings.HasPrefix(last, c.wantTail) {
				t.Errorf("stream does not end with an error event; last event: %q", last)
			}
			if strings.Contains(s, "[DONE]") || strings.Contains(s, "message_stop") {
				t.Errorf("a cut stream was closed as if complete: %s", s)
			}
		})
	}
}
