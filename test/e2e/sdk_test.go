package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// sdkRunner runs one SDK driver scenario and returns its JSON summary.
type sdkRunner struct {
	name string   // e.g. "node/openai"
	argv []string // command and script
}

func repoDir(t *testing.T, rel string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", rel)
}

func runners(t *testing.T) map[string]sdkRunner {
	t.Helper()
	nodeDir := os.Getenv("SLUICE_NODE_SDK")
	python := os.Getenv("SLUICE_PYTHON")
	pyDir := os.Getenv("SLUICE_PY_SDK")
	if nodeDir == "" || python == "" {
		required(t, "SLUICE_NODE_SDK and SLUICE_PYTHON")
	}
	if pyDir == "" {
		pyDir = repoDir(t, "test/sdk/python")
	}
	return map[string]sdkRunner{
		"node/openai":      {"node/openai", []string{"node", filepath.Join(nodeDir, "openai.mjs")}},
		"node/anthropic":   {"node/anthropic", []string{"node", filepath.Join(nodeDir, "anthropic.mjs")}},
		"python/openai":    {"python/openai", []string{python, filepath.Join(pyDir, "openai_driver.py")}},
		"python/anthropic": {"python/anthropic", []string{python, filepath.Join(pyDir, "anthropic_driver.py")}},
	}
}

type sdkCase struct {
	scenario, model, key string
	extraEnv             []string
}

func (r sdkRunner) run(t *testing.T, g *gateway, c sdkCase, marker string) (map[string]any, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.argv[0], append(r.argv[1:], c.scenario)...)
	key := g.keys["main"]
	if c.key != "" {
		key = g.keys[c.key]
	}
	cmd.Env = append(os.Environ(), "SLUICE_BASE_URL="+g.url, "SLUICE_KEY="+key,
		"SLUICE_MARKER="+marker, "SLUICE_MODEL="+c.model, "SLUICE_MAX_RETRIES=0")
	cmd.Env = append(cmd.Env, c.extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Logf("%s %s stderr:\n%s", r.name, c.scenario, stderr.String())
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var out map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &out); err != nil {
		t.Fatalf("%s %s: summary is not JSON: %q", r.name, c.scenario, stdout.String())
	}
	return out, nil
}

