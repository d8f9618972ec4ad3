package guardrail

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
)

// fakeHook is a webhook evaluator: answer decides each reply from the request.
type fakeHook struct {
	*httptest.Server
	answer func(w http.ResponseWriter, r *http.Request, req hookRequest)

	mu      sync.Mutex
	calls   []hookRequest
	bodies  [][]byte
	headers []http.Header
}

func newFakeHook(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req hookRequest)) *fakeHook {
	f := &fakeHook{answer: answer}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req hookRequest
		if err := json.Unmarshal(body, &req); err != nil {
			t.Errorf("webhook body %q: %v", body, err)
		}
		f.mu.Lock()
		f.calls = append(f.calls, req)
		f.bodies = append(f.bodies, body)
		f.headers = append(f.headers, r.Header.Clone())
		f.mu.Unlock()
		f.answer(w, r, req)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeHook) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeHook) texts() [][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]string
	for _, c := range f.calls {
		out = append(out, c.Texts)
	}
	return out
}

// reply answers with a fixed JSON body.
func reply(body string) func(http.ResponseWriter, *http.Request, hookRequest) {
	return func(w http.ResponseWriter, _ *http.Request, _ hookRequest) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, body)
	}
}

// upper modifies every text to upper case.
func upper(w http.ResponseWriter, _ *http.Request, req hookRequest) {
	out := make([]string, len(req.Texts))
	for i, t := range req.Texts {
		out[i] = strings.ToUpper(t)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"action": "modify", "texts": out})
}

func hookGuard(t testing.TB, id, url string, edit func(*config.Guardrail)) *Guardrail {
	return mustNew(t, id, config.GuardrailWebhook, func(c *config.Guardrail) {
		c.Webhook = &config.Webhook{URL: url}
		if edit != nil {
			edit(c)
		}
	})
}

func failOpen(c *config.Guardrail) { c.FailureMode = config.FailOpen }

func check(gs []*Guardrail, texts ...string) Verdict {
	return Check(context.Background(), gs, config.DirectionRequest, Meta{}, texts)
}

