package config

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/secretbox"
)

func TestParseScope(t *testing.T) {
	good := map[string]Scope{
		"ORG:acme":          {ScopeOrg, "acme"},
		"team:eng":          {ScopeTeam, "eng"},
		"PROJECT:web-1.2":   {ScopeProject, "web-1.2"},
		"PRINCIPAL:alice":   {ScopePrincipal, "alice"},
		"VIRTUAL_KEY:vk_01": {ScopeVirtualKey, "vk_01"},
	}
	for in, want := range good {
		got, err := ParseScope(in)
		if err != nil || got != want {
			t.Errorf("ParseScope(%q) = %v, %v; want %v", in, got, err, want)
		}
		if !strings.EqualFold(got.String(), in) {
			t.Errorf("String() = %q, want %q", got, in)
		}
	}
	for _, in := range []string{"", "acme", "ORG:", ":acme", "GROUP:x", "TEAM:a:b", "TEAM:has space",
		"TEAM:-lead", "VIRTUAL_KEY:eng", "ORG:" + strings.Repeat("a", 129)} {
		if sc, err := ParseScope(in); err == nil {
			t.Errorf("ParseScope(%q) = %v, want error", in, sc)
		}
	}
}

func TestScopeJSON(t *testing.T) {
	type doc struct {
		S Scope `json:"s"`
		Z Scope `json:"z,omitzero"`
	}
	b, err := json.Marshal(doc{S: MustParseScope("TEAM:eng")})
	if err != nil || string(b) != `{"s":"TEAM:eng"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var d doc
	if err := json.Unmarshal([]byte(`{"s":"ORG:acme","z":""}`), &d); err != nil || d.S != (Scope{ScopeOrg, "acme"}) || !d.Z.IsZero() {
		t.Fatalf("Unmarshal = %+v, %v", d, err)
	}
	for _, bad := range []string{`{"s":"nope"}`, `{"s":{"Kind":"ORG"}}`, `{"s":3}`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}

func TestParseUSD(t *testing.T) {
	good := map[string]NanoUSD{
		"5000":                 5000 * NanoPerUSD,
		"0":                    0,
		"0.000000001":          1,
		"12.5":                 12_500_000_000,
		"12.50":                12_500_000_000,
		"007.1":                7_100_000_000,
		"9223372036.854775807": NanoUSD(1<<63 - 1),
	}
	for in, want := range good {
		if got, err := ParseUSD(in); err != nil || got != want {
			t.Errorf("ParseUSD(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "+1", "1e3", "abc", "1.0000000001", "5.", ".5", "1,000",
		" 1", "1.2.3", "9223372037", "9223372036.854775808", "NaN", "0x10"} {
		if got, err := ParseUSD(in); err == nil {
			t.Errorf("ParseUSD(%q) = %d, want error", in, got)
		}
	}
	for n, want := range map[NanoUSD]string{0: "0", 1: "0.000000001", 12_500_000_000: "12.5",
		5000 * NanoPerUSD: "5000", -NanoPerUSD / 2: "-0.5"} {
		if got := n.String(); got != want {
			t.Errorf("NanoUSD(%d).String() = %q, want %q", int64(n), got, want)
		}
	}
}

func TestBudgetMoneyJSON(t *testing.T) {
	var b Budget
	if err := json.Unmarshal([]byte(`{"limit_usd":"12.50"}`), &b); err != nil || b.LimitNanoUSD != 12_500_000_000 {
		t.Fatalf("string: %d, %v", b.LimitNanoUSD, err)
	}
	if err := json.Unmarshal([]byte(`{"limit_usd":5000}`), &b); err != nil || b.LimitNanoUSD != 5000*NanoPerUSD {
		t.Fatalf("number: %d, %v", b.LimitNanoUSD, err)
	}
	for _, bad := range []string{`{"limit_usd":1e3}`, `{"limit_usd":"-1"}`, `{"limit_usd":null}`, `{"limit_usd":"abc"}`, `{"limit_usd":-2}`} {
		if err := json.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
	out, _ := json.Marshal(Budget{LimitNanoUSD: 12_500_000_000})
	if !strings.Contains(string(out), `"limit_usd":"12.5"`) {
		t.Fatalf("Marshal = %s", out)
	}
}

func TestNewID(t *testing.T) {
	ulid := regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{26}$`)
	for _, k := range Kinds() {
		a, b := NewID(k), NewID(k)
		if a == b || !strings.HasPrefix(a, k.IDPrefix()) || !ulid.MatchString(strings.TrimPrefix(a, k.IDPrefix())) {
			t.Errorf("NewID(%s) = %q, %q", k, a, b)
		}
		if err := ValidateID(k, a); err != nil {
			t.Errorf("ValidateID(%s, NewID) = %v", k, err)
		}
	}
	// Known answer from the ULID spec: this millisecond encodes as 01ARYZ6S41.
	if got := newULID(time.UnixMilli(1469918176385))[:10]; got != "01ARYZ6S41" {
		t.Errorf("time part = %s, want 01ARYZ6S41", got)
	}
	if got := newULID(time.UnixMilli(1<<48 - 1))[:10]; got != "7ZZZZZZZZZ" {
		t.Errorf("max time encodes as %s", got)
	}
	earlier, later := newULID(time.UnixMilli(1000)), newULID(time.UnixMilli(2000))
	if earlier >= later {
		t.Error("ULIDs do not sort by time")
	}
	if ValidateID(KindVirtualKey, "rp_X") == nil || ValidateID(KindVirtualKey, "vk_") == nil || ValidateID(Kind("x"), "a") == nil {
		t.Error("ValidateID accepted a bad id")
	}
	if ValidateID(KindTeam, "eng") != nil {
		t.Error("slug team id refused")
	}
	defer func() {
		if recover() == nil {
			t.Error("NewID(unknown) did not panic")
		}
	}()
	NewID("nope")
}

