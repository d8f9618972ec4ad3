package admin

import (
	"testing"
	"time"
)

// A stored credential belongs to the endpoint it was given for, and a provider can never
// name one of the gateway's own environment variables as its credential.
func TestProviderCredentialCannotBeRedirected(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/v1/model-providers", map[string]any{"id": "oa", "name": "oa", "type": "openai-compatible",
		"base_url": "https://llm.internal", "api_key": "sk-real-provider-key"})
	// Moving it elsewhere without the key again is refused, and nothing changes.
	if r := e.must(400, "PATCH", "/v1/model-providers/oa", map[string]any{"base_url": "https://attacker.example"}); r.errCode() == "" {
		t.Fatal("no error code")
	}
	if got := e.must(200, "GET", "/v1/model-providers/oa", nil).str("base_url"); got != "https://llm.internal" {
		t.Fatalf("base_url = %q after a refused move", got)
	}
	// With the key sent again (or dropped), the move is an operator's deliberate act.
	e.must(200, "PATCH", "/v1/model-providers/oa", map[string]any{"base_url": "https://llm2.internal", "api_key": "sk-new"})
	e.must(200, "PATCH", "/v1/model-providers/oa", map[string]any{"base_url": "https://llm3.internal", "api_key": nil})
	// Other fields change freely.
	e.must(200, "PATCH", "/v1/model-providers/oa", map[string]any{"models": []string{"m"}})

	for _, name := range []string{"SLUICE_CTX_KEY", "SLUICE_MASTER_KEY", "sluice_fleet_token"} {
		e.must(400, "POST", "/v1/model-providers", map[string]any{"name": "x", "type": "openai", "credentials_env": name})
	}
	e.must(201, "POST", "/v1/model-providers", map[string]any{"name": "y", "type": "openai", "credentials_env": "OPENAI_API_KEY"})
}

// TestChildTokenCannotOutliveParent: a token that expires may only mint tokens that expire
// no later than it does.
func TestChildTokenCannotOutliveParent(t *testing.T) {
	e := newEnv(t)
	parent := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "short",
		"permissions": []string{"apiTokens:create"}, "expires_at": e.clock().Add(time.Hour)}).str("secret")
	mint := func(body map[string]any) int {
		body["name"], body["permissions"] = "child", []string{"apiTokens:create"}
		return e.do(parent, "POST", "/v1/api-tokens", body).status
	}
	if got := mint(map[string]any{}); got != 403 {
		t.Errorf("child without expiry: %d, want 403", got)
	}
	if got := mint(map[string]any{"expires_at": e.clock().Add(2 * time.Hour)}); got != 403 {
		t.Errorf("child outliving its parent: %d, want 403", got)
	}
	if got := mint(map[string]any{"expires_at": e.clock().Add(30 * time.Minute)}); got != 201 {
		t.Errorf("child within its parent's life: %d, want 201", got)
	}
}
