package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/store"
)

const testAdminToken = "admin-token-canary-0123456789abcdefghij"

// lockedBuffer is a goroutine-safe log sink.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testEnv is an admin server over a real file store, with a settable clock.
type testEnv struct {
	t       *testing.T
	dir     string
	store   store.Store
	keyring *secretbox.Keyring
	hasher  *vkey.Hasher
	srv     *Server
	ts      *httptest.Server
	logs    *lockedBuffer

	mu  sync.Mutex
	now time.Time
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	e := &testEnv{t: t, dir: t.TempDir(), logs: &lockedBuffer{}, now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	kr, err := secretbox.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := vkey.NewHasher([]byte("pepper-canary-0123456789abcdefghijklmnop"))
	if err != nil {
		t.Fatal(err)
	}
	e.keyring, e.hasher = kr, h
	e.open(nil)
	return e
}

// open (re)opens the store in e.dir, optionally wrapped, and starts a server on it.
func (e *testEnv) open(wrap func(store.Store) store.Store) {
	t := e.t
	fs, err := store.OpenFile(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	var st store.Store = fs
	if wrap != nil {
		st = wrap(fs)
	}
	e.store = st
	e.srv, err = New(Config{Store: st, Keyring: e.keyring, Hasher: e.hasher, AdminToken: testAdminToken,
		Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:    e.clock})
	if err != nil {
		t.Fatal(err)
	}
	e.ts = httptest.NewServer(e.srv)
	t.Cleanup(func() { e.ts.Close(); fs.Close() })
}

func (e *testEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *testEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

type resp struct {
	status int
	header http.Header
	raw    string
	obj    map[string]any
}

func (r resp) str(k string) string { s, _ := r.obj[k].(string); return s }

func (r resp) list() []map[string]any {
	var out []map[string]any
	for _, x := range r.obj["data"].([]any) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func (r resp) errCode() string {
	e, _ := r.obj["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

// do sends one request; body may be a string (sent as is) or a value (JSON). hdr is
// name, value pairs.
func (e *testEnv) do(token, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		rd = bytes.NewReader(mustJSON(b))
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.obj); err != nil {
			e.t.Fatalf("%s %s: body is not a JSON object: %s", method, path, raw)
		}
	}
	return r
}

// must is do as the admin, failing unless the status is want.
func (e *testEnv) must(want int, method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	r := e.do(testAdminToken, method, path, body, hdr...)
	if r.status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r
}

func (e *testEnv) provider(name string) string {
	return e.must(201, "POST", "/v1/model-providers", map[string]any{"name": name, "type": "openai",
		"api_key": "sk-provider-" + name}).str("id")
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{AdminToken: "short"})
	if err == nil {
		t.Fatal("New accepted an empty config")
	}
	for _, want := range []string{"Store", "Keyring", "Hasher", "admin token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	tok := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "ci",
		"permissions": []string{"virtualKeys:read", "virtualKeys:create", "apiTokens:create"}})
	secret := tok.str("secret")
	if !strings.HasPrefix(secret, TokenPrefix) || tok.str("hash") != "" {
		t.Fatalf("token create answer: %s", tok.raw)
	}
	expired := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "old",
		"permissions": []string{"virtualKeys:read"}, "expires_at": e.clock().Add(time.Hour)}).str("secret")
	e.advance(2 * time.Hour)
	tests := []struct {
		name, token, method, path string
		body                      any
		want                      int
	}{
		{"no token", "", "GET", "/v1/virtual-keys", nil, 401},
		{"bad token", "nope", "GET", "/v1/virtual-keys", nil, 401},
		{"unknown token with the prefix", TokenPrefix + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "GET", "/v1/virtual-keys", nil, 401},
		{"expired token", expired, "GET", "/v1/virtual-keys", nil, 401},
		{"admin", testAdminToken, "GET", "/v1/budgets", nil, 200},
		{"scoped read", secret, "GET", "/v1/virtual-keys", nil, 200},
		{"scoped create", secret, "POST", "/v1/virtual-keys", map[string]any{"name": "k", "scope": "ORG:acme"}, 201},
		{"scoped lacks update", secret, "POST", "/v1/virtual-keys/vk_x/revoke", nil, 403},
		{"scoped lacks budgets", secret, "GET", "/v1/budgets", nil, 403},
		{"scoped lacks provider create", secret, "POST", "/v1/model-providers", map[string]any{"name": "p"}, 403},
		{"grant held permission", secret, "POST", "/v1/api-tokens", map[string]any{"name": "sub", "permissions": []string{"virtualKeys:read"}}, 201},
		{"grant unheld permission", secret, "POST", "/v1/api-tokens", map[string]any{"name": "sub", "permissions": []string{"budgets:delete"}}, 403},
		{"list tokens needs apiTokens:read", secret, "GET", "/v1/api-tokens", nil, 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.token, tc.method, tc.path, tc.body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.raw)
			}
			if tc.want >= 400 && (r.errCode() == "" || strings.Contains(r.raw, tc.token) && tc.token != "") {
				t.Fatalf("error body %s: want a code and no token", r.raw)
			}
			if r.header.Get("X-Sluice-Request-Id") == "" {
				t.Error("no X-Sluice-Request-Id")
			}
		})
	}
	// Deleting a token revokes it at once.
	e.must(204, "DELETE", "/v1/api-tokens/"+tok.str("id"), nil)
	if r := e.do(secret, "GET", "/v1/virtual-keys", nil); r.status != 401 {
		t.Fatalf("deleted token: status %d", r.status)
	}
}

