package extproc

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// fakeStream is an in-memory ext_proc stream. It plays Envoy's part of the protocol: it
// delivers queued messages in order, expects exactly one response per message, and stops
// delivering once the server answers with an ImmediateResponse (Envoy then ends the stream).
// Methods of grpc.ServerStream that Process has no business calling panic on the nil embed.
type fakeStream struct {
	grpc.ServerStream
	t       testing.TB
	ctx     context.Context
	queue   []*extprocv3.ProcessingRequest
	next    int
	pending bool  // a message was delivered and not yet answered
	done    bool  // an ImmediateResponse ended the exchange
	endErr  error // returned once the queue is drained; nil means io.EOF
	sent    []*extprocv3.ProcessingResponse
}

var _ extprocv3.ExternalProcessor_ProcessServer = (*fakeStream)(nil)

func newStream(t testing.TB, msgs ...*extprocv3.ProcessingRequest) *fakeStream {
	return &fakeStream{t: t, ctx: context.Background(), queue: msgs}
}

func (f *fakeStream) Context() context.Context { return f.ctx }

func (f *fakeStream) Recv() (*extprocv3.ProcessingRequest, error) {
	if f.pending {
		f.t.Errorf("fakeStream: Recv before the previous message was answered")
	}
	if f.done || f.next == len(f.queue) {
		if f.endErr != nil {
			return nil, f.endErr
		}
		return nil, io.EOF
	}
	m := f.queue[f.next]
	f.next++
	f.pending = true
	return m, nil
}

func (f *fakeStream) Send(r *extprocv3.ProcessingResponse) error {
	if !f.pending {
		f.t.Errorf("fakeStream: Send without a message to answer")
	}
	f.pending = false
	if r.GetImmediateResponse() != nil {
		f.done = true
	}
	f.sent = append(f.sent, r)
	return nil
}

// reset rewinds the stream for another run (benchmarks), keeping the sent slice's storage.
func (f *fakeStream) reset() {
	f.next, f.pending, f.done, f.sent = 0, false, false, f.sent[:0]
}

// Envoy-side message builders.

func hdr(k, v string) *corev3.HeaderValue { return &corev3.HeaderValue{Key: k, RawValue: []byte(v)} }

// headersMsg builds a request-headers message; kv are extra header name/value pairs.
func headersMsg(method, path string, endOfStream bool, kv ...string) *extprocv3.ProcessingRequest {
	hs := []*corev3.HeaderValue{hdr(":method", method), hdr(":path", path), hdr(":authority", "gw.local")}
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, hdr(kv[i], kv[i+1]))
	}
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestHeaders{
		RequestHeaders: &extprocv3.HttpHeaders{Headers: &corev3.HeaderMap{Headers: hs}, EndOfStream: endOfStream}}}
}

func bodyMsg(b string) *extprocv3.ProcessingRequest {
	return &extprocv3.ProcessingRequest{Request: &extprocv3.ProcessingRequest_RequestBody{
		RequestBody: &extprocv3.HttpBody{Body: []byte(b), EndOfStream: true}}}
}

// fixture is a Server loaded with a small config and the secrets of its keys.
type fixture struct {
	srv      *Server
	hasher   *vkey.Hasher
	verifier *ctxtoken.Verifier
	secret   map[string]string // key id → secret
}

const testMaxBytes = 1024

var (
	testSignKey = []byte("sign-key-sign-key-sign-key-sign-key!")
	testPepper  = []byte("pepper-pepper-pepper-pepper-pepper!!")
)

// testConfig returns the fixture's config; hash maps a key id to its stored hash.
//
//	oa    openai             gpt-4o, gpt-4o-mini
//	an    anthropic          claude-sonnet-4, claude-haiku-4
//	local openai-compatible  any model
//
//	vk_main    chain oa, an; gpt-* and claude-*; aliases fast (string) and smart (per provider)
//	vk_any     every provider, every model
//	vk_narrow  chain oa; only gpt-4o-mini
func testConfig(hash func(id string) string) *config.Config {
	return &config.Config{
		Version: config.Version,
		Providers: []config.Provider{
			{ID: "oa", Type: config.ProviderOpenAI, Models: []string{"gpt-4o", "gpt-4o-mini"}},
			{ID: "an", Type: config.ProviderAnthropic, Models: []string{"claude-sonnet-4", "claude-haiku-4"}},
			{ID: "local", Type: config.ProviderOpenAICompatible, BaseURL: "http://127.0.0.1:11434"},
		},
		Keys: []config.Key{
			{
				ID: "vk_main", Hash: hash("vk_main"), OrgID: "org1", TeamID: "team1", ProjectID: "proj1",
				PrincipalID: "alice", Providers: []string{"oa", "an"},
				ModelsAllowed: []string{"gpt-*", "claude-*"},
				ModelAliases: map[string]config.Alias{
					"fast":  {Model: "gpt-4o-mini"},
					"smart": {ByProvider: map[string]string{"oa": "gpt-4o", "an": "claude-sonnet-4", "local": "llama3"}},
				},
			},
			{ID: "vk_any", Hash: hash("vk_any")},
			{ID: "vk_narrow", Hash: hash("vk_narrow"), Providers: []string{"oa"}, ModelsAllowed: []string{"gpt-4o-mini"}},
		},
	}
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	hasher, err := vkey.NewHasher(testPepper)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ctxtoken.NewSigner(testSignKey)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := ctxtoken.NewVerifier(testSignKey)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{
		Logger: slog.New(slog.DiscardHandler), Signer: signer, Hasher: hasher, MaxRequestBytes: testMaxBytes,
	})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: srv, hasher: hasher, verifier: verifier, secret: map[string]string{}}
	if err := srv.Load(testConfig(f.hash)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return f
}

