package mainlib

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// Demo models: an OpenAI-format client asking for a Claude model (or the reverse) exercises
// the translation lane; same-format requests take the passthrough lane.
var (
	demoOpenAIModels    = []string{"gpt-4o-mini", "gpt-4o"}
	demoAnthropicModels = []string{"claude-sonnet-4-5", "claude-haiku-4-5"}
)

// demoProvider is the built-in fake provider `serve --demo` registers for both wire formats.
type demoProvider struct {
	url  string
	keys map[string]string // env-style name → credential the fake expects
}

func startDemoProvider(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc) (*demoProvider, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &demoProvider{url: "http://" + lis.Addr().String(), keys: map[string]string{
		"DEMO_OPENAI_KEY":    randomHex("demo-openai-"),
		"DEMO_ANTHROPIC_KEY": randomHex("demo-anthropic-"),
	}}
	fake := fakeprovider.New(fakeprovider.Config{
		OpenAIKey: d.keys["DEMO_OPENAI_KEY"], AnthropicKey: d.keys["DEMO_ANTHROPIC_KEY"],
		Logger: logger, MaxRecorded: -1,
	})
	serveHTTP(ctx, g, "demo-provider", logger, cancel, &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}, lis)
	return d, nil
}

func randomHex(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// mintedSecret is a virtual key created for the banner; its secret is shown once.
type mintedSecret struct{ id, secret string }

// seed gives a local gateway what it needs to answer at once, through the admin API like
// any operator: the demo provider (or the providers whose keys are in the environment) and,
// for the demo or an empty store, a virtual key to print.
func seed(ctx context.Context, a *apiClient, demo *demoProvider) (*mintedSecret, error) {
	type prov struct {
		id, typ, env string
		models       []string
	}
	var provs []prov
	if demo != nil {
		provs = []prov{
			{"demo-openai", "openai", "DEMO_OPENAI_KEY", demoOpenAIModels},
			{"demo-anthropic", "anthropic", "DEMO_ANTHROPIC_KEY", demoAnthropicModels},
		}
	} else {
		if os.Getenv("OPENAI_API_KEY") != "" {
			provs = append(provs, prov{"openai", "openai", "OPENAI_API_KEY",
				[]string{"gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o4-mini", "gpt-5", "gpt-5-mini"}})
		}
		if os.Getenv("ANTHROPIC_API_KEY") != "" {
			provs = append(provs, prov{"anthropic", "anthropic", "ANTHROPIC_API_KEY",
				[]string{"claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"}})
		}
	}
	for _, p := range provs {
		// The credential stays in this process's environment (credentials_env): the demo's
		// changes every run, and a real one need not be copied into the store.
		body := map[string]any{"name": p.id, "type": p.typ, "credentials_env": p.env, "models": p.models}
		if demo != nil {
			body["base_url"] = demo.url
		}
		if err := upsert(ctx, a, "/v1/model-providers", p.id, body); err != nil {
			return nil, fmt.Errorf("provider %s: %w", p.id, err)
		}
	}

	name := "local"
	if demo != nil {
		// A fresh demo key per run; the previous run's demo keys go.
		name = "demo"
		if err := deleteKeysNamed(ctx, a, name); err != nil {
			return nil, err
		}
	} else if n, err := countKeys(ctx, a); err != nil || n > 0 {
		return nil, err // keys exist: the operator has them, or mints one with the CLI
	}
	v, err := a.do(ctx, http.MethodPost, "/v1/virtual-keys", map[string]any{"name": name})
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	id, _ := m["id"].(string)
	secret, _ := m["secret"].(string)
	if secret == "" {
		return nil, errors.New("the admin API returned no secret")
	}
	return &mintedSecret{id: id, secret: secret}, nil
}

// upsert creates the resource with id, or updates it when it exists.
func upsert(ctx context.Context, a *apiClient, path, id string, body map[string]any) error {
	_, err := a.do(ctx, http.MethodPatch, path+"/"+id, body)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		withID := map[string]any{"id": id}
		for k, v := range body {
			withID[k] = v
		}
		_, err = a.do(ctx, http.MethodPost, path, withID)
	}
	return err
}

func listKeys(ctx context.Context, a *apiClient) ([]map[string]any, error) {
	v, err := a.do(ctx, http.MethodGet, "/v1/virtual-keys", nil)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	data, _ := m["data"].([]any)
	out := make([]map[string]any, 0, len(data))
	for _, d := range data {
		if k, ok := d.(map[string]any); ok {
			out = append(out, k)
		}
	}
	return out, nil
}

func countKeys(ctx context.Context, a *apiClient) (int, error) {
	ks, err := listKeys(ctx, a)
	return len(ks), err
}

func deleteKeysNamed(ctx context.Context, a *apiClient, name string) error {
	ks, err := listKeys(ctx, a)
	if err != nil {
		return err
	}
	for _, k := range ks {
		if id, _ := k["id"].(string); k["name"] == name && id != "" {
			if _, err := a.do(ctx, http.MethodDelete, "/v1/virtual-keys/"+id, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// readyBanner is what serve prints once the gateway answers.
type readyBanner struct {
	listen         string
	key            *mintedSecret
	demo           bool
	adminURL       string
	adminTokenFile string // empty when the token came from the environment
}

func (b readyBanner) print(w io.Writer) {
	fmt.Fprintf(w, "sluice: ready on http://%s\n", b.listen)
	if b.demo {
		fmt.Fprintln(w, "\nNo provider key in the environment: serving the built-in demo provider.")
	}
	if b.adminURL != "" {
		tok := "$SLUICE_ADMIN_TOKEN"
		if b.adminTokenFile != "" {
			tok = "$(cat " + b.adminTokenFile + ")"
		}
		fmt.Fprintf(w, "\nAdmin API and CLI:\n  export SLUICE_URL=%s SLUICE_API_TOKEN=%s\n  sluice virtual-keys list\n", b.adminURL, tok)
	}
	if b.key == nil {
		if b.adminURL != "" {
			fmt.Fprintln(w, "\nCreate a virtual key with:\n  sluice virtual-keys create --name dev --format json")
		}
		return
	}
	model, claude := demoOpenAIModels[0], demoAnthropicModels[0]
	if !b.demo {
		model, claude = "gpt-4o-mini", "claude-sonnet-4-5"
	}
	fmt.Fprintf(w, `
Virtual key %[5]s (shown once):
  %[2]s

Try it:
  curl -s http://%[1]s/v1/chat/completions \
    -H "Authorization: Bearer %[2]s" -H "Content-Type: application/json" \
    -d '{"model":"%[3]s","messages":[{"role":"user","content":"Hello"}]}'

  curl -s http://%[1]s/v1/messages \
    -H "x-api-key: %[2]s" -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json" \
    -d '{"model":"%[4]s","max_tokens":256,"messages":[{"role":"user","content":"Hello"}]}'

SDKs and coding CLIs:
  export OPENAI_BASE_URL=http://%[1]s/v1 OPENAI_API_KEY=%[2]s
  export ANTHROPIC_BASE_URL=http://%[1]s ANTHROPIC_API_KEY=%[2]s
  python -c 'import openai; print(openai.OpenAI().chat.completions.create(model="%[3]s", messages=[{"role":"user","content":"Hello"}]).choices[0].message.content)'
`, b.listen, b.key.secret, model, claude, b.key.id)
}
