package dispatcher

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/wire"
)

var (
	testSignKey  = []byte("sign-key-sign-key-sign-key-sign-key!")
	forgedKey    = []byte("not-the-key-not-the-key-not-the-key!")
	testProvider = "sk-provider-CANARY-0123456789"
)

// step is one scripted attempt of a fakeLane: write (optional) answers the client, which makes
// the attempt committed; res is what Do returns.
type step struct {
	write func(w http.ResponseWriter)
	res   attempt.Result
}

// answer is a step that commits status and body to the client.
func answer(status int, body string) step {
	return step{
		write: func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		},
		res: attempt.Result{Status: status, Committed: true},
	}
}

// fail is a step that leaves the client untouched and reports a provider error.
func fail(status int, retryable bool, body string) step {
	return step{res: attempt.Result{
		Status: status, Retryable: retryable, Body: []byte(body),
		Header: http.Header{"Content-Type": {"application/json"}},
	}}
}

type call struct {
	Provider  string
	Model     string
	RequestID string
	Format    wire.Format
	Endpoint  wire.Endpoint
	Stream    bool
	Body      string
	Header    http.Header
	RawQuery  string
	// FallbackHeader is X-Sluice-Fallback-Count as the attempt began.
	FallbackHeader string
}

// fakeLane is a scripted Lane that records its calls and enforces the contract: a step that
// writes must report Committed, and one that does not must not.
type fakeLane struct {
	t     testing.TB
	mu    sync.Mutex
	steps []step
	calls []call
}

var _ Lane = (*fakeLane)(nil)

func newLane(t testing.TB, steps ...step) *fakeLane { return &fakeLane{t: t, steps: steps} }

func (l *fakeLane) Do(ctx context.Context, req *attempt.Request, w http.ResponseWriter) attempt.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, call{
		Provider: req.Provider.ID, Model: req.Model, RequestID: req.RequestID, Format: req.ClientFormat,
		Endpoint: req.Endpoint, Stream: req.Stream, Body: string(req.Body), Header: req.Header.Clone(),
		RawQuery: req.RawQuery, FallbackHeader: w.Header().Get(wire.HeaderFallbackCount),
	})
	if len(l.steps) == 0 {
		l.t.Errorf("fakeLane: unscripted call for provider %q", req.Provider.ID)
		return attempt.Result{Status: 500}
	}
	s := l.steps[0]
	l.steps = l.steps[1:]
	if (s.write != nil) != s.res.Committed {
		l.t.Fatalf("fakeLane: step writes=%v but Committed=%v", s.write != nil, s.res.Committed)
	}
	if s.write != nil {
		s.write(w)
	}
	return s.res
}

func (l *fakeLane) providers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, c := range l.calls {
		out = append(out, c.Provider+":"+c.Model)
	}
	return out
}

// testProviders: oa and oa2 speak OpenAI, an speaks Anthropic.
func testConfig(oaURL string) *config.Config {
	return &config.Config{
		Version: config.Version,
		Providers: []config.Provider{
			{ID: "oa", Type: config.ProviderOpenAI, BaseURL: oaURL, APIKeyEnv: "OA_KEY"},
			{ID: "oa2", Type: config.ProviderOpenAICompatible, BaseURL: oaURL + "/compat"},
			{ID: "an", Type: config.ProviderAnthropic, BaseURL: oaURL, APIKeyEnv: "AN_KEY"},
		},
	}
}

func getenv(k string) string {
	switch k {
	case "OA_KEY", "AN_KEY":
		return testProvider
	}
	return ""
}

// newServer builds a dispatcher with the given lanes (nil passthrough: the real one).
func newServer(t testing.TB, passthrough, translator Lane, upstreamURL string) *Server {
	t.Helper()
	v, err := ctxtoken.NewVerifier(testSignKey)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Logger: slog.New(slog.DiscardHandler), Verifier: v, Passthrough: passthrough, Translator: translator,
		Getenv: getenv, MaxRequestBytes: 4096, CredentialEnv: []string{"OA_KEY", "AN_KEY"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if upstreamURL == "" {
		upstreamURL = "http://provider.invalid"
	}
	if err := s.Load(testConfig(upstreamURL)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

func sign(t testing.TB, key []byte, c *ctxtoken.Claims) string {
	t.Helper()
	s, err := ctxtoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims returns the decision extproc would make for an OpenAI chat request over chain.
func claims(format wire.Format, stream bool, chain ...ctxtoken.Attempt) *ctxtoken.Claims {
	ep := wire.ChatCompletions
	if format == wire.Anthropic {
		ep = wire.Messages
	}
	return &ctxtoken.Claims{
		RequestID: "0123456789abcdef0123456789abcdef", KeyID: "vk_test", Model: "client-model",
		Format: format.String(), Endpoint: ep.String(), Stream: stream, Chain: chain,
	}
}

func chain(pm ...string) []ctxtoken.Attempt {
	var out []ctxtoken.Attempt
	for _, s := range pm {
		p, m, _ := strings.Cut(s, ":")
		out = append(out, ctxtoken.Attempt{Provider: p, Model: m})
	}
	return out
}

// request builds a request to the dispatcher as Envoy would send it.
func request(t testing.TB, path, body, token string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if token != "" {
		r.Header.Set(wire.HeaderContext, token)
	}
	return r
}

// errorCode checks body is an error envelope in format f and returns its code.
func errorCode(t testing.TB, f wire.Format, body []byte) string {
	t.Helper()
	var m struct {
		Type  string `json:"type"`
		Error struct{ Type, Code, Message string }
	}
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %q is not JSON: %v", body, err)
	}
	if (f == wire.Anthropic) != (m.Type == "error") {
		t.Errorf("body %s is not in the %v envelope", body, f)
	}
	if m.Error.Type == "" || m.Error.Message == "" {
		t.Errorf("body %s lacks error type or message", body)
	}
	return m.Error.Code
}

// strictWriter fails the test on any use: a lane must not touch the client before it commits.
type strictWriter struct{ t testing.TB }

func (w strictWriter) Header() http.Header {
	w.t.Errorf("lane called Header() before committing")
	return http.Header{}
}

func (w strictWriter) Write(b []byte) (int, error) {
	w.t.Errorf("lane wrote %q before committing", b)
	return len(b), nil
}

func (w strictWriter) WriteHeader(code int) {
	w.t.Errorf("lane wrote status %d before committing", code)
}