// hash mints a secret for id on first use and returns its stored hash.
func (f *fixture) hash(id string) string {
	s, ok := f.secret[id]
	if !ok {
		var err error
		if s, err = vkey.NewSecret(); err != nil {
			panic(err)
		}
		f.secret[id] = s
	}
	return f.hasher.Sum(s).Hex()
}

func (f *fixture) bearer(id string) string { return "Bearer " + f.secret[id] }

// run drives one stream through Process and returns what the server sent.
func (f *fixture) run(t testing.TB, msgs ...*extprocv3.ProcessingRequest) []*extprocv3.ProcessingResponse {
	t.Helper()
	s := newStream(t, msgs...)
	if err := f.srv.Process(s); err != nil {
		t.Fatalf("Process: %v", err)
	}
	if s.pending {
		t.Errorf("Process returned with a message unanswered")
	}
	return s.sent
}

// Response inspection helpers.

func mustImmediate(t testing.TB, r *extprocv3.ProcessingResponse) *extprocv3.ImmediateResponse {
	t.Helper()
	ir := r.GetImmediateResponse()
	if ir == nil {
		t.Fatalf("response is %T, want ImmediateResponse", r.GetResponse())
	}
	return ir
}

func setValue(m *extprocv3.HeaderMutation, key string) (string, bool) {
	for _, h := range m.GetSetHeaders() {
		if h.GetHeader().GetKey() == key {
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				return "", false
			}
			v := h.GetHeader().GetRawValue()
			if len(v) == 0 {
				return h.GetHeader().GetValue(), true
			}
			return string(v), true
		}
	}
	return "", false
}

func checkRequestID(t testing.TB, id string) {
	t.Helper()
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		t.Errorf("request id %q is not 32 hex digits", id)
	}
}

// errorEnvelope checks body is an error in format f with code, and returns the message.
func errorEnvelope(t testing.TB, f wire.Format, body []byte, code string) string {
	t.Helper()
	var m struct {
		Type  string `json:"type"`
		Error struct {
			Type, Message, Code string
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body %s is not JSON: %v", body, err)
	}
	if f == wire.Anthropic && m.Type != "error" {
		t.Errorf("body %s: want Anthropic envelope (type \"error\")", body)
	}
	if f == wire.OpenAI && m.Type != "" {
		t.Errorf("body %s: want OpenAI envelope (no top-level type)", body)
	}
	if m.Error.Code != code {
		t.Errorf("error code = %q, want %q (body %s)", m.Error.Code, code, body)
	}
	if m.Error.Type == "" || m.Error.Message == "" {
		t.Errorf("body %s lacks error type or message", body)
	}
	return m.Error.Message
}

// checkReject checks r is an ImmediateResponse with status and code in format f, stamped with a
// request id, and returns that id.
func checkReject(t testing.TB, r *extprocv3.ProcessingResponse, status int, f wire.Format, code string) string {
	t.Helper()
	ir := mustImmediate(t, r)
	if got := int(ir.GetStatus().GetCode()); got != status {
		t.Errorf("status = %d, want %d (body %s)", got, status, ir.GetBody())
	}
	if ct, _ := setValue(ir.GetHeaders(), "content-type"); ct != "application/json" {
		t.Errorf("content-type = %q, want application/json", ct)
	}
	id, ok := setValue(ir.GetHeaders(), wire.HeaderRequestID)
	if !ok {
		t.Errorf("immediate response does not set %s", wire.HeaderRequestID)
	}
	checkRequestID(t, id)
	errorEnvelope(t, f, ir.GetBody(), code)
	if ir.GetDetails() != code {
		t.Errorf("details = %q, want %q", ir.GetDetails(), code)
	}
	return id
}
