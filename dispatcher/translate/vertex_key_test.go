package translate

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/maximhq/bifrost/core/schemas"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// The credential, region and model an attempt carries, and the ones refused before
// anything is sent: Bifrost would use the dispatcher's own Google identity for an empty
// credential, and put the region, project and model into the URL.
func TestVertexKey(t *testing.T) {
	sa, _ := testServiceAccount()
	edit := func(from, to string) string { return strings.Replace(sa, from, to, 1) }
	ecKey := func() string {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		b, _ := json.Marshal(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
		return string(b)
	}()
	pkcs8, _ := json.Marshal(testSAKeyPEM())
	tests := []struct {
		name, credential, region, model string
		refused                         bool
	}{
		{name: "service account", credential: sa, region: "us-east5", model: vertexClaude},
		{name: "gemini", credential: "\n" + sa + "\n", region: "europe-west4", model: vertexGemini},
		{name: "global", credential: sa, region: "global", model: vertexClaude},
		{name: "multi-region pool", credential: sa, region: "us", model: "claude-opus-4-1@20250805"},
		{name: "no credential", credential: "", region: "us-east5", model: vertexClaude, refused: true},
		{name: "access token", credential: "ya29.a0AfB_byC-canary", region: "us-east5", model: vertexClaude, refused: true},
		{name: "broken document", credential: sa[:len(sa)/2], region: "us-east5", model: vertexClaude, refused: true},
		{name: "external account", credential: edit(`"type":"service_account"`, `"type":"external_account"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "authorized user", credential: edit(`"type":"service_account"`, `"type":"authorized_user"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "no client_email", credential: edit(`"client_email"`, `"email"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "not an RSA key", credential: edit(string(pkcs8), ecKey), region: "us-east5", model: vertexClaude, refused: true},
		{name: "key not PEM", credential: edit(string(pkcs8), `"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "token_uri over http", credential: edit(`"https://oauth2.googleapis.com/token"`, `"http://oauth2.example/token"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "no project", credential: edit(`"project_id":"`+testProject+`"`, `"project_id":""`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "project with a slash", credential: edit(`"project_id":"`+testProject+`"`, `"project_id":"a/../b-project"`), region: "us-east5", model: vertexClaude, refused: true},
		{name: "no region", credential: sa, region: "", model: vertexClaude, refused: true},
		{name: "region not a region", credential: sa, region: "evil.example.com/x", model: vertexClaude, refused: true},
		{name: "model with a path", credential: sa, region: "us-east5", model: "claude-x/../../endpoints/1", refused: true},
		{name: "model with a method", credential: sa, region: "us-east5", model: "gemini-2.5-flash:countTokens?x=", refused: true},
		{name: "other family", credential: sa, region: "us-east5", model: "mistral-large-2411", refused: true},
		{name: "fine-tuned endpoint", credential: sa, region: "us-east5", model: "1234567890", refused: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := vertexRequest(wire.OpenAI, wire.ChatCompletions, tc.region, tc.credential, tc.model, false, "{}")
			k, f, err := vertexKey(req)
			if tc.refused {
				if err == nil || f.status != 500 || !f.retryable || f.code != "provider_misconfigured" {
					t.Fatalf("failure %+v err %v, want a retryable 500", f, err)
				}
				for _, s := range []string{testKeyFragment(), "ya29", "canary"} {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q quotes the credential", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			vk := k.VertexKeyConfig
			if vk == nil || vk.Region.GetValue() != tc.region || vk.ProjectID.GetValue() != testProject ||
				vk.AuthCredentials.GetValue() != strings.TrimSpace(tc.credential) {
				t.Fatalf("key config %+v", vk)
			}
			if k.Value.GetValue() != "" || k.ID != req.Provider.ID || len(k.Models) != 1 || k.Models[0] != "*" {
				t.Errorf("key: value %q ID %q models %v (an API key would go to Gemini in the URL)", k.Value.GetValue(), k.ID, k.Models)
			}
		})
	}
}

// A refused attempt sends nothing (no token exchange either) and fails uncommitted in the
// client's envelope, retryable: another provider may serve the request.
func TestVertexRefusedAttempt(t *testing.T) {
	e := newCloudEngine(t)
	tokens := newFakeGoogleToken(t)
	fake := newFakeVertex(t, "us-east5", tokens, jsonReply(200, claudeTextJSON))
	sa, _ := testServiceAccount()
	for _, c := range geminiClients {
		for _, bad := range []struct{ name, credential, model string }{
			{"access token", "ya29.a0AfB_byC-canary", vertexClaude},
			{"model of another family", sa, "llama-4-maverick-17b-128e-instruct-maas"},
		} {
			t.Run(c.name+" "+bad.name, func(t *testing.T) {
				req := vertexRequest(c.format, c.ep, "us-east5", bad.credential, bad.model, true, geminiClientBodies[c.ep](true))
				rec := httptest.NewRecorder()
				res := e.Do(t.Context(), req, rec)
				assertNothingWritten(t, rec)
				if res.Committed || res.Status != 500 || !res.Retryable || res.Err == nil {
					t.Fatalf("result %+v", res)
				}
				b := decode(t, string(res.Body))
				if get(b, "error", "message") == nil || (c.format == wire.OpenAI && get(b, "error", "code") != "provider_misconfigured") {
					t.Errorf("body %s", res.Body)
				}
				assertNoVertexSecrets(t, tokens, string(res.Body))
			})
		}
	}
	if n, x := fake.count(), tokens.count(); n != 0 || x != 0 {
		t.Errorf("Vertex received %d requests and the token endpoint %d", n, x)
	}
}

// The lane answers for every client format a Vertex provider is asked; other endpoints
// are refused.
func TestVertexPick(t *testing.T) {
	for _, tc := range []struct {
		format wire.Format
		ep     wire.Endpoint
		ok     bool
	}{
		{wire.OpenAI, wire.ChatCompletions, true}, {wire.Anthropic, wire.Messages, true}, {wire.OpenAI, wire.Responses, true},
		{wire.OpenAI, wire.Embeddings, false}, {wire.Anthropic, wire.CountTokens, false},
	} {
		for _, model := range []string{vertexClaude, vertexGemini} {
			req := request(tc.format, config.ProviderVertex, "", false, "{}")
			req.Endpoint, req.Model = tc.ep, model
			if d, ok := pick(req); ok != tc.ok || (ok && (d.upstream != "vertex" || d.key == nil || d.adapt == nil)) {
				t.Errorf("%s %s %s: ok %v upstream %s", model, tc.format, tc.ep, ok, d.upstream)
			}
		}
	}
}

// The Vertex pool trusts the test CA like the other https pools, and follows the
// environment's HTTPS proxy, as Google's token exchange does, only when there is one.
func TestVertexPoolConfig(t *testing.T) {
	a := newAccount(Config{caCertPEM: testPKI.caPEM})
	c, err := a.GetConfigForProvider(schemas.Vertex)
	if err != nil {
		t.Fatal(err)
	}
	if c.ProxyConfig == nil || c.ProxyConfig.Type != schemas.EnvProxy || c.NetworkConfig.CACertPEM.GetValue() != testPKI.caPEM {
		t.Errorf("proxy %+v CA set %v", c.ProxyConfig, c.NetworkConfig.CACertPEM != nil)
	}
	c.ProxyConfig.Type = schemas.NoProxy
	if again, _ := a.GetConfigForProvider(schemas.Vertex); again.ProxyConfig.Type != schemas.EnvProxy {
		t.Error("GetConfigForProvider hands out the account's own ProxyConfig")
	}
	t.Setenv("HTTPS_PROXY", "")
	if c, _ := newAccount(Config{}).GetConfigForProvider(schemas.Vertex); c.ProxyConfig != nil || c.NetworkConfig.CACertPEM != nil {
		t.Errorf("without a proxy in the environment: proxy %+v CA %v", c.ProxyConfig, c.NetworkConfig.CACertPEM)
	}
}