func TestAPITokensHiddenFromPrincipals(t *testing.T) {
	e := newEnv(t)
	id := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "ci", "permissions": []string{"budgets:read"}}).str("id")
	e.must(201, "POST", "/v1/principals", map[string]any{"id": "alice", "org_id": "acme"})
	if got := e.must(200, "GET", "/v1/principals", nil).list(); len(got) != 1 || got[0]["id"] != "alice" {
		t.Fatalf("principals: %v", got)
	}
	e.must(404, "GET", "/v1/principals/"+id, nil)
	e.must(404, "DELETE", "/v1/principals/"+id, nil)
	if got := e.must(200, "GET", "/v1/api-tokens", nil).list(); len(got) != 1 || got[0]["id"] != id {
		t.Fatalf("api tokens: %v", got)
	}
	e.must(200, "GET", "/v1/api-tokens/"+id, nil)
	e.must(404, "GET", "/v1/api-tokens/alice", nil)
}

// TestAPITokensSurviveCompaction: tokens are stored under a kind the file store's
// compaction keeps.
func TestAPITokensSurviveCompaction(t *testing.T) {
	e := newEnv(t)
	secret := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "ci", "permissions": []string{"budgets:read"}}).str("secret")
	fs := e.store.(*store.FileStore)
	if err := fs.Compact(); err != nil {
		t.Fatal(err)
	}
	e.ts.Close()
	fs.Close()
	e.open(nil)
	if r := e.do(secret, "GET", "/v1/budgets", nil); r.status != 200 {
		t.Fatalf("after compaction and reopen: %d %s", r.status, r.raw)
	}
}

func TestCRUD(t *testing.T) {
	e := newEnv(t)
	mp := e.provider("base")
	tests := []struct {
		path   string
		create map[string]any
		patch  map[string]any
		field  string // checked after the patch
		want   any
	}{
		{"organizations", map[string]any{"id": "acme", "name": "Acme"}, map[string]any{"name": "Acme Inc"}, "name", "Acme Inc"},
		{"teams", map[string]any{"id": "eng", "org_id": "acme", "name": "Engineering"}, map[string]any{"name": "Eng"}, "name", "Eng"},
		{"projects", map[string]any{"org_id": "acme", "team_id": "eng", "name": "web"}, map[string]any{"team_id": nil}, "team_id", nil},
		{"principals", map[string]any{"id": "alice", "org_id": "acme", "email": "alice@example.com"}, map[string]any{"name": "Alice"}, "name", "Alice"},
		{"model-providers", map[string]any{"name": "oai", "type": "openai-compatible", "base_url": "https://llm.example/v1",
			"api_key": "sk-crud", "models": []string{"a", "b"}, "scope": "TEAM:eng"},
			map[string]any{"fallback_priority": 3}, "fallback_priority", 3.0},
		{"routing-policies", map[string]any{"name": "rp", "providers": []string{mp}}, map[string]any{"name": "rp2"}, "name", "rp2"},
		{"budgets", map[string]any{"name": "eng-monthly", "scope": "TEAM:eng", "window": "month", "limit_usd": "5000", "on_breach": "block"},
			map[string]any{"limit_usd": "12.5"}, "limit_usd", "12.5"},
		{"guardrails", map[string]any{"id": "pii", "name": "pii", "kind": "pii", "directions": []string{"request"}, "action": "redact"},
			map[string]any{"directions": []string{"request", "stream"}}, "directions", []any{"request", "stream"}},
		{"virtual-keys", map[string]any{"name": "dev", "scope": "ORG:acme", "config": map[string]any{"models_allowed": []string{"gpt-*"}}},
			map[string]any{"config": map[string]any{"cache_mode": "force"}}, "config", map[string]any{"models_allowed": []any{"gpt-*"}, "cache_mode": "force"}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			base := "/v1/" + tc.path
			c := e.must(201, "POST", base, tc.create)
			id := c.str("id")
			if id == "" || c.str("created_at") == "" || c.header.Get("ETag") == "" {
				t.Fatalf("create answer: %s", c.raw)
			}
			if want, ok := tc.create["id"]; ok && id != want {
				t.Fatalf("id %q, want the slug %q", id, want)
			}
			if got := e.must(200, "GET", base+"/"+id, nil); got.str("id") != id {
				t.Fatalf("get: %s", got.raw)
			}
			found := false
			for _, x := range e.must(200, "GET", base, nil).list() {
				found = found || x["id"] == id
			}
			if !found {
				t.Fatal("list does not hold the new resource")
			}
			u := e.must(200, "PATCH", base+"/"+id, tc.patch)
			if got := u.obj[tc.field]; !jsonEqual(got, tc.want) {
				t.Fatalf("after patch %s = %v, want %v (%s)", tc.field, got, tc.want, u.raw)
			}
			if g := e.must(200, "GET", base+"/"+id, nil); !jsonEqual(g.obj[tc.field], tc.want) {
				t.Fatalf("stored %s = %v", tc.field, g.obj[tc.field])
			}
			e.must(400, "PATCH", base+"/"+id, map[string]any{"id": "other"})
			e.must(204, "DELETE", base+"/"+id, nil)
			e.must(404, "GET", base+"/"+id, nil)
			e.must(404, "DELETE", base+"/"+id, nil)
		})
	}
}

