package dispatcher

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/secretbox"
)

func TestLoadSnapshotCredentials(t *testing.T) {
	ring, err := secretbox.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{7}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	const secret = "sk-provider-canary-0123456789"
	sealed, err := ring.Seal([]byte(secret), config.CredentialsAAD("sealed"))
	if err != nil {
		t.Fatal(err)
	}
	// Sealed for another provider: moving a ciphertext between providers must not work.
	moved, _ := ring.Seal([]byte(secret), config.CredentialsAAD("elsewhere"))
	scope := config.MustParseScope("ORG:acme")
	docs := map[string]*config.ModelProvider{
		"sealed": {ID: "sealed", Name: "s", Type: "anthropic", Credentials: sealed, Scope: scope},
		"env":    {ID: "env", Name: "e", Type: "openai", CredentialsEnv: "PROVIDER_KEY", Scope: scope},
		"none":   {ID: "none", Name: "n", Type: "openai-compatible", BaseURL: "http://127.0.0.1:8000/", Scope: scope},
		"moved":  {ID: "moved", Name: "m", Type: "openai", Credentials: moved, Scope: scope},
		// A vertex provider needs a project: this document does not decode.
		"vertex": {ID: "vertex", Name: "v", Type: "vertex", Scope: scope, ProviderConfig: []byte(`{"region":"us-east1"}`)},
		// Someone who may edit providers names another variable of the dispatcher's
		// environment, hoping it is sent to their host as the credential.
		"exfil": {ID: "exfil", Name: "x", Type: "openai-compatible", BaseURL: "http://attacker.invalid",
			CredentialsEnv: "SECRET_OF_THE_DISPATCHER", Scope: scope},
	}
	snap := &config.Snapshot{Resources: map[config.Kind]map[string]json.RawMessage{config.KindModelProvider: {}}}
	for id, p := range docs {
		b, _ := json.Marshal(p)
		snap.Resources[config.KindModelProvider][id] = b
	}
	v, _ := ctxtoken.NewVerifier(testSignKey)
	var logs bytes.Buffer
	s, err := New(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Verifier: v, Keyring: ring,
		CredentialEnv: []string{"PROVIDER_KEY"},
		Getenv: func(k string) string {
			switch k {
			case "PROVIDER_KEY":
				return "from-env"
			case "SECRET_OF_THE_DISPATCHER":
				return "must-never-leave"
			}
			return ""
		}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.LoadSnapshot(snap)
	if err == nil || !strings.Contains(err.Error(), `"moved"`) || !strings.Contains(err.Error(), "vertex") ||
		!strings.Contains(err.Error(), `"exfil"`) {
		t.Errorf("LoadSnapshot error = %v, want the moved credential and the invalid provider reported", err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Error("the error names the credential")
	}
	ps := *s.providers.Load()
	if got := ps["sealed"]; got == nil || got.APIKey != secret || got.BaseURL != "https://api.anthropic.com" {
		t.Errorf("sealed provider = %+v", got)
	}
	if got := ps["env"]; got == nil || got.APIKey != "from-env" {
		t.Errorf("env provider = %+v", got)
	}
	if got := ps["none"]; got == nil || got.APIKey != "" || got.BaseURL != "http://127.0.0.1:8000" {
		t.Errorf("credential-less provider = %+v", got)
	}
	if ps["moved"] != nil || ps["vertex"] != nil || ps["exfil"] != nil {
		t.Error("a provider that cannot be served was published")
	}
	if strings.Contains(logs.String(), secret) {
		t.Error("the credential reached the log")
	}

	// Without a keyring a sealed credential is refused, never sent as ciphertext.
	s2, _ := New(Config{Logger: slog.New(slog.DiscardHandler), Verifier: v})
	if err := s2.LoadSnapshot(snap); err == nil || (*s2.providers.Load())["sealed"] != nil {
		t.Error("a sealed credential was accepted without a master key")
	}
}