// TestSDKs drives every official SDK through Envoy, extproc and the dispatcher. The driver
// scripts assert with the SDKs' own helpers (stream accumulators included); this test checks
// what reached the provider.
func TestSDKs(t *testing.T) {
	g := startGateway(t)
	rs := runners(t)
	cases := []struct {
		runner string
		sdkCase
		wantPath   string // path the provider must have been called on
		translated bool
	}{
		{"node/openai", sdkCase{scenario: "chat", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"node/openai", sdkCase{scenario: "chat-stream", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"node/openai", sdkCase{scenario: "chat-stream-tools", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"node/openai", sdkCase{scenario: "chat", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "chat-stream", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "chat-stream-tools", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "responses", model: "gpt-4o-mini"}, "/v1/responses", false},
		{"node/openai", sdkCase{scenario: "responses-stream", model: "gpt-4o-mini"}, "/v1/responses", false},
		{"node/openai", sdkCase{scenario: "responses-stream-tools", model: "gpt-4o-mini"}, "/v1/responses", false},
		{"node/openai", sdkCase{scenario: "responses-stream-tools", model: "gpt-4o-mini", extraEnv: []string{"SLUICE_TOOL=custom"}}, "/v1/responses", false},
		{"node/openai", sdkCase{scenario: "embeddings", model: "text-embedding-3-small"}, "/v1/embeddings", false},
		{"node/openai", sdkCase{scenario: "responses", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "responses-stream", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "responses-stream-tools", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/openai", sdkCase{scenario: "responses-stream-tools", model: "claude-sonnet-4-5", extraEnv: []string{"SLUICE_TOOL=custom"}}, "/v1/messages", true},
		{"python/openai", sdkCase{scenario: "chat", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"python/openai", sdkCase{scenario: "chat-stream", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"python/openai", sdkCase{scenario: "chat-stream-tools", model: "gpt-4o-mini"}, "/v1/chat/completions", false},
		{"python/openai", sdkCase{scenario: "chat-stream-tools", model: "claude-sonnet-4-5"}, "/v1/messages", true},
		{"node/anthropic", sdkCase{scenario: "messages", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"node/anthropic", sdkCase{scenario: "messages-stream", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"node/anthropic", sdkCase{scenario: "messages-stream-tools", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"node/anthropic", sdkCase{scenario: "messages-cache", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"node/anthropic", sdkCase{scenario: "messages", model: "gpt-4o-mini"}, "/v1/chat/completions", true},
		{"node/anthropic", sdkCase{scenario: "messages-stream", model: "gpt-4o-mini"}, "/v1/chat/completions", true},
		{"node/anthropic", sdkCase{scenario: "messages-stream-tools", model: "gpt-4o-mini"}, "/v1/chat/completions", true},
		{"python/anthropic", sdkCase{scenario: "messages", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"python/anthropic", sdkCase{scenario: "messages-stream", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"python/anthropic", sdkCase{scenario: "messages-stream-tools", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"python/anthropic", sdkCase{scenario: "messages-cache", model: "claude-sonnet-4-5"}, "/v1/messages", false},
		{"python/anthropic", sdkCase{scenario: "messages-stream-tools", model: "gpt-4o-mini"}, "/v1/chat/completions", true},
	}
	for _, c := range cases {
		t.Run(c.runner+"/"+c.scenario+"/"+c.model, func(t *testing.T) {
			t.Parallel()
			marker := newMarker()
			out, err := rs[c.runner].run(t, g, c.sdkCase, marker)
			if err != nil {
				t.Fatalf("driver failed: %v", err)
			}
			got := g.fake.Requests(marker)
			if len(got) != 1 {
				t.Fatalf("provider saw %d requests with the marker, want exactly 1", len(got))
			}
			rec := got[0]
			if rec.Path != c.wantPath {
				t.Errorf("provider path = %s, want %s", rec.Path, c.wantPath)
			}
			checkProviderHeaders(t, g, rec.Header, c.wantPath == "/v1/messages")
			if c.scenario == "messages-cache" {
				if !bytes.Contains(rec.Body, []byte(`"cache_control":{"type":"ephemeral"}`)) {
					t.Errorf("cache_control did not reach the provider: %s", rec.Body)
				}
			}
			t.Logf("%s: %v", c.runner, out)
		})
	}
}

// checkProviderHeaders asserts the provider got its own credential and nothing of the client's
// virtual key or of Sluice's internal headers.
func checkProviderHeaders(t *testing.T, g *gateway, h map[string][]string, anthropic bool) {
	t.Helper()
	for k, vs := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-sluice-") {
			t.Errorf("internal header %s reached the provider", k)
		}
		for _, v := range vs {
			for _, secret := range g.keys {
				if strings.Contains(v, secret) {
					t.Errorf("the virtual key reached the provider in header %s", k)
				}
			}
		}
	}
	get := func(name string) string {
		for k, vs := range h {
			if strings.EqualFold(k, name) && len(vs) > 0 {
				return vs[0]
			}
		}
		return ""
	}
	if anthropic {
		if get("x-api-key") != fakeAnthropicKey {
			t.Errorf("provider x-api-key is not the Anthropic provider credential")
		}
	} else if get("authorization") != "Bearer "+fakeOpenAIKey {
		t.Errorf("provider authorization is not the OpenAI provider credential")
	}
}

// TestSDKBadKey: every SDK surfaces an unknown key as its own authentication error.
func TestSDKBadKey(t *testing.T) {
	g := startGateway(t)
	for name, r := range runners(t) {
		model := "gpt-4o-mini"
		if strings.HasSuffix(name, "anthropic") {
			model = "claude-sonnet-4-5"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			marker := newMarker()
			if _, err := r.run(t, g, sdkCase{scenario: "bad-key", model: model}, marker); err != nil {
				t.Fatalf("driver failed: %v", err)
			}
			if n := len(g.fake.Requests(marker)); n != 0 {
				t.Fatalf("a request with a bad key reached the provider (%d times)", n)
			}
		})
	}
}
