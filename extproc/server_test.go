package extproc

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/internal/wire"
)

func TestNewRequiresDependencies(t *testing.T) {
	h, _ := vkey.NewHasher(testPepper)
	s, _ := ctxtoken.NewSigner(testSignKey)
	l := slog.New(slog.DiscardHandler)
	for name, c := range map[string]Config{
		"no logger": {Signer: s, Hasher: h},
		"no signer": {Logger: l, Hasher: h},
		"no hasher": {Logger: l, Signer: s},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%s): got nil error", name)
		}
	}
}

func TestHeadersAcceptKey(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		kv   []string
	}{
		{"bearer", []string{"authorization", f.bearer("vk_main")}},
		{"bearer lower case", []string{"authorization", "bearer " + f.secret["vk_main"]}},
		{"bearer extra space", []string{"authorization", "Bearer  " + f.secret["vk_main"] + " "}},
		{"x-api-key", []string{"x-api-key", f.secret["vk_main"]}},
		{"x-api-key wins over authorization", []string{"authorization", "Bearer garbage", "x-api-key", f.secret["vk_main"]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, tt.kv...))
			if len(sent) != 1 || sent[0].GetRequestHeaders() == nil {
				t.Fatalf("sent %v, want one headers response", sent)
			}
		})
	}
}

func TestHeadersLegacyValueField(t *testing.T) {
	f := newFixture(t)
	msg := headersMsg("POST", "/v1/chat/completions", false)
	hs := msg.GetRequestHeaders().Headers
	hs.Headers = append(hs.Headers, &corev3.HeaderValue{Key: "authorization", Value: f.bearer("vk_main")})
	sent := f.run(t, msg)
	if len(sent) != 1 || sent[0].GetRequestHeaders() == nil {
		t.Fatalf("sent %v, want one headers response (key in the legacy value field)", sent)
	}
}

func TestHeadersRejectKey(t *testing.T) {
	f := newFixture(t)
	unknown, err := vkey.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	good := f.secret["vk_main"]
	typo := good[:len(good)-1] + string(good[len(good)-1]^1)
	cases := []struct {
		name string
		kv   []string
	}{
		{"missing", nil},
		{"empty bearer", []string{"authorization", "Bearer "}},
		{"basic scheme", []string{"authorization", "Basic " + good}},
		{"no scheme", []string{"authorization", good}},
		{"malformed", []string{"authorization", "Bearer sk-sluice-short"}},
		{"checksum typo", []string{"authorization", "Bearer " + typo}},
		{"openai key", []string{"authorization", "Bearer sk-proj-abcdefghijklmnopqrstuvwxyz0123456789AB"}},
		{"unknown", []string{"authorization", "Bearer " + unknown}},
		{"unknown x-api-key", []string{"x-api-key", unknown}},
	}
	routes := []struct {
		method, path string
		format       wire.Format
		extra        []string
	}{
		{"POST", "/v1/chat/completions", wire.OpenAI, nil},
		{"POST", "/v1/messages", wire.Anthropic, []string{"anthropic-version", "2023-06-01"}},
		{"POST", "/v1/messages?beta=true", wire.Anthropic, nil},
		{"GET", "/v1/models", wire.OpenAI, nil},
		{"GET", "/v1/models", wire.Anthropic, []string{"anthropic-version", "2023-06-01"}},
	}
	for _, c := range cases {
		for _, r := range routes {
			t.Run(c.name+" "+r.path+" "+r.format.String(), func(t *testing.T) {
				sent := f.run(t, headersMsg(r.method, r.path, false, append(slices.Clone(c.kv), r.extra...)...),
					bodyMsg(`{"model":"gpt-4o"}`))
				if len(sent) != 1 {
					t.Fatalf("sent %d responses, want 1 (the stream ends at the immediate response)", len(sent))
				}
				checkReject(t, sent[0], http.StatusUnauthorized, r.format, "invalid_api_key")
			})
		}
	}
}

