package mainlib

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/admin"
	"github.com/sluice-gateway/sluice/xds/store"
)

const cliAdminToken = "cli-test-admin-token-0123456789abcdefgh"

// startAdmin serves the admin API over a file store and points the CLI at it.
func startAdmin(t *testing.T) {
	t.Helper()
	st, err := store.OpenFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kr, err := secretbox.NewKeyring("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	h, err := vkey.NewHasher(bytes.Repeat([]byte("p"), 32))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := admin.New(admin.Config{Store: st, Keyring: kr, Hasher: h, AdminToken: cliAdminToken})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { ts.Close(); st.Close() })
	t.Setenv("SLUICE_URL", ts.URL)
	t.Setenv("SLUICE_API_TOKEN", cliAdminToken)
}

// sluice runs the CLI in-process.
func sluice(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = Main(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

// sluiceJSON runs the CLI with --format json and decodes its output.
func sluiceJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out, stderr, err := sluice(t, append(args, "--format", "json")...)
	if err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("sluice %s: output is not JSON: %s", strings.Join(args, " "), out)
	}
}

func TestCLIRoundTrip(t *testing.T) {
	startAdmin(t)
	t.Setenv("TEST_OPENAI_API_KEY", "sk-cli-provider-canary")

	var mp map[string]any
	sluiceJSON(t, &mp, "model-providers", "create", "--name", "openai", "--type", "openai",
		"--api-key-env", "TEST_OPENAI_API_KEY", "--models", "gpt-4o, gpt-4o-mini", "--fallback-priority", "2",
		"--provider-config-json", `{"api_version":"v1"}`)
	if mp["has_credentials"] != true || mp["scope"] != "ORG:default" || mp["fallback_priority"] != 2.0 {
		t.Fatalf("provider: %v", mp)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("sk-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mp2 map[string]any
	sluiceJSON(t, &mp2, "model-providers", "create", "--name", "local", "--type", "openai-compatible",
		"--base-url", "http://127.0.0.1:1234/v1", "--api-key-file", keyFile)
	mpID, mp2ID := mp["id"].(string), mp2["id"].(string)

	var rp map[string]any
	sluiceJSON(t, &rp, "routing-policies", "create", "--name", "default", "--providers", mpID+","+mp2ID)
	rpID := rp["id"].(string)

	var key map[string]any
	sluiceJSON(t, &key, "virtual-keys", "create", "--name", "dev", "--scope", "ORG:acme", "--routing-policy", rpID,
		"--config-json", `{"models_allowed":["gpt-4o*"],"fallback":{"max_attempts":2}}`)
	id, secret := key["id"].(string), key["secret"].(string)
	if !strings.HasPrefix(id, "vk_") || !vkey.WellFormed(secret) || key["routing_policy_id"] != rpID {
		t.Fatalf("key: %v", key)
	}

	// Table listing: aligned, no secret.
	out, _, err := sluice(t, "virtual-keys", "list")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID ") || !strings.Contains(lines[1], id) || strings.Contains(out, secret) {
		t.Fatalf("list table:\n%s", out)
	}
	if col := strings.Index(lines[0], "STATUS"); col < 0 || !strings.HasPrefix(lines[1][col:], "active") {
		t.Fatalf("columns are not aligned:\n%s", out)
	}
	var got map[string]any
	sluiceJSON(t, &got, "virtual-keys", "get", id)
	if got["secret"] != nil || got["hash"] != nil || got["status"] != "active" {
		t.Fatalf("get: %v", got)
	}
	var list []map[string]any
	sluiceJSON(t, &list, "virtual-keys", "list", "--scope", "ORG:acme")
	if len(list) != 1 || list[0]["id"] != id {
		t.Fatalf("list json: %v", list)
	}

	var upd map[string]any
	sluiceJSON(t, &upd, "virtual-keys", "update", id, "--name", "dev2", "--routing-policy", "")
	if upd["name"] != "dev2" || upd["routing_policy_id"] != nil {
		t.Fatalf("update: %v", upd)
	}

	var rot map[string]any
	sluiceJSON(t, &rot, "virtual-keys", "rotate", id, "--grace", "1h")
	if s, _ := rot["secret"].(string); !vkey.WellFormed(s) || s == secret || rot["id"] != id || rot["previous_secret_valid_until"] == nil {
		t.Fatalf("rotate: %v", rot)
	}
	for _, step := range []struct{ verb, want string }{{"disable", "disabled"}, {"enable", "active"}, {"revoke", "revoked"}} {
		out, _, err := sluice(t, "virtual-keys", step.verb, id)
		if err != nil || !strings.Contains(out, step.want) {
			t.Fatalf("%s: %v\n%s", step.verb, err, out)
		}
	}
	if _, _, err := sluice(t, "virtual-keys", "enable", id); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("enable after revoke: %v", err)
	}

	// Budgets, as the issue writes them.
	out, _, err = sluice(t, "budgets", "create", "--name", "eng-monthly", "--scope", "TEAM:eng", "--window", "month",
		"--limit", "5000", "--on-breach", "block")
	if err != nil || !strings.Contains(out, "eng-monthly") || !strings.Contains(out, "5000") {
		t.Fatalf("budget create: %v\n%s", err, out)
	}
	var budgets []map[string]any
	sluiceJSON(t, &budgets, "budgets", "list", "--scope", "TEAM:eng")
	bgID := budgets[0]["id"].(string)
	var bg map[string]any
	sluiceJSON(t, &bg, "budgets", "update", bgID, "--limit", "12.50", "--on-breach", "warn")
	if bg["limit_usd"] != "12.5" || bg["on_breach"] != "warn" {
		t.Fatalf("budget update: %v", bg)
	}
	if out, _, err := sluice(t, "budgets", "delete", bgID); err != nil || out != "deleted "+bgID+"\n" {
		t.Fatalf("budget delete: %v %q", err, out)
	}

	// Providers and policies: update and delete, in dependency order.
	var mpu map[string]any
	sluiceJSON(t, &mpu, "model-providers", "update", mpID, "--models", "gpt-4.1")
	if ms, _ := mpu["models"].([]any); len(ms) != 1 || ms[0] != "gpt-4.1" || mpu["has_credentials"] != true {
		t.Fatalf("provider update: %v", mpu)
	}
	if _, _, err := sluice(t, "model-providers", "delete", mpID); err == nil || !strings.Contains(err.Error(), rpID) {
		t.Fatalf("deleting a provider in use: %v", err)
	}
	sluiceJSON(t, &rp, "routing-policies", "update", rpID, "--providers", mp2ID)
	for _, args := range [][]string{{"routing-policies", "delete", rpID}, {"model-providers", "delete", mpID}} {
		if _, _, err := sluice(t, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	out, _, _ = sluice(t, "model-providers", "list")
	if strings.Contains(out, "sk-cli-provider-canary") || strings.Contains(out, "sk-from-file") || !strings.Contains(out, "CREDENTIALS") {
		t.Fatalf("provider list:\n%s", out)
	}
}

func TestCLISecretShownOnceInTable(t *testing.T) {
	startAdmin(t)
	out, _, err := sluice(t, "virtual-keys", "create", "--name", "dev", "--scope", "ORG:acme")
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(out, "secret: "+vkey.Prefix)
	if i < 0 || !strings.Contains(out, "shown once") {
		t.Fatalf("table create:\n%s", out)
	}
	secret := strings.Fields(out[i+len("secret: "):])[0]
	out, _, _ = sluice(t, "virtual-keys", "list")
	if strings.Contains(out, secret) {
		t.Fatal("list shows the secret")
	}
}

func TestCLIScopedToken(t *testing.T) {
	startAdmin(t)
	var tok map[string]any
	sluiceJSON(t, &tok, "api-tokens", "create", "--name", "ci", "--permissions", "virtualKeys:create,virtualKeys:read")
	t.Setenv("SLUICE_API_TOKEN", tok["secret"].(string))
	if _, _, err := sluice(t, "virtual-keys", "create", "--name", "ci-key"); err != nil {
		t.Fatal(err)
	}
	_, _, err := sluice(t, "budgets", "list")
	if err == nil || !strings.Contains(err.Error(), "budgets:read") || !strings.Contains(err.Error(), "permission_denied") {
		t.Fatalf("budgets list with a key-only token: %v", err)
	}
}

func TestCLIErrors(t *testing.T) {
	startAdmin(t)
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{"no verb", nil, []string{"budgets"}, "no verb"},
		{"unknown verb", nil, []string{"budgets", "rotate", "x"}, `unknown verb "rotate"`},
		{"missing id", nil, []string{"virtual-keys", "get"}, "usage: sluice virtual-keys get <id>"},
		{"extra argument", nil, []string{"budgets", "list", "x"}, "unexpected argument"},
		{"bad format", nil, []string{"budgets", "list", "--format", "yaml"}, "--format"},
		{"unknown flag", nil, []string{"budgets", "create", "--colour", "red"}, "flag provided but not defined"},
		{"bad config json", nil, []string{"virtual-keys", "create", "--name", "k", "--config-json", "[1]"}, "--config-json: want a JSON object"},
		{"bad int", nil, []string{"model-providers", "create", "--fallback-priority", "high"}, "whole number"},
		{"api key env unset", nil, []string{"model-providers", "create", "--name", "p", "--type", "openai", "--api-key-env", "SLUICE_TEST_UNSET"}, "SLUICE_TEST_UNSET is empty or unset"},
		{"nothing to update", nil, []string{"budgets", "update", "bg_1"}, "nothing to change"},
		{"not found", nil, []string{"virtual-keys", "get", "vk_nope"}, `No virtual key "vk_nope". (not_found)`},
		{"validation", nil, []string{"budgets", "create", "--name", "b", "--scope", "TEAM:eng", "--window", "year", "--limit", "1", "--on-breach", "never"}, "invalid_request"},
		{"bad token", map[string]string{"SLUICE_API_TOKEN": "wrong"}, []string{"budgets", "list"}, "unauthenticated"},
		{"no token", map[string]string{"SLUICE_API_TOKEN": ""}, []string{"budgets", "list"}, "SLUICE_API_TOKEN is not set"},
		{"bad url", map[string]string{"SLUICE_URL": "ftp://x"}, []string{"budgets", "list"}, "SLUICE_URL"},
		{"unreachable", map[string]string{"SLUICE_URL": "http://127.0.0.1:1"}, []string{"budgets", "list"}, "admin API at http://127.0.0.1:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			out, _, err := sluice(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q (stdout %q)", err, tc.want, out)
			}
			if strings.Contains(err.Error(), cliAdminToken) {
				t.Fatal("the error shows the token")
			}
		})
	}
	// Help is not an error.
	if _, stderr, err := sluice(t, "virtual-keys", "help"); err != nil || !strings.Contains(stderr, "rotate") {
		t.Fatalf("help: %v %s", err, stderr)
	}
	if out, _, err := sluice(t, "help"); err != nil || !strings.Contains(out, "virtual-keys") {
		t.Fatalf("top-level help: %v", err)
	}
}

func TestCLIOrganizations(t *testing.T) {
	startAdmin(t)
	for _, args := range [][]string{
		{"organizations", "create", "--id", "acme", "--name", "Acme"},
		{"teams", "create", "--id", "eng", "--org", "acme", "--name", "Engineering"},
		{"projects", "create", "--id", "web", "--org", "acme", "--team", "eng", "--name", "Web"},
		{"principals", "create", "--id", "alice", "--org", "acme", "--email", "alice@example.com"},
	} {
		if _, stderr, err := sluice(t, args...); err != nil || stderr != "" {
			t.Fatalf("%v: %v %s", args, err, stderr)
		}
	}
	// A scope naming nothing stored is accepted with a warning on stderr.
	_, stderr, err := sluice(t, "virtual-keys", "create", "--name", "k", "--scope", "TEAM:nope")
	if err != nil || !strings.Contains(stderr, "warning: scope TEAM:nope") {
		t.Fatalf("warning: %v %q", err, stderr)
	}
	out, _, err := sluice(t, "teams", "list", "--scope", "ORG:acme")
	if err != nil || !strings.Contains(out, "Engineering") {
		t.Fatalf("teams: %v\n%s", err, out)
	}
}
