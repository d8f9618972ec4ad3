package admin

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/store"
)

func (e *testEnv) indexed(secret string) (string, bool) {
	e.t.Helper()
	id, err := e.store.Index(context.Background(), KeyHashIndex, e.hasher.Sum(secret).Hex())
	if errors.Is(err, store.ErrNotFound) {
		return "", false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return id, true
}

func (e *testEnv) storedKey(id string) *config.VirtualKey {
	e.t.Helper()
	doc, err := e.store.Get(context.Background(), config.KindVirtualKey, id)
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := config.DecodeResource(config.KindVirtualKey, doc.Value)
	if err != nil {
		e.t.Fatal(err)
	}
	return res.(*config.VirtualKey)
}

func TestKeySecretShownOnce(t *testing.T) {
	e := newEnv(t)
	c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "dev", "scope": "ORG:acme"})
	id, secret := c.str("id"), c.str("secret")
	if !strings.HasPrefix(id, "vk_") || !vkey.WellFormed(secret) || c.str("display_prefix") != vkey.DisplayPrefix(secret) ||
		c.str("status") != "active" {
		t.Fatalf("create answer: %s", c.raw)
	}
	if got, ok := e.indexed(secret); !ok || got != id {
		t.Fatalf("hash index: %q %v", got, ok)
	}
	if k := e.storedKey(id); k.Hash != e.hasher.Sum(secret).Hex() {
		t.Fatal("stored hash is not HMAC(pepper, secret)")
	}
	for _, r := range []resp{
		e.must(200, "GET", "/v1/virtual-keys/"+id, nil),
		e.must(200, "GET", "/v1/virtual-keys", nil),
		e.must(200, "PATCH", "/v1/virtual-keys/"+id, map[string]any{"name": "dev2"}),
		e.must(200, "POST", "/v1/virtual-keys/"+id+"/disable", nil),
	} {
		hash := e.hasher.Sum(secret).Hex()
		if strings.Contains(r.raw, secret) || strings.Contains(r.raw, hash) || strings.Contains(r.raw, `"hash"`) ||
			strings.Contains(r.raw, `"secret"`) {
			t.Fatalf("response shows the secret or its hash: %s", r.raw)
		}
	}
}

func TestKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	id := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"}).str("id")
	steps := []struct {
		action string
		status int
		want   string // status after
	}{
		{"disable", 200, "disabled"},
		{"disable", 200, "disabled"},
		{"enable", 200, "active"},
		{"enable", 200, "active"},
		{"revoke", 200, "revoked"},
		{"revoke", 200, "revoked"},
		{"enable", 409, "revoked"},
		{"disable", 409, "revoked"},
		{"rotate", 409, "revoked"},
	}
	for _, st := range steps {
		r := e.do(testAdminToken, "POST", "/v1/virtual-keys/"+id+"/"+st.action, nil)
		if r.status != st.status {
			t.Fatalf("%s: status %d, want %d: %s", st.action, r.status, st.status, r.raw)
		}
		if got := e.must(200, "GET", "/v1/virtual-keys/"+id, nil).str("status"); got != st.want {
			t.Fatalf("after %s: status %q, want %q", st.action, got, st.want)
		}
	}
	e.must(400, "PATCH", "/v1/virtual-keys/"+id, map[string]any{"status": "active"})
	e.must(404, "POST", "/v1/virtual-keys/vk_nope/disable", nil)
	e.must(413, "PATCH", "/v1/virtual-keys/"+id, `{"name":"`+strings.Repeat("x", 2<<20)+`"}`)
	e.must(400, "POST", "/v1/virtual-keys/"+id+"/revoke", map[string]any{"grace_seconds": 5})
}

func TestKeyExpiry(t *testing.T) {
	e := newEnv(t)
	exp := e.clock().Add(time.Hour)
	c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k", "expires_at": exp})
	if c.obj["expired"] != false {
		t.Fatalf("create: %s", c.raw)
	}
	e.advance(time.Hour)
	if r := e.must(200, "GET", "/v1/virtual-keys/"+c.str("id"), nil); r.obj["expired"] != true {
		t.Fatalf("after expiry: %s", r.raw)
	}
	e.must(200, "PATCH", "/v1/virtual-keys/"+c.str("id"), map[string]any{"expires_at": nil})
	if r := e.must(200, "GET", "/v1/virtual-keys/"+c.str("id"), nil); r.obj["expired"] != nil {
		t.Fatalf("expiry cleared: %s", r.raw)
	}
}

