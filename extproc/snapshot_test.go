package extproc

import (
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// snapshotOf builds a snapshot from model documents, as the fleet client delivers it.
func snapshotOf(t *testing.T, rs ...config.Resource) *config.Snapshot {
	t.Helper()
	s := &config.Snapshot{Version: "test", Resources: map[config.Kind]map[string]json.RawMessage{}}
	for _, r := range rs {
		if err := r.Validate(); err != nil {
			t.Fatalf("fixture %s %s is invalid: %v", r.ResourceKind(), r.ResourceID(), err)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if s.Resources[r.ResourceKind()] == nil {
			s.Resources[r.ResourceKind()] = map[string]json.RawMessage{}
		}
		s.Resources[r.ResourceKind()][r.ResourceID()] = b
	}
	return s
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// tenancy is a small tree: org acme with team eng and project web; org other.
func tenancy() []config.Resource {
	return []config.Resource{
		&config.Organization{ID: "acme", Name: "Acme"},
		&config.Organization{ID: "other", Name: "Other"},
		&config.Team{ID: "eng", OrgID: "acme", Name: "Eng"},
		&config.Project{ID: "web", OrgID: "acme", TeamID: "eng", Name: "Web"},
		&config.ModelProvider{ID: "oa-backup", Name: "b", Type: "openai", Scope: config.MustParseScope("ORG:acme"), FallbackPriority: 2},
		&config.ModelProvider{ID: "oa-main", Name: "m", Type: "openai", Scope: config.MustParseScope("ORG:acme"), FallbackPriority: 1},
		&config.ModelProvider{ID: "oa-team", Name: "t", Type: "openai", Scope: config.MustParseScope("TEAM:eng"), FallbackPriority: 1, CreatedAt: t0.Add(time.Hour)},
		&config.ModelProvider{ID: "oa-other", Name: "o", Type: "openai", Scope: config.MustParseScope("ORG:other")},
		&config.ModelProvider{ID: "vertex", Name: "vx", Type: "vertex", Scope: config.MustParseScope("ORG:other"),
			ProviderConfig: []byte(`{"region":"us-east1","project":"p"}`)},
	}
}

func key(f *fixture, id, scope string, mod func(*config.VirtualKey)) *config.VirtualKey {
	k := &config.VirtualKey{ID: id, Name: id, Scope: config.MustParseScope(scope), Hash: f.hash(id),
		DisplayPrefix: "sk-sluice-", Status: config.KeyActive}
	if mod != nil {
		mod(k)
	}
	return k
}

func chat(f *fixture, t *testing.T, id string) (*ctxtoken.Claims, []byte) {
	t.Helper()
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer(id)),
		bodyMsg(`{"model":"gpt-4o"}`))
	if len(sent) == 1 {
		return nil, nil
	}
	return mustToken(t, f, sent[1]), nil
}

func TestSnapshotTenancyAndDefaultChain(t *testing.T) {
	f := newFixture(t)
	rs := append(tenancy(),
		key(f, "vk_proj", "PROJECT:web", nil),
		key(f, "vk_org", "ORG:acme", nil),
		key(f, "vk_allowed", "TEAM:eng", func(k *config.VirtualKey) { k.Config.ProvidersAllowed = []string{"oa-backup"} }),
	)
	if err := f.srv.LoadSnapshot(snapshotOf(t, rs...)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key                string
		org, team, project string
		chain              []string
	}{
		// Visible: the key's scope and its ancestors; by priority, then creation time. The
		// other org's providers never appear.
		{"vk_proj", "acme", "eng", "web", []string{"oa-main", "oa-team", "oa-backup"}},
		{"vk_org", "acme", "", "", []string{"oa-main", "oa-backup"}},
		{"vk_allowed", "acme", "eng", "", []string{"oa-backup"}},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			c, _ := chat(f, t, tt.key)
			if c == nil {
				t.Fatal("request was refused")
			}
			var chain []string
			for _, a := range c.Chain {
				chain = append(chain, a.Provider)
			}
			if !reflect.DeepEqual(chain, tt.chain) {
				t.Errorf("chain = %v, want %v", chain, tt.chain)
			}
			if c.OrgID != tt.org || c.TeamID != tt.team || c.ProjectID != tt.project {
				t.Errorf("tenant = %s/%s/%s, want %s/%s/%s", c.OrgID, c.TeamID, c.ProjectID, tt.org, tt.team, tt.project)
			}
		})
	}
}

func TestSnapshotRoutingPolicyOrder(t *testing.T) {
	f := newFixture(t)
	rs := append(tenancy(),
		&config.RoutingPolicy{ID: "rp_1", Name: "p", Scope: config.MustParseScope("ORG:acme"),
			Strategy: config.StrategyOrdered, Providers: []string{"oa-backup", "oa-main"}},
		key(f, "vk_rp", "ORG:acme", func(k *config.VirtualKey) { k.RoutingPolicyID = "rp_1" }))
	if err := f.srv.LoadSnapshot(snapshotOf(t, rs...)); err != nil {
		t.Fatal(err)
	}
	c, _ := chat(f, t, "vk_rp")
	if c == nil || len(c.Chain) != 2 || c.Chain[0].Provider != "oa-backup" || c.Chain[1].Provider != "oa-main" {
		t.Fatalf("chain = %+v, want the routing policy's order", c)
	}
}