func TestRevokedKeyRefusedAfterLoad(t *testing.T) {
	f := newFixture(t)
	c := testConfig(f.hash)
	c.Keys = slices.DeleteFunc(c.Keys, func(k config.Key) bool { return k.ID == "vk_narrow" })
	if err := f.srv.Load(c); err != nil {
		t.Fatal(err)
	}
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_narrow")))
	checkReject(t, sent[0], http.StatusUnauthorized, wire.OpenAI, "invalid_api_key")
}

func TestHeaderMutation(t *testing.T) {
	f := newFixture(t)
	sent := f.run(t, headersMsg("POST", "/v1/messages", false,
		"authorization", f.bearer("vk_main"),
		"x-api-key", f.secret["vk_main"],
		"anthropic-version", "2023-06-01",
		"x-sluice-trace-id", "client-trace",
		"x-sluice-fallback-count", "9",
		"x-sluice-request-id", "client-chosen-id",
		"x-request-id", "kept",
		"content-type", "application/json",
	))
	if len(sent) != 1 {
		t.Fatalf("sent %d responses, want 1", len(sent))
	}
	hr := sent[0].GetRequestHeaders()
	if hr == nil {
		t.Fatalf("response is %T, want request headers", sent[0].GetResponse())
	}
	m := hr.GetResponse().GetHeaderMutation()
	got := slices.Sorted(slices.Values(m.GetRemoveHeaders()))
	want := []string{"authorization", "x-api-key", "x-sluice-fallback-count", "x-sluice-trace-id"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("removed headers = %q, want %q", got, want)
	}
	id, ok := setValue(m, wire.HeaderRequestID)
	if !ok {
		t.Fatalf("header mutation does not overwrite %s", wire.HeaderRequestID)
	}
	if id == "client-chosen-id" {
		t.Errorf("request id taken from the client")
	}
	checkRequestID(t, id)
	for _, h := range m.GetSetHeaders() {
		if k := h.GetHeader().GetKey(); k != wire.HeaderRequestID {
			t.Errorf("header phase sets %q; only the request id is expected", k)
		}
	}
}

func TestHeadersRouting(t *testing.T) {
	f := newFixture(t)
	auth := []string{"authorization", f.bearer("vk_main")}
	tests := []struct {
		name   string
		msg    *extprocv3.ProcessingRequest
		status int
		format wire.Format
		code   string
	}{
		{"unknown path", headersMsg("POST", "/v1/files", false, auth...), 404, wire.OpenAI, "not_found"},
		{"unknown path without key", headersMsg("POST", "/v2/chat", false), 404, wire.OpenAI, "not_found"},
		{"unknown anthropic path", headersMsg("POST", "/v1/messages/batches", false, auth...), 404, wire.Anthropic, "not_found"},
		{"GET chat", headersMsg("GET", "/v1/chat/completions", true, auth...), 405, wire.OpenAI, "method_not_allowed"},
		{"POST models", headersMsg("POST", "/v1/models", false, auth...), 405, wire.OpenAI, "method_not_allowed"},
		{"POST without body", headersMsg("POST", "/v1/chat/completions", true, auth...), 400, wire.OpenAI, "invalid_request_error"},
		{"POST messages without body", headersMsg("POST", "/v1/messages", true, auth...), 400, wire.Anthropic, "invalid_request_error"},
		{"content-length over limit", headersMsg("POST", "/v1/chat/completions", false, append(auth, "content-length", "1025")...), 413, wire.OpenAI, "request_too_large"},
		{"anthropic content-length over limit", headersMsg("POST", "/v1/messages", false, append(auth, "content-length", "99999999")...), 413, wire.Anthropic, "request_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := f.run(t, tt.msg)
			if len(sent) != 1 {
				t.Fatalf("sent %d responses, want 1", len(sent))
			}
			checkReject(t, sent[0], tt.status, tt.format, tt.code)
		})
	}
	// At the limit is fine.
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, append(auth, "content-length", "1024")...))
	if sent[0].GetRequestHeaders() == nil {
		t.Errorf("content-length at the limit refused: %v", sent[0])
	}
}

