package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// Fault injection through real Envoy: every failure class a provider can show, and what the
// gateway does about it. Each case has its own provider ids (all on the same scripted
// fake), so one case's failures never open another's circuit.

// faultGateway is a `sluice serve --config` of its own, in front of two fakes: flaky (the
// first provider of every chain, scripted to fail) and steady (the fallback).
type faultGateway struct {
	url, metrics  string
	flaky, steady *fakeprovider.Server
	keys          map[string]string // case → key secret
}

// faultCases name the chains: "<case>" has flaky-<case> then steady; "<case>-solo" only
// flaky-<case>.
var faultCases = []string{"503", "429", "429v", "400", "slow", "reset", "cut", "breaker", "idle"}

func startFaultGateway(t *testing.T) *faultGateway {
	t.Helper()
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	dir := t.TempDir()
	bin, err := sluiceBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	g := &faultGateway{keys: map[string]string{},
		flaky:  fakeprovider.New(fakeprovider.Config{OpenAIKey: fakeOpenAIKey, AnthropicKey: fakeAnthropicKey}),
		steady: fakeprovider.New(fakeprovider.Config{OpenAIKey: fakeOpenAIKey, AnthropicKey: fakeAnthropicKey})}
	flakySrv, steadySrv := httptest.NewServer(g.flaky), httptest.NewServer(g.steady)
	t.Cleanup(flakySrv.Close)
	t.Cleanup(steadySrv.Close)

	pepper := randomString(32)
	hasher, _ := vkey.NewHasher([]byte(pepper))
	cfg := config.Config{Version: config.Version}
	models := []string{"gpt-4o-mini", "claude-sonnet-4-5"}
	provider := func(id string, typ config.ProviderType, url string) config.Provider {
		return config.Provider{ID: id, Type: typ, BaseURL: url, Models: models[:1], APIKeyEnv: "E2E_OPENAI_KEY",
			Timeouts: config.Timeouts{FirstByteMS: 1000, StreamIdleMS: 1000}}
	}
	anthropic := func(p config.Provider) config.Provider {
		p.ID, p.Type, p.Models, p.APIKeyEnv = "an-"+p.ID, config.ProviderAnthropic, models[1:], "E2E_ANTHROPIC_KEY"
		return p
	}
	steady := provider("steady", config.ProviderOpenAI, steadySrv.URL)
	cfg.Providers = append(cfg.Providers, steady, anthropic(steady))
	for _, c := range faultCases {
		flaky := provider("flaky-"+c, config.ProviderOpenAI, flakySrv.URL)
		cfg.Providers = append(cfg.Providers, flaky, anthropic(flaky))
		for _, k := range []struct {
			name  string
			chain []string
		}{{c, []string{flaky.ID, "an-" + flaky.ID, "steady", "an-steady"}}, {c + "-solo", []string{flaky.ID, "an-" + flaky.ID}}} {
			secret, _ := vkey.NewSecret()
			cfg.Keys = append(cfg.Keys, config.Key{ID: config.NewID(config.KindVirtualKey), Name: k.name,
				Hash: hasher.Sum(secret).Hex(), Providers: k.chain})
			g.keys[k.name] = secret
		}
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	listen, metrics := mustPort(t), mustPort(t)
	g.url, g.metrics = "http://"+listen, "http://"+metrics+"/metrics"
	startProc(t, "serve-faults", "sluice: ready on ", []string{"SLUICE_PEPPER=" + pepper,
		"E2E_OPENAI_KEY=" + fakeOpenAIKey, "E2E_ANTHROPIC_KEY=" + fakeAnthropicKey},
		bin, "serve", "--config", path, "--listen", listen, "--dispatcher-listen", mustPort(t),
		"--envoy", os.Getenv("SLUICE_ENVOY_BIN"), "--state-dir", filepath.Join(dir, "state"), "--envoy-concurrency", "1",
		"--metrics-listen", metrics, "--breaker-threshold", "3", "--breaker-cooldown", "5s")
	return g
}

// call sends one request with marker in its prompt, OpenAI or Anthropic, streamed or not.
func (g *faultGateway) call(t *testing.T, key, marker string, anthropic, stream bool) (*http.Response, string) {
	t.Helper()
	gw := &gateway{url: g.url}
	model := "gpt-4o-mini"
	if anthropic {
		model = "claude-sonnet-4-5"
	}
	body := fmt.Sprintf(`{"model":%q,"max_tokens":32,"stream":%v,"messages":[{"role":"user","content":"hi %s"}]}`, model, stream, marker)
	resp, raw := gw.send(t, anthropic, g.keys[key], body, nil)
	return resp, string(raw)
}

func TestFaults(t *testing.T) {
	g := startFaultGateway(t)
	formats := []struct {
		name      string
		anthropic bool
	}{{"openai", false}, {"anthropic", true}}

	t.Run("5xx falls back", func(t *testing.T) {
		for _, f := range formats {
			m := newMarker()
			g.flaky.Script(m, fakeprovider.Script{Status: 503})
			resp, body := g.call(t, "503", m, f.anthropic, false)
			if resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "1" {
				t.Errorf("%s: %d, fallback count %q: %s", f.name, resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"), body)
			}
			if len(g.flaky.Requests(m)) != 1 || len(g.steady.Requests(m)) != 1 {
				t.Errorf("%s: flaky got %d, steady %d requests", f.name, len(g.flaky.Requests(m)), len(g.steady.Requests(m)))
			}
		}
	})

	t.Run("429 with retry-after", func(t *testing.T) {
		// Alone, the provider's 429 reaches the client verbatim, retry-after included.
		m := newMarker()
		g.flaky.Script(m, fakeprovider.Script{Status: 429, Header: map[string]string{"retry-after": "7"}})
		resp, body := g.call(t, "429v-solo", m, false, false)
		if resp.StatusCode != 429 || resp.Header.Get("retry-after") != "7" || !strings.Contains(body, "scripted error") {
			t.Errorf("solo: %d retry-after %q: %s", resp.StatusCode, resp.Header.Get("retry-after"), body)
		}
		// With a fallback, the next provider answers.
		m = newMarker()
		g.flaky.Script(m, fakeprovider.Script{Status: 429, Header: map[string]string{"retry-after": "5"}})
		if resp, body := g.call(t, "429", m, false, false); resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "1" {
			t.Errorf("fallback: %d, count %q: %s", resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"), body)
		}
		// And while its retry-after lasts the provider is left alone: not even attempted.
		m2 := newMarker()
		if resp, _ := g.call(t, "429", m2, false, false); resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "0" {
			t.Errorf("during retry-after: %d, count %q", resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"))
		}
		if n := len(g.flaky.Requests(m2)); n != 0 {
			t.Errorf("the provider was attempted %d times during its retry-after", n)
		}
	})

	t.Run("400 never falls back", func(t *testing.T) {
		for _, f := range formats {
			m := newMarker()
			g.flaky.Script(m, fakeprovider.Script{Status: 400, Text: "messages: bad " + f.name})
			resp, body := g.call(t, "400", m, f.anthropic, false)
			if resp.StatusCode != 400 || !strings.Contains(body, "messages: bad "+f.name) || len(g.steady.Requests(m)) != 0 {
				t.Errorf("%s: %d %s; steady got %d", f.name, resp.StatusCode, body, len(g.steady.Requests(m)))
			}
		}
	})

	t.Run("slow first byte times out and falls back", func(t *testing.T) {
		for _, f := range formats {
			m := newMarker()
			g.flaky.Script(m, fakeprovider.Script{FirstByteDelay: time.Minute})
			resp, body := g.call(t, "slow", m, f.anthropic, true)
			if resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "1" || !strings.Contains(body, "Hello") {
				t.Errorf("%s: %d, count %q: %s", f.name, resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"), body)
			}
		}
	})

	t.Run("connection reset falls back", func(t *testing.T) {
		for _, f := range formats {
			m := newMarker()
			g.flaky.Script(m, fakeprovider.Script{Reset: true})
			resp, body := g.call(t, "reset", m, f.anthropic, false)
			if resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "1" {
				t.Errorf("%s: %d, count %q: %s", f.name, resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"), body)
			}
		}
	})

	t.Run("a stream cut after its first byte ends with an error event", func(t *testing.T) {
		for _, f := range formats {
			m := newMarker()
			g.flaky.Script(m, fakeprovider.Script{CutAfterEvents: 3})
			resp, body := g.call(t, "cut", m, f.anthropic, true)
			if resp.StatusCode != 200 || len(g.steady.Requests(m)) != 0 {
				t.Errorf("%s: %d, steady got %d: no fallback after the first byte", f.name, resp.StatusCode, len(g.steady.Requests(m)))
			}
			end := `"code":"upstream_stream_error"`
			if f.anthropic {
				end = "event: error"
			}
			if !strings.Contains(body, end) || strings.Contains(body, "[DONE]") || strings.Contains(body, "message_stop") {
				t.Errorf("%s: the cut stream does not end with an error event:\n%s", f.name, body)
			}
		}
	})

	t.Run("a stream gone silent ends with an error event", func(t *testing.T) {
		m := newMarker()
		g.flaky.Script(m, fakeprovider.Script{EventDelay: time.Minute})
		resp, body := g.call(t, "idle", m, false, true)
		if resp.StatusCode != 200 || !strings.Contains(body, "upstream_stream_error") {
			t.Errorf("%d: %s", resp.StatusCode, body)
		}
	})

	t.Run("breaker opens, skips and half-opens", func(t *testing.T) {
		m := newMarker()
		g.flaky.Script(m, fakeprovider.Script{Status: 502})
		for _, anthropic := range []bool{false, true} { // the OpenAI and the Anthropic provider
			for range 3 { // the threshold
				if resp, _ := g.call(t, "breaker-solo", m, anthropic, false); resp.StatusCode != 502 {
					t.Fatalf("failing provider answered %d", resp.StatusCode)
				}
			}
		}
		tried := len(g.flaky.Requests(m))
		// Open: the provider is skipped. Alone it is 503 circuit_open; with a fallback the
		// next provider answers and no attempt failed.
		resp, body := g.call(t, "breaker-solo", m, false, false)
		checkRefusal(t, resp, []byte(body), refusal{status: 503, code: "circuit_open"})
		resp, body = g.call(t, "breaker-solo", m, true, false)
		checkRefusal(t, resp, []byte(body), refusal{anthropic: true, status: 503, code: "circuit_open"})
		if resp, _ := g.call(t, "breaker", m, false, false); resp.StatusCode != 200 || resp.Header.Get("x-sluice-fallback-count") != "0" {
			t.Errorf("open circuit with a fallback: %d, count %q", resp.StatusCode, resp.Header.Get("x-sluice-fallback-count"))
		}
		if n := len(g.flaky.Requests(m)); n != tried {
			t.Errorf("an open circuit still reached the provider (%d requests, was %d)", n, tried)
		}
		if v := scrapeURL(t, g.metrics)[`sluice_circuit_breaker_state{provider="flaky-breaker"}`]; v != 2 {
			t.Errorf("sluice_circuit_breaker_state for the open provider = %v, want 2", v)
		}
		// The provider recovers; after the cooldown one probe finds out and closes it.
		g.flaky.Clear(m)
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, _ := g.call(t, "breaker-solo", m, false, false)
			if resp.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the circuit did not close after the provider recovered: still %d", resp.StatusCode)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if v := scrapeURL(t, g.metrics)[`sluice_circuit_breaker_state{provider="flaky-breaker"}`]; v != 0 {
			t.Errorf("sluice_circuit_breaker_state after recovery = %v, want 0", v)
		}
	})
}

func scrapeURL(t *testing.T, url string) map[string]float64 {
	t.Helper()
	return scrape(t, &gateway{metrics: url})
}