func TestSnapshotKeyStates(t *testing.T) {
	f := newFixture(t)
	now := t0
	f.srv.cfg.Now = func() time.Time { return now }
	until, expires := t0.Add(time.Hour), t0.Add(2*time.Hour)
	rotated := key(f, "vk_rotated", "ORG:acme", nil)
	rotated.PreviousHash = f.hash("vk_rotated_old")
	rotated.PreviousHashValidUntil = &until
	rs := append(tenancy(),
		key(f, "vk_disabled", "ORG:acme", func(k *config.VirtualKey) { k.Status = config.KeyDisabled }),
		key(f, "vk_revoked", "ORG:acme", func(k *config.VirtualKey) { k.Status = config.KeyRevoked }),
		key(f, "vk_expiring", "ORG:acme", func(k *config.VirtualKey) { k.ExpiresAt = &expires }),
		rotated)
	if err := f.srv.LoadSnapshot(snapshotOf(t, rs...)); err != nil {
		t.Fatal(err)
	}
	expect := func(id string, status int, code string) {
		t.Helper()
		sent := f.run(t, headersMsg("POST", "/v1/messages", false, "x-api-key", f.secret[id]), bodyMsg(`{"model":"gpt-4o"}`))
		if status == 0 {
			if len(sent) != 2 {
				t.Fatalf("%s: refused, want accepted", id)
			}
			return
		}
		checkReject(t, sent[0], status, wire.Anthropic, code)
	}
	expect("vk_disabled", 403, "virtual_key_disabled")
	expect("vk_revoked", 403, "virtual_key_revoked")
	expect("vk_expiring", 0, "")
	expect("vk_rotated", 0, "")
	expect("vk_rotated_old", 0, "") // the old secret works during the grace

	now = until
	expect("vk_rotated_old", 401, "invalid_api_key")
	expect("vk_rotated", 0, "")
	now = expires
	expect("vk_expiring", 403, "virtual_key_expired")

	// The machine codes, in the OpenAI envelope.
	for id, code := range map[string]string{"vk_disabled": "virtual_key_disabled", "vk_revoked": "virtual_key_revoked", "vk_expiring": "virtual_key_expired"} {
		sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer(id)))
		checkReject(t, sent[0], 403, wire.OpenAI, code)
	}
}

// resolverFunc adapts a function to KeyResolver.
type resolverFunc func(ctx context.Context, hexHash string) (bool, error)

func (r resolverFunc) ResolveKeyHash(ctx context.Context, h string) (bool, error) { return r(ctx, h) }

func TestOnDemandResolution(t *testing.T) {
	f := newFixture(t)
	base := tenancy()
	late := key(f, "vk_late", "ORG:acme", nil)
	f.hash("vk_unknown")
	var calls atomic.Int32
	f.srv.SetResolver(resolverFunc(func(ctx context.Context, h string) (bool, error) {
		calls.Add(1)
		if h != late.Hash {
			return false, nil
		}
		// As the fleet client does: deliver the key, then report it found.
		return true, f.srv.LoadSnapshot(snapshotOf(t, append(base, late)...))
	}))
	if err := f.srv.LoadSnapshot(snapshotOf(t, base...)); err != nil {
		t.Fatal(err)
	}
	if c, _ := chat(f, t, "vk_late"); c == nil || c.KeyID != "vk_late" {
		t.Fatalf("a key created after the last push was not resolved on demand")
	}
	if c, _ := chat(f, t, "vk_late"); c == nil || calls.Load() != 1 {
		t.Fatalf("a resolved key must be served from memory; resolver calls = %d", calls.Load())
	}
	for range 3 {
		sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_unknown")))
		checkReject(t, sent[0], 401, wire.OpenAI, "invalid_api_key")
	}
	if calls.Load() != 2 {
		t.Fatalf("resolver calls = %d: an unknown key must be looked up once, then remembered briefly", calls.Load())
	}
}

// TestOnDemandLookupsBounded: a flood of made-up (well-formed) keys never has more than
// maxLookups lookups in flight; the rest are refused at once as unknown.
func TestOnDemandLookupsBounded(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	var inFlight, peak atomic.Int32
	f.srv.SetResolver(resolverFunc(func(ctx context.Context, h string) (bool, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return false, nil
	}))
	if err := f.srv.LoadSnapshot(snapshotOf(t, tenancy()...)); err != nil {
		t.Fatal(err)
	}
	const n = 3 * maxLookups
	done := make(chan struct{}, n)
	for i := range n {
		id := "vk_flood" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		f.hash(id)
		auth := f.bearer(id)
		go func() {
			sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", auth))
			checkReject(t, sent[0], 401, wire.OpenAI, "invalid_api_key")
			done <- struct{}{}
		}()
	}
	// Those beyond the bound answer without waiting for the resolver.
	for range n - maxLookups {
		<-done
	}
	close(release)
	for range maxLookups {
		<-done
	}
	if p := peak.Load(); p > maxLookups {
		t.Fatalf("%d lookups in flight; the bound is %d", p, maxLookups)
	}
}

// TestClientContextTokenRemovedAtHeaders: a client-sent x-sluice-ctx is removed in the
// header phase, before any body phase could be skipped.
func TestClientContextTokenRemovedAtHeaders(t *testing.T) {
	f := newFixture(t)
	if err := f.srv.LoadSnapshot(snapshotOf(t, append(tenancy(), key(f, "vk_x", "ORG:acme", nil))...)); err != nil {
		t.Fatal(err)
	}
	sent := f.run(t, headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_x"),
		"x-sluice-ctx", "replayed.token.value"), bodyMsg(`{"model":"gpt-4o"}`))
	removed := sent[0].GetRequestHeaders().GetResponse().GetHeaderMutation().GetRemoveHeaders()
	if !slices.Contains(removed, "x-sluice-ctx") {
		t.Fatalf("header phase removes %v, want x-sluice-ctx among them", removed)
	}
}
