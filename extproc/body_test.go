package extproc

import (
	"net/http"
	"reflect"
	"strings"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/tidwall/gjson"

	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// mustToken checks r is a body response that sets x-sluice-ctx and nothing else, leaves the
// body alone, and returns the verified claims.
func mustToken(t testing.TB, f *fixture, r *extprocv3.ProcessingResponse) *ctxtoken.Claims {
	t.Helper()
	br := r.GetRequestBody()
	if br == nil {
		if ir := r.GetImmediateResponse(); ir != nil {
			t.Fatalf("immediate response %d %s, want body response", ir.GetStatus().GetCode(), ir.GetBody())
		}
		t.Fatalf("response is %T, want request body", r.GetResponse())
	}
	if br.GetResponse().GetBodyMutation() != nil {
		t.Errorf("body response mutates the body")
	}
	m := br.GetResponse().GetHeaderMutation()
	if len(m.GetSetHeaders()) != 1 || len(m.GetRemoveHeaders()) != 0 {
		t.Errorf("body response mutation = %v, want only %s set", m, wire.HeaderContext)
	}
	tok, ok := setValue(m, wire.HeaderContext)
	if !ok {
		t.Fatalf("body response does not overwrite %s", wire.HeaderContext)
	}
	c, err := f.verifier.Verify(tok)
	if err != nil {
		t.Fatalf("Verify(x-sluice-ctx): %v", err)
	}
	return c
}

func TestBodyToken(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name     string
		path     string
		key      string
		body     string
		extra    []string
		endpoint string
		format   string
		stream   bool
		chain    []ctxtoken.Attempt
	}{
		{
			name: "chat", path: "/v1/chat/completions", key: "vk_main",
			body:     `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
			endpoint: "chat_completions", format: "openai",
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o"}},
		},
		{
			name: "chat stream", path: "/v1/chat/completions?x=1", key: "vk_main",
			body:     `{"stream":true,"model":"gpt-4o-mini","messages":[]}`,
			endpoint: "chat_completions", format: "openai", stream: true,
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o-mini"}},
		},
		{
			name: "stream false", path: "/v1/chat/completions", key: "vk_main",
			body:     `{"model":"gpt-4o","stream":false}`,
			endpoint: "chat_completions", format: "openai",
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o"}},
		},
		{
			name: "messages", path: "/v1/messages", key: "vk_main", extra: []string{"anthropic-version", "2023-06-01"},
			body:     `{"model":"claude-sonnet-4","max_tokens":10,"stream":true,"messages":[]}`,
			endpoint: "messages", format: "anthropic", stream: true,
			chain: []ctxtoken.Attempt{{Provider: "an", Model: "claude-sonnet-4"}},
		},
		{
			name: "per-provider alias", path: "/v1/chat/completions", key: "vk_main",
			body:     `{"model":"smart"}`,
			endpoint: "chat_completions", format: "openai",
			// local is named by the alias but is not on vk_main's chain.
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o"}, {Provider: "an", Model: "claude-sonnet-4"}},
		},
		{
			name: "any key, model served by a listing provider and the catch-all", path: "/v1/chat/completions", key: "vk_any",
			body:     `{"model":"gpt-4o"}`,
			endpoint: "chat_completions", format: "openai",
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o"}, {Provider: "local", Model: "gpt-4o"}},
		},
		{
			name: "any key, model only the catch-all serves", path: "/v1/chat/completions", key: "vk_any",
			body:     `{"model":"llama3"}`,
			endpoint: "chat_completions", format: "openai",
			chain: []ctxtoken.Attempt{{Provider: "local", Model: "llama3"}},
		},
		{
			name: "any key, config order", path: "/v1/messages", key: "vk_any",
			body:     `{"model":"claude-haiku-4"}`,
			endpoint: "messages", format: "anthropic",
			chain: []ctxtoken.Attempt{{Provider: "an", Model: "claude-haiku-4"}, {Provider: "local", Model: "claude-haiku-4"}},
		},
		{
			name: "nested model fields ignored", path: "/v1/chat/completions", key: "vk_narrow",
			body:     `{"metadata":{"model":"gpt-4o"},"model":"gpt-4o-mini","tools":[{"model":"x"}]}`,
			endpoint: "chat_completions", format: "openai",
			chain: []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o-mini"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := append([]string{"authorization", f.bearer(tt.key)}, tt.extra...)
			sent := f.run(t, headersMsg("POST", tt.path, false, kv...), bodyMsg(tt.body))
			if len(sent) != 2 {
				t.Fatalf("sent %d responses, want 2", len(sent))
			}
			id, _ := setValue(sent[0].GetRequestHeaders().GetResponse().GetHeaderMutation(), wire.HeaderRequestID)
			c := mustToken(t, f, sent[1])
			want := ctxtoken.Claims{
				RequestID: id, KeyID: tt.key, Model: gjson.Get(tt.body, "model").Str,
				Format: tt.format, Endpoint: tt.endpoint, Stream: tt.stream, Chain: tt.chain, CacheMode: "respect",
			}
			if tt.key == "vk_main" {
				want.OrgID, want.TeamID, want.ProjectID, want.PrincipalID = "org1", "team1", "proj1", "alice"
			} else {
				want.OrgID = "default" // a static key without an org belongs to the default one
			}
			got := *c
			got.RegisteredClaims = want.RegisteredClaims
			if tr := got.Trace; tr == nil || len(tr.TraceID) != 32 || len(tr.SpanID) != 16 || tr.ParentID != "" || tr.StartNanos == 0 {
				t.Errorf("trace claims = %+v, want a new trace with a gateway span and a start", tr)
			}
			got.Trace = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("claims:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// A string alias names one model for every provider; a provider whose Models list does not
// include that model cannot serve it and should not be on the chain.
func TestStringAliasFiltersByProviderModels(t *testing.T) {
	f := newFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")),
		bodyMsg(`{"model":"fast"}`))
	c := mustToken(t, f, sent[1])
	want := []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o-mini"}}
	if !reflect.DeepEqual(c.Chain, want) {
		t.Fatal("string alias skips provider Models filtering: chain " + chainString(c.Chain) +
			" sends gpt-4o-mini to the anthropic provider that does not list it")
	}
}

func chainString(c []ctxtoken.Attempt) string {
	var b strings.Builder
	for i, a := range c {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(a.Provider + ":" + a.Model)
	}
	return "[" + b.String() + "]"
}

func TestBodyRejects(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		key    string
		path   string
		body   string
		status int
		code   string
	}{
		{"invalid json", "vk_main", "/v1/chat/completions", `{"model":"gpt-4o",`, 400, "invalid_json"},
		{"invalid json anthropic", "vk_main", "/v1/messages", `{model:claude}`, 400, "invalid_json"},
		{"array", "vk_main", "/v1/chat/completions", `[{"model":"gpt-4o"}]`, 400, "invalid_json"},
		{"string", "vk_main", "/v1/chat/completions", `"gpt-4o"`, 400, "invalid_json"},
		{"empty body", "vk_main", "/v1/chat/completions", ``, 400, "invalid_request_error"},
		{"missing model", "vk_main", "/v1/chat/completions", `{"messages":[]}`, 400, "missing_model"},
		{"empty model", "vk_main", "/v1/messages", `{"model":""}`, 400, "missing_model"},
		{"numeric model", "vk_main", "/v1/chat/completions", `{"model":4}`, 400, "missing_model"},
		{"null model", "vk_main", "/v1/chat/completions", `{"model":null}`, 400, "missing_model"},
		{"stream string", "vk_main", "/v1/chat/completions", `{"model":"gpt-4o","stream":"true"}`, 400, "invalid_request_error"},
		{"stream number", "vk_main", "/v1/messages", `{"model":"claude-sonnet-4","stream":1}`, 400, "invalid_request_error"},
		{"stream null", "vk_main", "/v1/chat/completions", `{"model":"gpt-4o","stream":null}`, 400, "invalid_request_error"},
		{"oversize", "vk_main", "/v1/chat/completions", `{"model":"gpt-4o","pad":"` + strings.Repeat("x", testMaxBytes) + `"}`, 413, "request_too_large"},
		{"oversize anthropic", "vk_main", "/v1/messages", `{"model":"claude-sonnet-4","pad":"` + strings.Repeat("x", testMaxBytes) + `"}`, 413, "request_too_large"},
		{"not allowed", "vk_narrow", "/v1/chat/completions", `{"model":"gpt-4o"}`, 403, "model_not_allowed"},
		{"not allowed anthropic", "vk_main", "/v1/messages", `{"model":"llama3"}`, 403, "model_not_allowed"},
		{"allowed but unserved", "vk_main", "/v1/chat/completions", `{"model":"gpt-5"}`, 404, "model_not_found"},
		{"allowed but unserved anthropic", "vk_main", "/v1/messages", `{"model":"claude-opus-9"}`, 404, "model_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			format := wire.OpenAI
			if strings.HasPrefix(tt.path, "/v1/messages") {
				format = wire.Anthropic
			}
			sent := f.run(t, headersMsg("POST", tt.path, false, "authorization", f.bearer(tt.key)), bodyMsg(tt.body))
			if len(sent) != 2 {
				t.Fatalf("sent %d responses, want 2", len(sent))
			}
			headerID, _ := setValue(sent[0].GetRequestHeaders().GetResponse().GetHeaderMutation(), wire.HeaderRequestID)
			id := checkReject(t, sent[1], tt.status, format, tt.code)
			if id != headerID {
				t.Errorf("reject names request %q, headers phase stamped %q", id, headerID)
			}
			if body := string(sent[1].GetImmediateResponse().GetBody()); strings.Contains(body, f.secret[tt.key]) {
				t.Errorf("error body leaks the key: %s", body)
			}
		})
	}
}

func TestBodyAtLimitAccepted(t *testing.T) {
	f := newFixture(t)
	prefix := `{"model":"gpt-4o","pad":"`
	body := prefix + strings.Repeat("x", testMaxBytes-len(prefix)-2) + `"}`
	if len(body) != testMaxBytes {
		t.Fatalf("test body is %d bytes, want %d", len(body), testMaxBytes)
	}
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")), bodyMsg(body))
	mustToken(t, f, sent[1])
}

func TestParamNamed(t *testing.T) {
	f := newFixture(t)
	for body, want := range map[string]string{
		`{"messages":[]}`:                  `"param":"model"`,
		`{"model":"gpt-4o","stream":"no"}`: `"param":"stream"`,
		`{"model":"claude-sonnet-4"}`:      `"param":"model"`, // vk_narrow: not allowed
	} {
		sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_narrow")), bodyMsg(body))
		if got := string(sent[1].GetImmediateResponse().GetBody()); !strings.Contains(got, want) {
			t.Errorf("body %s: error %s does not name %s", body, got, want)
		}
	}
}

func TestEachStreamGetsItsOwnRequestID(t *testing.T) {
	f := newFixture(t)
	seen := map[string]bool{}
	for range 50 {
		sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")),
			bodyMsg(`{"model":"gpt-4o"}`))
		c := mustToken(t, f, sent[1])
		if seen[c.RequestID] {
			t.Fatalf("request id %q minted twice", c.RequestID)
		}
		seen[c.RequestID] = true
	}
}

func TestConcurrentProcessAndLoad(t *testing.T) {
	f := newFixture(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 50 {
			if err := f.srv.Load(testConfig(f.hash)); err != nil {
				t.Errorf("Load: %v", err)
				return
			}
		}
	}()
	for range 50 {
		s := newStream(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", "Bearer "+f.secret["vk_main"]),
			bodyMsg(`{"model":"gpt-4o"}`))
		if err := f.srv.Process(s); err != nil {
			t.Fatal(err)
		}
		if len(s.sent) != 2 || s.sent[1].GetRequestBody() == nil {
			t.Fatalf("request failed during reload: %v", s.sent)
		}
	}
	<-done
}

// Errors from the body phase reach Envoy as immediate responses even for a 403: the
// status is the user-facing one, never a gRPC error.
func TestRejectIsNotGRPCError(t *testing.T) {
	f := newFixture(t)
	s := newStream(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_narrow")),
		bodyMsg(`{"model":"gpt-4o"}`))
	if err := f.srv.Process(s); err != nil {
		t.Fatalf("Process = %v, want nil", err)
	}
	if got := s.sent[1].GetImmediateResponse().GetStatus().GetCode(); int(got) != http.StatusForbidden {
		t.Errorf("status = %d, want 403", got)
	}
}
