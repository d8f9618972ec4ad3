package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/secretbox"
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

// TestMasterKeyRotation: with a new primary master key added (the old one kept for
// reading), rewrap re-seals every credential under it, after which the old key can go.
func TestMasterKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.must(201, "POST", "/v1/model-providers", map[string]any{"id": "a", "name": "a", "type": "openai", "api_key": "sk-a"})
	e.must(201, "POST", "/v1/model-providers", map[string]any{"id": "b", "name": "b", "type": "openai"}) // no credential

	k1 := bytes.Repeat([]byte{7}, 32) // newEnv's key
	k2 := bytes.Repeat([]byte{9}, 32)
	both, err := secretbox.NewKeyring("k2", map[string][]byte{"k1": k1, "k2": k2})
	if err != nil {
		t.Fatal(err)
	}
	e.ts.Close()
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	e.keyring = both
	e.open(nil)
	if got := e.must(200, "POST", "/v1/model-providers/rewrap", nil); got.obj["rewrapped"] != float64(1) {
		t.Fatalf("rewrap: %s, want 1 credential rewrapped", got.raw)
	}
	if got := e.must(200, "POST", "/v1/model-providers/rewrap", nil); got.obj["rewrapped"] != float64(0) {
		t.Fatalf("second rewrap: %s, want nothing left to do", got.raw)
	}
	// The old key is gone; the credential still opens.
	only2, _ := secretbox.NewKeyring("k2", map[string][]byte{"k2": k2})
	doc, err := e.store.Get(context.Background(), config.KindModelProvider, "a")
	if err != nil {
		t.Fatal(err)
	}
	var mp config.ModelProvider
	if err := json.Unmarshal(doc.Value, &mp); err != nil {
		t.Fatal(err)
	}
	pt, err := only2.Open(mp.Credentials, config.CredentialsAAD("a"))
	if err != nil || string(pt) != "sk-a" {
		t.Fatalf("after rewrap, open with the new key alone: %q, %v", pt, err)
	}
}