func TestRotate(t *testing.T) {
	e := newEnv(t)
	c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"})
	id, old := c.str("id"), c.str("secret")
	r := e.must(200, "POST", "/v1/virtual-keys/"+id+"/rotate", map[string]any{"grace_seconds": 60})
	neu := r.str("secret")
	if !vkey.WellFormed(neu) || neu == old || r.str("id") != id || r.str("display_prefix") != vkey.DisplayPrefix(neu) {
		t.Fatalf("rotate answer: %s", r.raw)
	}
	if r.str("previous_secret_valid_until") != e.clock().Add(time.Minute).Format(time.RFC3339) {
		t.Fatalf("previous_secret_valid_until: %s", r.raw)
	}
	for _, s := range []string{old, neu} {
		if got, ok := e.indexed(s); !ok || got != id {
			t.Fatal("both hashes must be indexed during the grace")
		}
	}
	if k := e.storedKey(id); k.PreviousHash != e.hasher.Sum(old).Hex() || k.Hash != e.hasher.Sum(neu).Hex() {
		t.Fatal("stored hashes")
	}
	if strings.Contains(e.must(200, "GET", "/v1/virtual-keys/"+id, nil).raw, `"secret"`) {
		t.Fatal("get shows a secret after rotate")
	}

	// Sweep does nothing during the grace, then drops the old hash.
	if n, err := e.srv.Sweep(context.Background()); err != nil || n != 0 {
		t.Fatalf("early sweep: %d %v", n, err)
	}
	e.advance(61 * time.Second)
	if g := e.must(200, "GET", "/v1/virtual-keys/"+id, nil); g.obj["previous_secret_valid_until"] != nil {
		t.Fatalf("an expired previous secret is still shown: %s", g.raw)
	}
	if n, err := e.srv.Sweep(context.Background()); err != nil || n != 1 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	if _, ok := e.indexed(old); ok {
		t.Fatal("old hash still indexed after sweep")
	}
	if _, ok := e.indexed(neu); !ok {
		t.Fatal("new hash lost")
	}
	if k := e.storedKey(id); k.PreviousHash != "" || k.PreviousHashValidUntil != nil {
		t.Fatal("previous hash kept in the document")
	}
}

func TestRotateDefaultGraceAndLazyCleanup(t *testing.T) {
	e := newEnv(t)
	c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"})
	id, s1 := c.str("id"), c.str("secret")
	s2 := e.must(200, "POST", "/v1/virtual-keys/"+id+"/rotate", nil).str("secret")
	if k := e.storedKey(id); !k.PreviousHashValidUntil.Equal(e.clock().Add(DefaultRotationGrace)) {
		t.Fatalf("default grace: %v", k.PreviousHashValidUntil)
	}
	// A second rotation within the grace drops the first secret at once.
	s3 := e.must(200, "POST", "/v1/virtual-keys/"+id+"/rotate", nil).str("secret")
	if _, ok := e.indexed(s1); ok {
		t.Fatal("the secret two rotations back still works")
	}
	if _, ok := e.indexed(s2); !ok {
		t.Fatal("the previous secret lost its grace")
	}
	// After the grace, the next write of the key drops the previous hash (no Sweep).
	e.advance(DefaultRotationGrace)
	e.must(200, "PATCH", "/v1/virtual-keys/"+id, map[string]any{"name": "renamed"})
	if _, ok := e.indexed(s2); ok {
		t.Fatal("expired previous hash not dropped on the next write")
	}
	if _, ok := e.indexed(s3); !ok {
		t.Fatal("current hash lost")
	}
	// grace_seconds 0: the old secret stops at once; its hash goes on the next write.
	s4 := e.must(200, "POST", "/v1/virtual-keys/"+id+"/rotate", map[string]any{"grace_seconds": 0}).str("secret")
	if k := e.storedKey(id); !k.PreviousHashValidUntil.Equal(e.clock()) {
		t.Fatal("grace 0 should end the previous secret now")
	}
	e.must(200, "POST", "/v1/virtual-keys/"+id+"/disable", nil)
	if _, ok := e.indexed(s3); ok {
		t.Fatal("grace-0 previous hash not dropped by the next write")
	}
	if _, ok := e.indexed(s4); !ok {
		t.Fatal("current hash lost")
	}
	e.must(400, "POST", "/v1/virtual-keys/"+id+"/rotate", map[string]any{"grace_seconds": -1})
	e.must(400, "POST", "/v1/virtual-keys/"+id+"/rotate", map[string]any{"grace": 1})
}

func TestRevokedKeyKeepsItsHashIndexed(t *testing.T) {
	e := newEnv(t)
	c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"})
	e.must(200, "POST", "/v1/virtual-keys/"+c.str("id")+"/revoke", nil)
	if id, ok := e.indexed(c.str("secret")); !ok || id != c.str("id") {
		t.Fatal("a revoked key's hash must stay indexed so the gateway answers virtual_key_revoked")
	}
	e.must(204, "DELETE", "/v1/virtual-keys/"+c.str("id"), nil)
	if _, ok := e.indexed(c.str("secret")); ok {
		t.Fatal("a deleted key's hash is still indexed")
	}
}

func TestScopedTokenKeyLifecycle(t *testing.T) {
	e := newEnv(t)
	tok := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "ops",
		"permissions": []string{"virtualKeys:update"}}).str("secret")
	id := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k"}).str("id")
	for _, a := range []string{"rotate", "disable", "enable", "revoke"} {
		if r := e.do(tok, "POST", "/v1/virtual-keys/"+id+"/"+a, nil); r.status != 200 {
			t.Fatalf("%s with virtualKeys:update: %d %s", a, r.status, r.raw)
		}
	}
	if r := e.do(tok, "GET", "/v1/virtual-keys/"+id, nil); r.status != 403 {
		t.Fatalf("get without virtualKeys:read: %d", r.status)
	}
}
