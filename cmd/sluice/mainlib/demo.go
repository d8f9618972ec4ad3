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

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/internal/config"
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
		"SLUICE_DEMO_OPENAI_KEY":    randomHex("demo-openai-"),
		"SLUICE_DEMO_ANTHROPIC_KEY": randomHex("demo-anthropic-"),
	}}
	fake := fakeprovider.New(fakeprovider.Config{
		OpenAIKey: d.keys["SLUICE_DEMO_OPENAI_KEY"], AnthropicKey: d.keys["SLUICE_DEMO_ANTHROPIC_KEY"],
		Logger: logger,
	})
	hs := &http.Server{Handler: fake, ReadHeaderTimeout: 10 * time.Second}
	g.go_("demo-provider", logger, cancel, func() error {
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.wg.Go(func() {
		<-ctx.Done()
		shutdownHTTP(hs)
	})
	return d, nil
}

func (d *demoProvider) config() *config.Config {
	return &config.Config{Version: config.Version, Providers: []config.Provider{
		{ID: "demo-openai", Type: attempt.OpenAI, BaseURL: d.url, APIKeyEnv: "SLUICE_DEMO_OPENAI_KEY", Models: demoOpenAIModels},
		{ID: "demo-anthropic", Type: attempt.Anthropic, BaseURL: d.url, APIKeyEnv: "SLUICE_DEMO_ANTHROPIC_KEY", Models: demoAnthropicModels},
	}}
}

// envConfig registers the real providers whose keys are in the environment.
func envConfig() *config.Config {
	c := &config.Config{Version: config.Version}
	if os.Getenv("OPENAI_API_KEY") != "" {
		c.Providers = append(c.Providers, config.Provider{ID: "openai", Type: attempt.OpenAI, APIKeyEnv: "OPENAI_API_KEY",
			Models: []string{"gpt-4.1", "gpt-4.1-mini", "gpt-4o", "gpt-4o-mini", "o4-mini", "gpt-5", "gpt-5-mini"}})
	}
	if os.Getenv("ANTHROPIC_API_KEY") != "" {
		c.Providers = append(c.Providers, config.Provider{ID: "anthropic", Type: attempt.Anthropic, APIKeyEnv: "ANTHROPIC_API_KEY",
			Models: []string{"claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"}})
	}
	return c
}

func randomHex(prefix string) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func printReady(w io.Writer, listen string, k *mintedKey, demo bool) {
	fmt.Fprintf(w, "sluice: ready on http://%s\n", listen)
	if k == nil {
		return
	}
	model, claude := demoOpenAIModels[0], demoAnthropicModels[0]
	if demo {
		fmt.Fprintln(w, "\nNo provider key in the environment: serving the built-in demo provider.")
	}
	fmt.Fprintf(w, `
Virtual key (shown once, valid while this process runs):
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
`, listen, k.secret, model, claude)
}