func TestModels(t *testing.T) {
	f := newFixture(t)
	want := []string{"claude-haiku-4", "claude-sonnet-4", "fast", "gpt-4o", "gpt-4o-mini", "smart"}

	t.Run("openai", func(t *testing.T) {
		sent := f.run(t, headersMsg("GET", "/v1/models", true, "authorization", f.bearer("vk_main")))
		ir := mustImmediate(t, sent[0])
		if ir.GetStatus().GetCode() != 200 {
			t.Fatalf("status = %d, want 200", ir.GetStatus().GetCode())
		}
		if id, ok := setValue(ir.GetHeaders(), wire.HeaderRequestID); !ok {
			t.Errorf("no request id")
		} else {
			checkRequestID(t, id)
		}
		var body struct {
			Object string
			Data   []map[string]any
		}
		if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
			t.Fatalf("body %s: %v", ir.GetBody(), err)
		}
		if body.Object != "list" {
			t.Errorf("object = %q, want list", body.Object)
		}
		var ids []string
		for _, m := range body.Data {
			ids = append(ids, m["id"].(string))
			if m["object"] != "model" || m["owned_by"] == nil || m["created"] == nil {
				t.Errorf("model %v lacks OpenAI fields", m)
			}
		}
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("models = %q, want %q", ids, want)
		}
	})

	t.Run("anthropic", func(t *testing.T) {
		sent := f.run(t, headersMsg("GET", "/v1/models?limit=20", true,
			"x-api-key", f.secret["vk_main"], "anthropic-version", "2023-06-01"))
		ir := mustImmediate(t, sent[0])
		if ir.GetStatus().GetCode() != 200 {
			t.Fatalf("status = %d, want 200", ir.GetStatus().GetCode())
		}
		var body struct {
			Data    []map[string]any `json:"data"`
			HasMore *bool            `json:"has_more"`
			FirstID string           `json:"first_id"`
			LastID  string           `json:"last_id"`
		}
		if err := json.Unmarshal(ir.GetBody(), &body); err != nil {
			t.Fatalf("body %s: %v", ir.GetBody(), err)
		}
		var ids []string
		for _, m := range body.Data {
			ids = append(ids, m["id"].(string))
			if m["type"] != "model" || m["display_name"] == nil || m["created_at"] == nil {
				t.Errorf("model %v lacks Anthropic fields", m)
			}
		}
		if !reflect.DeepEqual(ids, want) {
			t.Errorf("models = %q, want %q", ids, want)
		}
		if body.HasMore == nil || *body.HasMore || body.FirstID != want[0] || body.LastID != want[len(want)-1] {
			t.Errorf("paging = %v %q %q, want false %q %q", body.HasMore, body.FirstID, body.LastID, want[0], want[len(want)-1])
		}
	})

	t.Run("narrow key", func(t *testing.T) {
		sent := f.run(t, headersMsg("GET", "/v1/models", true, "authorization", f.bearer("vk_narrow")))
		got := string(mustImmediate(t, sent[0]).GetBody())
		if want := `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":0,"owned_by":"sluice"}]}`; got != want {
			t.Errorf("body = %s, want %s", got, want)
		}
	})
}

func TestLoadInvalidKeepsPrevious(t *testing.T) {
	f := newFixture(t)
	bad := testConfig(f.hash)
	bad.Keys[0].Providers = []string{"nope"}
	bad.Keys = append(bad.Keys, config.Key{ID: "vk_new", Hash: "not-hex"})
	if err := f.srv.Load(bad); err == nil {
		t.Fatal("Load(invalid) = nil, want error")
	}
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")),
		bodyMsg(`{"model":"gpt-4o"}`))
	if len(sent) != 2 || sent[1].GetRequestBody() == nil {
		t.Fatalf("after a refused Load the previous config should serve; got %v", sent)
	}
	claims := mustToken(t, f, sent[1])
	if want := []ctxtoken.Attempt{{Provider: "oa", Model: "gpt-4o"}}; !reflect.DeepEqual(claims.Chain, want) {
		t.Errorf("chain = %v, want %v (the previous config's)", claims.Chain, want)
	}
}

