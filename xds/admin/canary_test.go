package admin

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
)

// TestProviderCredentialsSealed: the api_key is stored only sealed, bound to the
// provider's id, and can be replaced or removed.
func TestProviderCredentialsSealed(t *testing.T) {
	e := newEnv(t)
	const key = "sk-provider-credential-canary-1"
	c := e.must(201, "POST", "/v1/model-providers", map[string]any{"name": "p", "type": "openai", "api_key": key})
	id := c.str("id")
	if c.obj["has_credentials"] != true || c.obj["credentials"] != nil {
		t.Fatalf("create answer: %s", c.raw)
	}
	open := func() string {
		doc, err := e.store.Get(context.Background(), config.KindModelProvider, id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(doc.Value), key) {
			t.Fatal("credential stored in clear")
		}
		res, _ := config.DecodeResource(config.KindModelProvider, doc.Value)
		mp := res.(*config.ModelProvider)
		if mp.Credentials.IsZero() {
			return ""
		}
		pt, err := e.keyring.Open(mp.Credentials, config.CredentialsAAD(id))
		if err != nil {
			t.Fatal(err)
		}
		return string(pt)
	}
	if got := open(); got != key {
		t.Fatalf("opened %q", got)
	}
	e.must(200, "PATCH", "/v1/model-providers/"+id, map[string]any{"name": "renamed"})
	if got := open(); got != key {
		t.Fatal("a PATCH without api_key changed the credentials")
	}
	e.must(200, "PATCH", "/v1/model-providers/"+id, map[string]any{"api_key": "sk-second"})
	if got := open(); got != "sk-second" {
		t.Fatalf("after replacing: %q", got)
	}
	r := e.must(200, "PATCH", "/v1/model-providers/"+id, map[string]any{"api_key": nil})
	if got := open(); got != "" || r.obj["has_credentials"] != false {
		t.Fatalf("after removing: %q %s", got, r.raw)
	}
	e.must(400, "PATCH", "/v1/model-providers/"+id, map[string]any{"credentials": map[string]any{"key_id": "k1"}})
}

// TestCanaries plants secrets everywhere a client can put or receive one, then reads
// everything back: no response (other than the one that minted a secret), no log line and
// no byte of the store holds any of them.
func TestCanaries(t *testing.T) {
	e := newEnv(t)
	const providerKey = "sk-canary-provider-credential-7f3a9"
	var minted []string // secrets shown once, in their create/rotate answers
	mp := e.must(201, "POST", "/v1/model-providers", map[string]any{"name": "p", "type": "openai-compatible",
		"base_url": "https://llm.example/v1", "api_key": providerKey}).str("id")
	e.must(200, "PATCH", "/v1/model-providers/"+mp, map[string]any{"api_key": providerKey + "-v2"})
	e.must(201, "POST", "/v1/routing-policies", map[string]any{"name": "rp", "providers": []string{mp}})
	e.must(201, "POST", "/v1/budgets", map[string]any{"name": "b", "scope": "TEAM:eng", "window": "month", "limit_usd": "5000", "on_breach": "block"})
	e.must(201, "POST", "/v1/organizations", map[string]any{"id": "acme", "name": "Acme"})
	e.must(201, "POST", "/v1/principals", map[string]any{"id": "alice", "org_id": "acme"})
	var keyIDs []string
	for i := range 3 {
		c := e.must(201, "POST", "/v1/virtual-keys", map[string]any{"name": "k", "scope": "ORG:acme"})
		keyIDs = append(keyIDs, c.str("id"))
		minted = append(minted, c.str("secret"))
		if i == 0 {
			minted = append(minted, e.must(200, "POST", "/v1/virtual-keys/"+c.str("id")+"/rotate", nil).str("secret"))
		}
	}
	tok := e.must(201, "POST", "/v1/api-tokens", map[string]any{"name": "ci", "permissions": Permissions()}).str("secret")
	minted = append(minted, tok)

	// A client presenting a secret in the wrong place gets no echo either.
	for _, s := range append([]string{testAdminToken}, minted...) {
		r := e.do(s+"x", "GET", "/v1/virtual-keys", nil)
		if r.status != 401 || strings.Contains(r.raw, s) {
			t.Fatalf("bad token answer: %d %s", r.status, r.raw)
		}
	}
	e.do(testAdminToken, "POST", "/v1/virtual-keys", map[string]any{"name": "k", "secret": minted[0]})

	var bodies []string
	for _, who := range []string{testAdminToken, tok} {
		for _, sp := range specs {
			list := e.do(who, "GET", "/v1/"+sp.path, nil)
			bodies = append(bodies, list.raw)
			for _, x := range list.list() {
				bodies = append(bodies, e.do(who, "GET", "/v1/"+sp.path+"/"+x["id"].(string), nil).raw)
			}
		}
		bodies = append(bodies, e.do(who, "GET", "/v1/api-tokens", nil).raw)
	}
	for _, id := range keyIDs {
		bodies = append(bodies, e.must(200, "POST", "/v1/virtual-keys/"+id+"/disable", nil).raw)
	}
	raw, err := os.ReadFile(filepath.Join(e.dir, "store.log"))
	if err != nil {
		t.Fatal(err)
	}
	canaries := append([]string{providerKey, testAdminToken, "pepper-canary"}, minted...)
	for _, c := range canaries {
		for _, b := range bodies {
			if strings.Contains(b, c) {
				t.Fatalf("a response holds canary %.16s…: %s", c, b)
			}
		}
		if strings.Contains(e.logs.String(), c) {
			t.Fatalf("the log holds canary %.16s…", c)
		}
		if strings.Contains(string(raw), c) {
			t.Fatalf("the store holds canary %.16s… in clear", c)
		}
	}
	for _, b := range bodies {
		for _, f := range []string{`"hash"`, `"previous_hash"`, `"credentials"`, `"secret"`, `"ciphertext"`} {
			if strings.Contains(b, f) {
				t.Fatalf("a response has field %s: %s", f, b)
			}
		}
	}
	if !strings.Contains(e.logs.String(), `"caller":"apitok_`) {
		t.Fatal("the access log should name the API token by id")
	}
}