func jsonEqual(a, b any) bool { return string(mustJSON(a)) == string(mustJSON(b)) }

func TestDefaultsAndWarnings(t *testing.T) {
	e := newEnv(t)
	p := e.must(201, "POST", "/v1/model-providers", map[string]any{"name": "openai", "type": "openai"})
	if p.str("scope") != "ORG:default" || p.obj["has_credentials"] != false {
		t.Fatalf("provider: %s", p.raw)
	}
	if w, _ := p.obj["warnings"].([]any); len(w) != 1 || !strings.Contains(w[0].(string), "ORG:default") {
		t.Fatalf("want a warning about the missing organization: %s", p.raw)
	}
	rp := e.must(201, "POST", "/v1/routing-policies", map[string]any{"name": "rp", "providers": []string{p.str("id")}})
	if rp.str("strategy") != "ordered" {
		t.Fatalf("routing policy: %s", rp.raw)
	}
	e.must(201, "POST", "/v1/organizations", map[string]any{"id": "default", "name": "Default"})
	if b := e.must(201, "POST", "/v1/budgets", map[string]any{"name": "b", "scope": "ORG:default", "window": "day",
		"limit_usd": 5, "on_breach": "warn"}); b.obj["warnings"] != nil || b.str("limit_usd") != "5" {
		t.Fatalf("budget: %s", b.raw)
	}
}

func TestListScopeFilter(t *testing.T) {
	e := newEnv(t)
	for _, sc := range []string{"TEAM:eng", "TEAM:eng", "TEAM:ops"} {
		e.must(201, "POST", "/v1/budgets", map[string]any{"name": "b", "scope": sc, "window": "day", "limit_usd": "1", "on_breach": "block"})
	}
	if n := len(e.must(200, "GET", "/v1/budgets?scope=TEAM:eng", nil).list()); n != 2 {
		t.Fatalf("TEAM:eng budgets: %d", n)
	}
	if n := len(e.must(200, "GET", "/v1/budgets?scope=team:ops", nil).list()); n != 1 {
		t.Fatalf("TEAM:ops budgets: %d", n)
	}
	e.must(400, "GET", "/v1/budgets?scope=nope", nil)
	e.must(201, "POST", "/v1/teams", map[string]any{"id": "eng", "org_id": "acme", "name": "Eng"})
	if n := len(e.must(200, "GET", "/v1/teams?scope=ORG:acme", nil).list()); n != 1 {
		t.Fatalf("teams of acme: %d", n)
	}
}