var (
	t0     = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	hash1  = strings.Repeat("ab", 32)
	hash2  = strings.Repeat("cd", 32)
	sealed = secretbox.Sealed{KeyID: "k1", Nonce: make([]byte, 12), Ciphertext: make([]byte, 20)}
)

// validResources returns one valid, fully populated value of every kind.
func validResources() []Resource {
	later := t0.Add(24 * time.Hour)
	allow := []string{"^read_", "^search$"}
	return []Resource{
		&Organization{ID: "acme", Name: "Acme", CreatedAt: t0, UpdatedAt: t0},
		&Team{ID: "eng", OrgID: "acme", Name: "Engineering"},
		&Project{ID: "web", OrgID: "acme", TeamID: "eng", Name: "Web"},
		&Principal{ID: "alice", OrgID: "acme", Name: "Alice", Email: "alice@example.com"},
		&ModelProvider{ID: "mp_01", Name: "openai-main", Type: "openai", Credentials: sealed,
			ProviderConfig: json.RawMessage(`{"region":"us-east-1"}`), Limits: RateLimits{RPM: 10, TPM: 1000},
			FallbackPriority: 1, Scope: MustParseScope("ORG:acme"), CreatedAt: t0, UpdatedAt: t0},
		&ModelProvider{ID: "mp_02", Name: "azure", Type: ProviderAzure, BaseURL: "https://x.openai.azure.com",
			ProviderConfig: json.RawMessage(`{"api_version":"2024-10-21","deployments":{"gpt-4o":"prod"}}`),
			Scope:          MustParseScope("TEAM:eng")},
		&VirtualKey{ID: "vk_01", Name: "dev", Scope: MustParseScope("ORG:acme"), PrincipalID: "alice",
			Hash: hash1, DisplayPrefix: "sk-sluice-AbCd", Status: KeyActive, ExpiresAt: &later,
			RoutingPolicyID: "rp_01", PreviousHash: hash2, PreviousHashValidUntil: &later,
			Config: KeyConfig{
				ModelAliases:     map[string]Alias{"fast": {Model: "gpt-4o-mini"}, "smart": {ByProvider: map[string]string{"mp_01": "gpt-4o"}}},
				ModelsAllowed:    []string{"gpt-4o", "claude-*"},
				ProvidersAllowed: []string{"mp_01", "mp_02"},
				Fallback:         Fallback{MaxAttempts: 2, Triggers: []FallbackTrigger{Trigger5xx, Trigger429}},
				PolicyRules: PolicyRules{Tools: RuleSet{Deny: []string{"^exec"}, Allow: &allow},
					URLs: RuleSet{Deny: []string{`\.internal$`}}},
				CacheMode: CacheRespect, Guardrails: []string{"gr_pii"}, RateLimits: RateLimits{RPD: 100},
			}, CreatedAt: t0, UpdatedAt: t0},
		&RoutingPolicy{ID: "rp_01", Name: "primary", Scope: MustParseScope("PROJECT:web"), Strategy: StrategyOrdered,
			Providers: []string{"mp_01", "mp_02"}},
		&Budget{ID: "bg_01", Name: "eng-monthly", Scope: MustParseScope("TEAM:eng"), Window: WindowMonth,
			LimitNanoUSD: 5000 * NanoPerUSD, OnBreach: BreachBlock},
		&Budget{ID: "bg_02", Name: "key", Scope: MustParseScope("VIRTUAL_KEY:vk_01"), Window: WindowTotal,
			LimitNanoUSD: 1, OnBreach: BreachWarn},
	}
}