func TestEmptyServerRefusesEverything(t *testing.T) {
	f := newFixture(t)
	srv, err := New(f.srv.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newStream(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main")))
	if err := srv.Process(s); err != nil {
		t.Fatal(err)
	}
	checkReject(t, s.sent[0], http.StatusUnauthorized, wire.OpenAI, "invalid_api_key")
}

func TestProcessStreamEnd(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"eof", io.EOF, codes.OK},
		{"context canceled", context.Canceled, codes.OK},
		{"grpc canceled", status.Error(codes.Canceled, "client gone"), codes.OK},
		{"transport error", status.Error(codes.Unavailable, "broken"), codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStream(t)
			s.endErr = tt.err
			if got := status.Code(f.srv.Process(s)); got != tt.want {
				t.Errorf("Process = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOtherPhasesPassThrough(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		msg  *extprocv3.ProcessingRequest
		ok   func(*extprocv3.ProcessingResponse) bool
	}{
		{"response headers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseHeaders{ResponseHeaders: &extprocv3.HttpHeaders{}}},
			func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseHeaders() != nil }},
		{"response body", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseBody{ResponseBody: &extprocv3.HttpBody{}}},
			func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseBody() != nil }},
		{"request trailers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestTrailers{RequestTrailers: &extprocv3.HttpTrailers{}}},
			func(r *extprocv3.ProcessingResponse) bool { return r.GetRequestTrailers() != nil }},
		{"response trailers", &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_ResponseTrailers{ResponseTrailers: &extprocv3.HttpTrailers{}}},
			func(r *extprocv3.ProcessingResponse) bool { return r.GetResponseTrailers() != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sent := f.run(t, tt.msg)
			if len(sent) != 1 || !tt.ok(sent[0]) {
				t.Errorf("sent %v, want the matching empty response", sent)
			}
		})
	}
}

func TestMalformedMessagesDoNotCrash(t *testing.T) {
	f := newFixture(t)
	okHeaders := headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_main"))
	tests := []struct {
		name     string
		msgs     []*extprocv3.ProcessingRequest
		wantCode codes.Code // OK: answered normally; Internal: panic recovered
	}{
		{"nil header map", []*extprocv3.ProcessingRequest{{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{}}}}, codes.OK},
		{"nil headers message", []*extprocv3.ProcessingRequest{{Request: &extprocv3.ProcessingRequest_RequestHeaders{}}}, codes.OK},
		{"nil header entry", []*extprocv3.ProcessingRequest{{Request: &extprocv3.ProcessingRequest_RequestHeaders{
			RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{nil}}}}}}, codes.Internal},
		{"body before headers", []*extprocv3.ProcessingRequest{bodyMsg(`{"model":"gpt-4o"}`)}, codes.OK},
		{"nil body message", []*extprocv3.ProcessingRequest{okHeaders, {Request: &extprocv3.ProcessingRequest_RequestBody{}}}, codes.Internal},
		{"empty request", []*extprocv3.ProcessingRequest{{}}, codes.OK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStream(t, tt.msgs...)
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Process panicked: %v", r)
					}
				}()
				err = f.srv.Process(s)
			}()
			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("Process = %v, want code %v", err, tt.wantCode)
			}
			if tt.wantCode == codes.Internal && errors.Is(err, io.EOF) {
				t.Errorf("panic surfaced as EOF")
			}
		})
	}
	// The server still serves after a recovered panic.
	sent := f.run(t, okHeaders, bodyMsg(`{"model":"gpt-4o"}`))
	if len(sent) != 2 || sent[1].GetRequestBody() == nil {
		t.Errorf("server broken after a recovered panic: %v", sent)
	}
}