func TestValidationErrors(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, path string
		body       any
		want       []string // substrings of details
	}{
		{"not json", "/v1/budgets", "{", []string{}},
		{"not an object", "/v1/budgets", "[1]", []string{}},
		{"every budget problem", "/v1/budgets", map[string]any{"name": "", "scope": "TEAM:eng", "window": "fortnight", "limit_usd": "5", "on_breach": "panic"},
			[]string{"name is required", "window", "on_breach"}},
		{"unknown fields", "/v1/budgets", map[string]any{"nme": "x", "created_at": "2020-01-01T00:00:00Z"},
			[]string{`"created_at"`, `"nme"`}},
		{"bad amount", "/v1/budgets", map[string]any{"name": "b", "scope": "TEAM:eng", "window": "day", "limit_usd": "-5", "on_breach": "block"}, []string{"amount"}},
		{"budget without scope", "/v1/budgets", map[string]any{"name": "b", "window": "day", "limit_usd": "5", "on_breach": "block"}, []string{"scope is required"}},
		{"unknown provider in policy", "/v1/routing-policies", map[string]any{"name": "rp", "providers": []string{"mp_nope"}}, []string{`no model provider "mp_nope"`}},
		{"unknown routing policy on key", "/v1/virtual-keys", map[string]any{"name": "k", "routing_policy_id": "rp_nope"}, []string{`no routing policy "rp_nope"`}},
		{"bad key config", "/v1/virtual-keys", map[string]any{"name": "k", "config": map[string]any{"policy_rules": map[string]any{"tools": map[string]any{"deny": []string{"("}}}, "cache_mode": "x"}},
			[]string{"policy_rules.tools", "cache_mode"}},
		{"key secret is read-only", "/v1/virtual-keys", map[string]any{"name": "k", "hash": strings.Repeat("0", 64)}, []string{`"hash"`}},
		{"provider type", "/v1/model-providers", map[string]any{"name": "p", "type": "acme", "api_key": 5}, []string{"api_key must be a non-empty string"}},
		{"provider base url", "/v1/model-providers", map[string]any{"name": "p", "type": "azure"}, []string{"base_url is required"}},
		{"slug on generated kind", "/v1/budgets", map[string]any{"id": "bg_mine"}, []string{`"id"`}},
		{"every guardrail problem", "/v1/guardrails", map[string]any{"name": "g", "kind": "regex", "directions": []string{"sideways"}, "patterns": []any{map[string]any{"name": "X", "pattern": "("}}},
			[]string{`"sideways"`, "patterns[0]"}},
		{"unknown guardrail on key", "/v1/virtual-keys", map[string]any{"name": "k", "config": map[string]any{"guardrails": []string{"gr_nope"}}}, []string{`config.guardrails[0]: no guardrail "gr_nope"`}},
		{"unknown guardrail on team", "/v1/teams", map[string]any{"org_id": "acme", "name": "t", "guardrails": []string{"nope"}}, []string{`guardrails[0]: no guardrail "nope"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(testAdminToken, "POST", tc.path, tc.body)
			if r.status != 400 {
				t.Fatalf("status %d: %s", r.status, r.raw)
			}
			details, _ := r.obj["error"].(map[string]any)["details"].([]any)
			var parts []string
			for _, d := range details {
				parts = append(parts, d.(string))
			}
			joined := strings.Join(parts, "\n")
			for _, w := range tc.want {
				if !strings.Contains(joined, w) {
					t.Errorf("details %s lack %q", joined, w)
				}
			}
		})
	}
}

func TestConcurrentUpdateConflict(t *testing.T) {
	e := newEnv(t)
	b := e.must(201, "POST", "/v1/budgets", map[string]any{"name": "b", "scope": "TEAM:eng", "window": "day", "limit_usd": "1", "on_breach": "block"})
	id, etag := b.str("id"), b.header.Get("ETag")
	if etag != `"`+strconv.FormatInt(int64(b.obj["revision"].(float64)), 10)+`"` {
		t.Fatalf("ETag %s, revision %v", etag, b.obj["revision"])
	}
	e.must(200, "PATCH", "/v1/budgets/"+id, map[string]any{"limit_usd": "2"}, "If-Match", etag)
	if r := e.do(testAdminToken, "PATCH", "/v1/budgets/"+id, map[string]any{"limit_usd": "3"}, "If-Match", etag); r.status != 409 || r.errCode() != "conflict" {
		t.Fatalf("second PATCH at the same revision: %d %s", r.status, r.raw)
	}
	e.must(409, "DELETE", "/v1/budgets/"+id, nil, "If-Match", etag)
	e.must(409, "POST", "/v1/virtual-keys/"+e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"}).str("id")+"/disable", nil, "If-Match", `"1"`)
	e.must(400, "PATCH", "/v1/budgets/"+id, map[string]any{}, "If-Match", "yesterday")
	if got := e.must(200, "GET", "/v1/budgets/"+id, nil).str("limit_usd"); got != "2" {
		t.Fatalf("limit %s, want 2", got)
	}
}

func TestRaceManyWriters(t *testing.T) {
	e := newEnv(t)
	id := e.must(201, "POST", "/v1/budgets", map[string]any{"name": "b", "scope": "TEAM:eng", "window": "day", "limit_usd": "1", "on_breach": "block"}).str("id")
	etag := e.must(200, "GET", "/v1/budgets/"+id, nil).header.Get("ETag")
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for i := range 8 {
		wg.Go(func() {
			codes <- e.do(testAdminToken, "PATCH", "/v1/budgets/"+id, map[string]any{"limit_usd": strconv.Itoa(i + 10)}, "If-Match", etag).status
		})
	}
	wg.Wait()
	close(codes)
	ok := 0
	for c := range codes {
		switch c {
		case 200:
			ok++
		case 409:
		default:
			t.Fatalf("status %d", c)
		}
	}
	if ok != 1 {
		t.Fatalf("%d PATCHes at one revision succeeded, want 1", ok)
	}
}

func TestDeleteInUse(t *testing.T) {
	e := newEnv(t)
	mp := e.provider("p")
	rp := e.must(201, "POST", "/v1/routing-policies", map[string]any{"name": "rp", "providers": []string{mp}}).str("id")
	k := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k", "routing_policy_id": rp}).str("id")
	if r := e.do(testAdminToken, "DELETE", "/v1/model-providers/"+mp, nil); r.status != 409 || !strings.Contains(r.raw, rp) {
		t.Fatalf("delete provider in use: %d %s", r.status, r.raw)
	}
	if r := e.do(testAdminToken, "DELETE", "/v1/routing-policies/"+rp, nil); r.status != 409 || !strings.Contains(r.raw, k) {
		t.Fatalf("delete policy in use: %d %s", r.status, r.raw)
	}
	e.must(200, "PATCH", "/v1/virtual-keys/"+k, map[string]any{"routing_policy_id": nil})
	e.must(204, "DELETE", "/v1/routing-policies/"+rp, nil)
	e.must(204, "DELETE", "/v1/model-providers/"+mp, nil)

	g := e.must(201, "POST", "/v1/guardrails", map[string]any{"name": "g", "kind": "secrets", "directions": []string{"request"}}).str("id")
	gk := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "gk", "config": map[string]any{"guardrails": []string{g}}}).str("id")
	e.must(201, "POST", "/v1/projects", map[string]any{"id": "web", "org_id": "acme", "name": "web", "guardrails": []string{g}})
	if r := e.do(testAdminToken, "DELETE", "/v1/guardrails/"+g, nil); r.status != 409 || !strings.Contains(r.raw, gk) || !strings.Contains(r.raw, "project web") {
		t.Fatalf("delete guardrail in use: %d %s", r.status, r.raw)
	}
	e.must(200, "PATCH", "/v1/virtual-keys/"+gk, map[string]any{"config": map[string]any{"guardrails": nil}})
	e.must(200, "PATCH", "/v1/projects/web", map[string]any{"guardrails": nil})
	e.must(204, "DELETE", "/v1/guardrails/"+g, nil)
}

func TestUnknownEndpoint(t *testing.T) {
	e := newEnv(t)
	if r := e.do(testAdminToken, "GET", "/v1/nope", nil); r.status != 404 || r.errCode() != "not_found" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	if r := e.do(testAdminToken, "PUT", "/v1/budgets", nil); r.status != 405 && r.status != 404 {
		t.Fatalf("PUT: %d", r.status)
	}
}

// failingStore fails List with an error whose text must not reach the client.
type failingStore struct{ store.Store }

var errSecretCause = errors.New("redis: dial 10.0.0.7: password canary-store-password rejected")

func (failingStore) List(context.Context, config.Kind) ([]store.Doc, error) {
	return nil, errSecretCause
}

func TestInternalErrorHidesCause(t *testing.T) {
	e := newEnv(t)
	e.ts.Close()
	e.store.Close()
	e.open(func(s store.Store) store.Store { return failingStore{s} })
	r := e.do(testAdminToken, "GET", "/v1/budgets", nil)
	if r.status != 500 || r.errCode() != "internal_error" {
		t.Fatalf("%d %s", r.status, r.raw)
	}
	reqID := r.header.Get("X-Sluice-Request-Id")
	if strings.Contains(r.raw, "canary-store-password") || !strings.Contains(r.raw, reqID) {
		t.Fatalf("body %s: want the request id and not the cause", r.raw)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "canary-store-password") || !strings.Contains(logs, reqID) {
		t.Fatalf("the cause and request id should be logged: %s", logs)
	}
}