func TestResourcesValidAndRoundTrip(t *testing.T) {
	for _, r := range validResources() {
		t.Run(string(r.ResourceKind())+"/"+r.ResourceID(), func(t *testing.T) {
			if err := r.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			back, err := DecodeResource(r.ResourceKind(), b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back, r) {
				t.Fatalf("round trip:\n got %#v\nwant %#v\njson %s", back, r, b)
			}
			if regexp.MustCompile(`[A-Z][a-z]+[A-Z]\w*"\s*:`).Match(b) {
				t.Errorf("JSON has a non-snake_case field: %s", b)
			}
		})
	}
}

func TestKeyJSONShape(t *testing.T) {
	in := `{"id":"vk_9","name":"n","scope":"ORG:acme","hash":"` + hash1 + `","display_prefix":"sk-sluice-ab",
	"status":"active","config":{"model_aliases":{"a":"m"},"policy_rules":{"tools":{"deny":["x"],"allow":null},
	"mcp":{"allow":[]}},"fallback":{"max_attempts":3,"triggers":["timeout"]},"cache_mode":"force"}}`
	var k VirtualKey
	if err := json.Unmarshal([]byte(in), &k); err != nil {
		t.Fatal(err)
	}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	if k.Config.PolicyRules.Tools.Allow != nil || k.Config.PolicyRules.MCP.Allow == nil {
		t.Fatal("allow: null and allow: [] must differ")
	}
	tools, _ := k.Config.PolicyRules.Tools.Compile()
	mcp, _ := k.Config.PolicyRules.MCP.Compile()
	if tools.Allows("xyz") || !tools.Allows("read") || mcp.Allows("anything") {
		t.Fatal("rule semantics")
	}
	allow := []string{"^read"}
	r, _ := RuleSet{Deny: []string{"secret"}, Allow: &allow}.Compile()
	if !r.Allows("read_file") || r.Allows("read_secret") || r.Allows("write") {
		t.Fatal("deny wins over allow; allow list restricts")
	}
}