func TestWebhookRequest(t *testing.T) {
	h := newFakeHook(t, reply(`{"action":"allow"}`))
	now := time.Unix(1700000000, 0)
	g, err := New(&config.Guardrail{ID: "policy", Name: "policy", Kind: config.GuardrailWebhook,
		Directions: []config.GuardrailDirection{config.DirectionResponse},
		Webhook:    &config.Webhook{URL: h.URL + "/check?x=1", SigningSecretEnv: "HOOK_SECRET"}},
		Options{Getenv: func(k string) string { return map[string]string{"HOOK_SECRET": "s3cret"}[k] },
			Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	m := Meta{RequestID: "req-1", KeyID: "vk_1", OrgID: "acme", ProjectID: "web"}
	v := Check(context.Background(), []*Guardrail{g}, config.DirectionResponse, m, []string{"one", "<two> & \"three\""})
	if v.Action != Allow {
		t.Fatalf("verdict %+v, want allow", v)
	}
	if h.count() != 1 {
		t.Fatalf("%d calls, want 1", h.count())
	}
	var raw map[string]any
	if err := json.Unmarshal(h.bodies[0], &raw); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"guardrail_id": "policy", "direction": "response", "request_id": "req-1",
		"key_id": "vk_1", "organization_id": "acme", "project_id": "web",
		"text": "one\n\n<two> & \"three\"", "texts": []any{"one", "<two> & \"three\""}}
	if len(raw) != len(want) {
		t.Errorf("body has fields %v, want %v (empty ids omitted)", raw, want)
	}
	for k, w := range want {
		if got, _ := json.Marshal(raw[k]); string(got) != mustJSON(w) {
			t.Errorf("body %s = %s, want %s", k, got, mustJSON(w))
		}
	}
	hd := h.headers[0]
	if ct := hd.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if ts := hd.Get(HeaderTimestamp); ts != "1700000000" {
		t.Errorf("%s = %q", HeaderTimestamp, ts)
	}
	sig := hd.Get(HeaderSignature)
	if !strings.HasPrefix(sig, "v1=") || !Verify([]byte("s3cret"), sig, now.Unix(), h.bodies[0]) {
		t.Errorf("signature %q does not verify", sig)
	}
	if sig != Sign([]byte("s3cret"), now.Unix(), h.bodies[0]) {
		t.Errorf("signature %q is not Sign's", sig)
	}

	// Not configured: no signature headers.
	Check(context.Background(), []*Guardrail{hookGuard(t, "plain", h.URL, nil)}, config.DirectionRequest, Meta{}, []string{"x"})
	if hd := h.headers[1]; hd.Get(HeaderSignature) != "" || hd.Get(HeaderTimestamp) != "" {
		t.Errorf("unsigned webhook sent %v", hd)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSignVerify(t *testing.T) {
	secret, body := []byte("k"), []byte(`{"a":1}`)
	sig := Sign(secret, 42, body)
	if len(sig) != 3+64 || sig != strings.ToLower(sig) {
		t.Errorf("Sign = %q, want v1= and 64 lowercase hex digits", sig)
	}
	tests := []struct {
		name   string
		secret []byte
		header string
		ts     int64
		body   []byte
		want   bool
	}{
		{"valid", secret, sig, 42, body, true},
		{"rotation list", secret, "v1=00, " + sig, 42, body, true},
		{"other body", secret, sig, 42, []byte(`{"a":2}`), false},
		{"other time", secret, sig, 43, body, false},
		{"other secret", []byte("j"), sig, 42, body, false},
		{"no scheme", secret, strings.TrimPrefix(sig, "v1="), 42, body, false},
		{"garbage", secret, "v1=zz", 42, body, false},
		{"empty", secret, "", 42, body, false},
	}
	for _, tc := range tests {
		if got := Verify(tc.secret, tc.header, tc.ts, tc.body); got != tc.want {
			t.Errorf("%s: Verify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	base := func() *config.Guardrail {
		return &config.Guardrail{ID: "g", Name: "g", Kind: config.GuardrailWebhook,
			Directions: []config.GuardrailDirection{config.DirectionRequest},
			Webhook:    &config.Webhook{URL: "https://hooks.example/check", SigningSecretEnv: "HOOK_SECRET"}}
	}
	if _, err := New(base(), Options{Getenv: func(string) string { return "" }}); err == nil || !strings.Contains(err.Error(), "HOOK_SECRET") {
		t.Errorf("empty signing secret: err = %v", err)
	}
	if _, err := New(base(), Options{Getenv: func(string) string { return "x" }}); err != nil {
		t.Errorf("signing secret set: %v", err)
	}
	bad := &config.Guardrail{ID: "r", Name: "r", Kind: config.GuardrailRegex,
		Directions: []config.GuardrailDirection{config.DirectionRequest},
		Patterns:   []config.GuardrailPattern{{Name: "x", Pattern: "("}}}
	if _, err := New(bad, Options{}); err == nil {
		t.Error("bad pattern compiled")
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("nil config compiled")
	}
}

func TestWebhookAnswers(t *testing.T) {
	big := `{"action":"allow","reason":"` + strings.Repeat("x", maxResponseBytes) + `"}`
	tests := []struct {
		name   string
		answer func(http.ResponseWriter, *http.Request, hookRequest)
		texts  []string
		want   Verdict // under fail_closed
		failed bool    // a failure: allowed under fail_open
	}{
		{name: "allow", answer: reply(`{"action":"allow"}`), texts: []string{"a"}, want: Verdict{Action: Allow}},
		{name: "block", answer: reply(`{"action":"block","reason":"no politics"}`), texts: []string{"a"},
			want: Verdict{Action: Block, Guardrail: "hook", Reason: "guardrail hook: no politics"}},
		{name: "block without reason", answer: reply(`{"action":"block"}`), texts: []string{"a"},
			want: Verdict{Action: Block, Guardrail: "hook", Reason: "guardrail hook: blocked"}},
		{name: "block reason cleaned", answer: reply(`{"action":"block","reason":"bad\n\u0000\u202eword` + strings.Repeat("é", 300) + `"}`),
			texts: []string{"a"}, want: Verdict{Action: Block, Guardrail: "hook",
				Reason: "guardrail hook: badword" + strings.Repeat("é", 200-len("guardrail hook: badword"))}},
		{name: "modify texts", answer: upper, texts: []string{"a", "b"}, want: Verdict{Action: Modify, Texts: []string{"A", "B"}}},
		{name: "modify unchanged", answer: reply(`{"action":"modify","texts":["a"]}`), texts: []string{"a"}, want: Verdict{Action: Allow}},
		{name: "modify text", answer: reply(`{"action":"modify","text":"z"}`), texts: []string{"a"}, want: Verdict{Action: Modify, Texts: []string{"z"}}},
		{name: "modify text of two", answer: reply(`{"action":"modify","text":"z"}`), texts: []string{"a", "b"}, failed: true},
		{name: "modify wrong length", answer: reply(`{"action":"modify","texts":["z"]}`), texts: []string{"a", "b"}, failed: true},
		{name: "unknown action", answer: reply(`{"action":"maybe"}`), texts: []string{"a"}, failed: true},
		{name: "bad json", answer: reply(`{"action":`), texts: []string{"a"}, failed: true},
		{name: "trailing junk", answer: reply(`{"action":"allow"} x`), texts: []string{"a"}, failed: true},
		{name: "too big", answer: reply(big), texts: []string{"a"}, failed: true},
		{name: "status 500", answer: func(w http.ResponseWriter, _ *http.Request, _ hookRequest) {
			w.WriteHeader(500)
			_, _ = io.WriteString(w, `{"action":"allow"}`)
		}, texts: []string{"a"}, failed: true},
		{name: "redirect", answer: func(w http.ResponseWriter, r *http.Request, _ hookRequest) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, texts: []string{"a"}, failed: true},
	}
	for _, tc := range tests {
		for _, open := range []bool{false, true} {
			name := tc.name + "/fail_closed"
			if open {
				name = tc.name + "/fail_open"
			}
			t.Run(name, func(t *testing.T) {
				h := newFakeHook(t, tc.answer)
				g := hookGuard(t, "hook", h.URL, func(c *config.Guardrail) {
					if open {
						failOpen(c)
					}
				})
				want := tc.want
				if tc.failed {
					want = Verdict{Action: Block, Guardrail: "hook", Reason: "guardrail hook is unavailable"}
					if open {
						want = Verdict{Action: Allow}
					}
				}
				in := slices.Clone(tc.texts)
				got := check([]*Guardrail{g}, in...)
				if !sameVerdict(got, want) {
					t.Errorf("verdict %+v, want %+v", got, want)
				}
				if !slices.Equal(in, tc.texts) {
					t.Errorf("Check modified its input: %q", in)
				}
				if n := h.count(); n != 1 {
					t.Errorf("%d calls, want 1 (no redirect followed)", n)
				}
			})
		}
	}
}

func sameVerdict(a, b Verdict) bool {
	return a.Action == b.Action && a.Guardrail == b.Guardrail && a.Reason == b.Reason && slices.Equal(a.Texts, b.Texts)
}

func TestWebhookRedirectWithCallerClient(t *testing.T) {
	target := newFakeHook(t, reply(`{"action":"allow"}`))
	h := newFakeHook(t, func(w http.ResponseWriter, r *http.Request, _ hookRequest) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	})
	c := &config.Guardrail{ID: "hook", Name: "hook", Kind: config.GuardrailWebhook,
		Directions: []config.GuardrailDirection{config.DirectionRequest}, Webhook: &config.Webhook{URL: h.URL}}
	client := &http.Client{} // follows redirects by default
	g, err := New(c, Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if v := check([]*Guardrail{g}, "x"); v.Action != Block {
		t.Errorf("verdict %+v, want block (unavailable)", v)
	}
	if target.count() != 0 {
		t.Error("the redirect was followed")
	}
	if client.CheckRedirect != nil {
		t.Error("the caller's client was changed")
	}
}

// stall is a webhook that answers only when the client gives up (or the test ends).
func stall(t *testing.T) func(http.ResponseWriter, *http.Request, hookRequest) {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return func(w http.ResponseWriter, r *http.Request, _ hookRequest) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}
}

func TestWebhookTimeout(t *testing.T) {
	for _, open := range []bool{false, true} {
		h := newFakeHook(t, stall(t))
		g := hookGuard(t, "slow", h.URL, func(c *config.Guardrail) {
			c.TimeoutMS = 50
			if open {
				failOpen(c)
			}
		})
		v := check([]*Guardrail{g}, "x")
		want := Verdict{Action: Block, Guardrail: "slow", Reason: "guardrail slow is unavailable"}
		if open {
			want = Verdict{Action: Allow}
		}
		if !sameVerdict(v, want) {
			t.Errorf("fail_open=%v: verdict %+v, want %+v", open, v, want)
		}
	}
}

func TestCheckCanceled(t *testing.T) {
	called := make(chan struct{}, 1)
	wait := stall(t)
	h := newFakeHook(t, func(w http.ResponseWriter, r *http.Request, req hookRequest) {
		called <- struct{}{}
		wait(w, r, req)
	})
	g := hookGuard(t, "hook", h.URL, func(c *config.Guardrail) { c.TimeoutMS = int(config.MaxGuardrailTimeout.Milliseconds()) })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-called
		cancel()
	}()
	v := Check(ctx, []*Guardrail{g}, config.DirectionRequest, Meta{}, []string{"x"})
	if v.Action != Block || v.Reason != "guardrail hook is unavailable" {
		t.Errorf("verdict %+v, want unavailable", v)
	}
}

func TestCheckOrder(t *testing.T) {
	pii := redactor(t, config.GuardrailPII, "email")
	up := newFakeHook(t, upper)
	second := newFakeHook(t, func(w http.ResponseWriter, _ *http.Request, req hookRequest) {
		_ = json.NewEncoder(w).Encode(map[string]any{"action": "modify", "texts": []string{"second", req.Texts[1] + "!"}})
	})
	allow := newFakeHook(t, reply(`{"action":"allow"}`))
	gs := []*Guardrail{hookGuard(t, "up", up.URL, nil), pii, hookGuard(t, "second", second.URL, nil), hookGuard(t, "allow", allow.URL, nil)}

	v := check(gs, "mail bob@example.com", "b")
	want := Verdict{Action: Modify, Texts: []string{"MAIL [REDACTED:EMAIL]", "B"}}
	if !sameVerdict(v, want) {
		t.Errorf("verdict %+v, want %+v", v, want)
	}
	for _, h := range []*fakeHook{up, second, allow} {
		if got := h.texts(); len(got) != 1 || got[0][0] != "mail [REDACTED:EMAIL]" {
			t.Errorf("webhook saw %q, want the detector-redacted texts", got)
		}
	}

	// A text only the second webhook changes takes its change.
	v = check([]*Guardrail{hookGuard(t, "second", second.URL, nil), hookGuard(t, "allow", allow.URL, nil)}, "a", "b")
	if want := (Verdict{Action: Modify, Texts: []string{"second", "b!"}}); !sameVerdict(v, want) {
		t.Errorf("verdict %+v, want %+v", v, want)
	}

	// The first block in gs order wins, whatever the others say.
	b1 := newFakeHook(t, reply(`{"action":"block","reason":"one"}`))
	b2 := newFakeHook(t, reply(`{"action":"block","reason":"two"}`))
	v = check([]*Guardrail{hookGuard(t, "up", up.URL, nil), hookGuard(t, "b1", b1.URL, nil), hookGuard(t, "b2", b2.URL, nil)}, "x")
	if v.Action != Block || v.Guardrail != "b1" || v.Reason != "guardrail b1: one" {
		t.Errorf("verdict %+v, want b1's block", v)
	}

	// A detector's block ends the check before any webhook is called.
	calls := up.count()
	blocker := mustNew(t, "pii-block", config.GuardrailPII, nil)
	v = check([]*Guardrail{hookGuard(t, "up", up.URL, nil), blocker}, "card 4111 1111 1111 1111")
	if v.Action != Block || v.Guardrail != "pii-block" || v.Reason != `guardrail "pii-block" found a credit_card` {
		t.Errorf("verdict %+v, want pii-block's", v)
	}
	if up.count() != calls {
		t.Error("a webhook was called after a detector blocked")
	}

	// Direction: guardrails that do not inspect it take no part.
	reqOnly := mustNew(t, "req-only", config.GuardrailPII, func(c *config.Guardrail) {
		c.Directions = []config.GuardrailDirection{config.DirectionRequest}
	})
	if v := Check(context.Background(), []*Guardrail{reqOnly}, config.DirectionResponse, Meta{}, []string{"4111111111111111"}); v.Action != Allow {
		t.Errorf("response check ran a request-only guardrail: %+v", v)
	}
}

func TestCheckParallel(t *testing.T) {
	// Two webhooks that each wait for the other to be called: they only finish if Check
	// runs them at the same time.
	var wg sync.WaitGroup
	wg.Add(2)
	meet := func(w http.ResponseWriter, r *http.Request, _ hookRequest) {
		wg.Done()
		wg.Wait()
		_, _ = io.WriteString(w, `{"action":"allow"}`)
	}
	a, b := newFakeHook(t, meet), newFakeHook(t, meet)
	gs := []*Guardrail{hookGuard(t, "a", a.URL, nil), hookGuard(t, "b", b.URL, nil)}
	if v := check(gs, "x"); v.Action != Allow {
		t.Errorf("verdict %+v", v)
	}
}

func TestDetectorReasons(t *testing.T) {
	card := "4111 1111 1111 1111"
	tests := []struct {
		g    *Guardrail
		in   string
		want string
	}{
		{mustNew(t, "pii-block", config.GuardrailPII, nil), "pay with " + card, `guardrail "pii-block" found a credit_card`},
		{mustNew(t, "pii-block", config.GuardrailPII, nil), "write to alice@example.com", `guardrail "pii-block" found an email`},
		{mustNew(t, "keys", config.GuardrailSecrets, nil), "use " + openAISample, `guardrail "keys" found an openai_key`},
		{mustNew(t, "words", config.GuardrailRegex, func(c *config.Guardrail) {
			c.Patterns = []config.GuardrailPattern{{Name: "codename", Pattern: `Project \w+`}}
		}), "about Project Bluebird", `guardrail "words" found a codename`},
	}
	for _, tc := range tests {
		v := check([]*Guardrail{tc.g}, "fine", tc.in)
		if v.Action != Block || v.Reason != tc.want || v.Guardrail != tc.g.ID() {
			t.Errorf("%q: verdict %+v, want block %q", tc.in, v, tc.want)
		}
	}
}

func TestCheckNoAllocs(t *testing.T) {
	gs := []*Guardrail{redactor(t, config.GuardrailPII), redactor(t, config.GuardrailSecrets),
		mustNew(t, "words", config.GuardrailRegex, func(c *config.Guardrail) {
			c.Patterns = []config.GuardrailPattern{{Name: "codename", Pattern: `Project Bluebird`}}
		})}
	texts := []string{prose(4 << 10), "short"}
	if v := check(gs, texts...); v.Action != Allow {
		t.Fatalf("prose matched: %+v", v)
	}
	if n := testing.AllocsPerRun(100, func() { check(gs, texts...) }); n != 0 {
		t.Errorf("Check allocates %.0f times on text without matches", n)
	}
}

// prose returns about n bytes of text with digits, dots, colons and '@'-free punctuation
// that none of the detectors should match.
func prose(n int) string {
	const para = "The quarterly review covers 12 teams and 3 regions. In 2024 revenue grew by 7.5% " +
		"while costs fell 2%; see section 4.2: margins. Meeting at 10:30, room B-12. Version 1.18.3 " +
		"fixed 42 bugs and closed ticket 5512. Ask about it: the answer is in chapter 9.\n"
	return strings.Repeat(para, n/len(para)+1)[:n]
}