func TestValidateRejects(t *testing.T) {
	past := t0
	cases := []struct {
		name string
		r    Resource
		want []string // substrings every one of which must appear
	}{
		{"org empty", &Organization{}, []string{"id", "name is required"}},
		{"team no org", &Team{ID: "eng", Name: "x"}, []string{"org_id is required"}},
		{"team bad org", &Team{ID: "eng", OrgID: "a b", Name: "x"}, []string{"org_id"}},
		{"project bad team", &Project{ID: "p", OrgID: "o", TeamID: "!", Name: "x"}, []string{"team_id"}},
		{"principal email", &Principal{ID: "a", OrgID: "o", Email: "not an email"}, []string{"email"}},
		{"name control chars", &Organization{ID: "a", Name: "x\ny"}, []string{"control"}},
		{"provider everything", &ModelProvider{ID: "not a slug", Type: "mystery", BaseURL: "ftp://x",
			ProviderConfig: json.RawMessage(`[1]`), Limits: RateLimits{RPM: -1}, FallbackPriority: -1,
			Credentials: secretbox.Sealed{KeyID: "k"}, CredentialsEnv: "1BAD"},
			[]string{"must be 1-128 characters", "credentials_env", "name is required", "unknown type", "base_url", "provider_config",
				"rpm is negative", "fallback_priority", "credentials", "scope is required"}},
		{"provider compat needs url", &ModelProvider{ID: "mp_1", Name: "n", Type: "openai-compatible", Scope: MustParseScope("ORG:a")},
			[]string{"base_url is required"}},
		{"provider url with creds", &ModelProvider{ID: "mp_1", Name: "n", Type: "openai", BaseURL: "https://u:p@x", Scope: MustParseScope("ORG:a")},
			[]string{"without credentials"}},
		{"provider key scope", &ModelProvider{ID: "mp_1", Name: "n", Type: "openai", Scope: MustParseScope("VIRTUAL_KEY:vk_1")},
			[]string{"VIRTUAL_KEY is not allowed"}},
		{"key everything", &VirtualKey{ID: "vk_1", Name: "n", Scope: MustParseScope("ORG:a"), PrincipalID: "a b",
			Hash: "zz", DisplayPrefix: "sk-sluice-" + strings.Repeat("A", 38), Status: "paused", RoutingPolicyID: "mp_1",
			PreviousHashValidUntil: &past,
			Config: KeyConfig{ModelAliases: map[string]Alias{"": {}}, ModelsAllowed: []string{"", "a*b"},
				ProvidersAllowed: []string{"mp_1", "mp_1", "not a slug"}, Fallback: Fallback{MaxAttempts: 11, Triggers: []FallbackTrigger{"400"}},
				PolicyRules: PolicyRules{Tools: RuleSet{Deny: []string{"("}}, MCP: RuleSet{Allow: &[]string{"[z-a]"}},
					URLs: RuleSet{Deny: []string{"ok", "*"}}},
				CacheMode: "sometimes", Guardrails: []string{""}, RateLimits: RateLimits{TPM: -5}}},
			[]string{"principal_id", "hash", "display_prefix", "status", "routing_policy_id",
				"previous_hash_valid_until is set without", "empty alias name", "no target model",
				"models_allowed[0]", "models_allowed[1]", "duplicate", "providers_allowed[2]", "max_attempts",
				"unknown trigger", "policy_rules.tools: deny[0]", "policy_rules.mcp: allow[0]", "policy_rules.urls: deny[1]",
				"cache_mode", "guardrails[0]", "tpm is negative"}},
		{"key previous hash", &VirtualKey{ID: "vk_1", Name: "n", Scope: MustParseScope("ORG:a"), Hash: hash1,
			DisplayPrefix: "sk-sluice-", Status: KeyActive, PreviousHash: hash1},
			[]string{"previous_hash equals hash", "needs previous_hash_valid_until"}},
		{"routing", &RoutingPolicy{ID: "rp_1", Name: "n", Scope: MustParseScope("ORG:a"), Strategy: "random"},
			[]string{"strategy", "providers is empty"}},
		{"routing dup", &RoutingPolicy{ID: "rp_1", Name: "n", Scope: MustParseScope("ORG:a"), Strategy: StrategyOrdered,
			Providers: []string{"mp_1", "mp_1"}}, []string{"duplicate"}},
		{"budget", &Budget{ID: "bg_1", Name: "n", Window: "fortnight", LimitNanoUSD: -1, OnBreach: "shrug"},
			[]string{"scope is required", "window", "negative", "on_breach"}},
		{"budget bad scope", &Budget{ID: "bg_1", Name: "n", Scope: Scope{Kind: "GROUP", ID: "x"}, Window: WindowDay, OnBreach: BreachWarn},
			[]string{"unknown kind"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.r.Validate()
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestExpired(t *testing.T) {
	k := &VirtualKey{}
	if k.Expired(t0) {
		t.Fatal("no expiry")
	}
	k.ExpiresAt = &t0
	if !k.Expired(t0) || k.Expired(t0.Add(-time.Nanosecond)) {
		t.Fatal("expiry boundary")
	}
}

func TestCredentialsAADDistinct(t *testing.T) {
	if string(CredentialsAAD("mp_1")) == string(CredentialsAAD("mp_2")) {
		t.Fatal("aad must bind the provider id")
	}
}

func TestCloudConfig(t *testing.T) {
	for _, tc := range []struct {
		typ  ProviderType
		cfg  string
		want string // "" for valid
	}{
		{ProviderBedrock, `{"region":"us-east-1"}`, ""},
		{ProviderBedrock, `{"region":"eu-central-2","project":"x"}`, ""},
		{ProviderBedrock, `{}`, "region"},
		{ProviderBedrock, `{"region":"US EAST"}`, "region"},
		{ProviderVertex, `{"region":"europe-west4","project":"acme-ai"}`, ""},
		{ProviderVertex, `{"region":"europe-west4"}`, "project"},
	} {
		p := &ModelProvider{Type: tc.typ, ProviderConfig: []byte(tc.cfg)}
		_, err := p.Cloud()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.typ, tc.cfg, err, tc.want)
		}
	}
}
