package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// Budgets hold exactly under concurrency and streaming: 200 requests at once (half
// streamed, half in each wire format) against a key whose block budget fits only some. The
// spend recorded equals the providers' reported usage priced, to the nano-dollar, and never
// passes the limit; nothing stays reserved. Run once with the in-process counters (and a
// restart, which must lose no spend) and once with two gateway replicas sharing Redis.

const (
	budgetInput  = 1000 // tokens the fake reports per request
	budgetOutput = 100
	// The providers' prices (USD per million tokens) are overridden to round numbers, so a
	// request costs 1000×$1/M + 100×$2/M = $0.0012.
	budgetCost  = budgetInput*1000 + budgetOutput*2000 // nano-USD
	budgetLimit = "0.05"
	budgetN     = 200
)

// budgetGateway is one `sluice serve` replica in control-plane mode.
type budgetGateway struct {
	url   string // client listener
	admin adminAPI
	proc  *proc
}

func startBudgetGateway(t *testing.T, name, stateDir, redisURL string, env []string) *budgetGateway {
	t.Helper()
	bin, err := sluiceBinary(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	listen, admin, disp := mustPort(t), mustPort(t), mustPort(t)
	args := []string{bin, "serve", "--listen", listen, "--admin-listen", admin, "--dispatcher-listen", disp,
		"--envoy", os.Getenv("SLUICE_ENVOY_BIN"), "--state-dir", stateDir, "--envoy-concurrency", "2"}
	if redisURL != "" {
		args = append(args, "--redis-url", redisURL)
	}
	p := startProc(t, name, "sluice: ready on ", env, args...)
	token := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "SLUICE_ADMIN_TOKEN="); ok {
			token = v
		}
	}
	return &budgetGateway{url: "http://" + listen, admin: adminAPI{url: "http://" + admin, token: token}, proc: p}
}

func mustPort(t *testing.T) string {
	t.Helper()
	a, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func budgetEnv() []string {
	secret := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	// A provider key in the environment keeps the demo provider off; the key under test
	// reaches only the fake providers below.
	return []string{"SLUICE_ADMIN_TOKEN=" + secret(), "SLUICE_PEPPER=" + secret(), "SLUICE_MASTER_KEY=" + secret(),
		"OPENAI_API_KEY=unused-" + randomString(8)}
}

// setupBudget configures, through the admin API, an organization with two fake providers
// priced at round numbers, a total block budget and a key. The budget is written before
// the key, so a replica that knows the key knows the budget too. It returns the key's
// secret and the budget id.
func setupBudget(t *testing.T, a adminAPI, fakeURL string) (secret, budgetID string) {
	t.Helper()
	const org = "ORG:budgeted"
	a.call(t, "POST", "/v1/organizations", map[string]any{"id": "budgeted", "name": "budgeted"})
	price := map[string]any{"input": "1", "output": "2"}
	a.call(t, "POST", "/v1/model-providers", map[string]any{"id": "budget-oa", "name": "budget-oa", "type": "openai",
		"scope": org, "base_url": fakeURL, "api_key": fakeOpenAIKey, "models": []string{"gpt-4o-mini"},
		"pricing": map[string]any{"gpt-4o-mini": price}})
	a.call(t, "POST", "/v1/model-providers", map[string]any{"id": "budget-an", "name": "budget-an", "type": "anthropic",
		"scope": org, "base_url": fakeURL, "api_key": fakeAnthropicKey, "models": []string{"claude-haiku-4-5"},
		"pricing": map[string]any{"claude-haiku-4-5": price}})
	b := a.call(t, "POST", "/v1/budgets", map[string]any{"name": "tight", "scope": org,
		"window": "total", "limit_usd": budgetLimit, "on_breach": "block"})
	k := a.call(t, "POST", "/v1/virtual-keys", map[string]any{"name": "budgeted", "scope": org,
		"config": map[string]any{"providers_allowed": []string{"budget-oa", "budget-an"}}})
	return k["secret"].(string), b["id"].(string)
}

// budgetRequest sends request i of the run: OpenAI or Anthropic, streamed or not. The prompt
// is long enough that its worst case (a token per byte) covers the usage the fake reports.
func budgetRequest(base, key string, i int) (int, string, error) {
	anthropic, stream := i%2 == 1, i%4 >= 2
	pad := strings.Repeat("budget ", 200) + budgetMarker
	var path, body string
	if anthropic {
		path = "/v1/messages"
		body = fmt.Sprintf(`{"model":"claude-haiku-4-5","max_tokens":100,"stream":%v,"messages":[{"role":"user","content":%q}]}`, stream, pad)
	} else {
		path = "/v1/chat/completions"
		body = fmt.Sprintf(`{"model":"gpt-4o-mini","max_tokens":100,"stream":%v,"messages":[{"role":"user","content":%q}]}`, stream, pad)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if anthropic {
		req.Header.Set("x-api-key", key)
		req.Header.Set("anthropic-version", "2023-06-01")
	} else {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, "", err
	}
	if resp.StatusCode == http.StatusOK && stream {
		// A complete stream: it ends as its format ends.
		end := "data: [DONE]"
		if anthropic {
			end = "event: message_stop"
		}
		if !strings.Contains(string(b), end) {
			return resp.StatusCode, "", fmt.Errorf("stream %d did not end: %s", i, b)
		}
	}
	return resp.StatusCode, string(b), nil
}

const budgetMarker = "budget-usage-script"

func newBudgetFake(t *testing.T) *httptest.Server {
	fake := fakeprovider.New(fakeprovider.Config{OpenAIKey: fakeOpenAIKey, AnthropicKey: fakeAnthropicKey})
	fake.Script(budgetMarker, fakeprovider.Script{Usage: &fakeprovider.Usage{InputTokens: budgetInput, OutputTokens: budgetOutput}})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return srv
}

// fireBudget sends n requests at once, spread over the gateways, and returns how many were
// served; every other one must be refused with budget_exceeded.
func fireBudget(t *testing.T, key string, n int, gws ...*budgetGateway) int {
	t.Helper()
	var mu sync.Mutex
	served, refused := 0, 0
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			code, body, err := budgetRequest(gws[i%len(gws)].url, key, i)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("request %d: %v", i, err)
			case code == http.StatusOK:
				served++
			case code == http.StatusPaymentRequired && strings.Contains(body, "budget_exceeded"):
				refused++
			default:
				t.Errorf("request %d: %d %s", i, code, body)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("%d served, %d refused with budget_exceeded", served, refused)
	return served
}

// checkSpend reads the budget's usage and checks it is exactly served × the cost, within the
// limit, with nothing left reserved.
func checkSpend(t *testing.T, a adminAPI, budgetID string, served int) {
	t.Helper()
	u := a.call(t, "GET", "/v1/budgets/"+budgetID+"/usage", nil)
	spent, err := config.ParseUSD(u["spent_usd"].(string))
	if err != nil {
		t.Fatalf("spent_usd %v: %v", u["spent_usd"], err)
	}
	limit, _ := config.ParseUSD(budgetLimit)
	if want := config.NanoUSD(served * budgetCost); spent != want {
		t.Errorf("recorded spend $%s, want exactly $%s (%d served × $%s)", spent, want, served, config.NanoUSD(budgetCost))
	}
	if spent > limit {
		t.Errorf("recorded spend $%s is over the limit $%s", spent, limit)
	}
	if u["reserved_usd"] != "0" {
		t.Errorf("reserved_usd = %v after every request ended, want 0", u["reserved_usd"])
	}
}

func TestBudgetExactInProcess(t *testing.T) {
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	fake := newBudgetFake(t)
	env := budgetEnv()
	state := filepath.Join(t.TempDir(), "state")
	gw := startBudgetGateway(t, "serve", state, "", env)
	key, budgetID := setupBudget(t, gw.admin, fake.URL)
	eventuallyStatus(t, gw.url, key, http.StatusOK)
	// The probe above was served too: it counts.
	served := fireBudget(t, key, budgetN, gw) + 1
	if served <= 1 || served > budgetN {
		t.Errorf("the budget should fit some requests and refuse others: %d served of %d", served, budgetN)
	}
	checkSpend(t, gw.admin, budgetID, served)
	// A restart loses no spend, and the budget goes on holding.
	gw.proc.stop()
	gw = startBudgetGateway(t, "serve-restarted", state, "", env)
	checkSpend(t, gw.admin, budgetID, served)
	served += fireBudget(t, key, 20, gw)
	checkSpend(t, gw.admin, budgetID, served)
}

func TestBudgetExactAcrossReplicas(t *testing.T) {
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	redisURL := startRedis(t)
	fake := newBudgetFake(t)
	env := budgetEnv()
	a := startBudgetGateway(t, "serve-a", filepath.Join(t.TempDir(), "a"), redisURL, env)
	b := startBudgetGateway(t, "serve-b", filepath.Join(t.TempDir(), "b"), redisURL, env)
	key, budgetID := setupBudget(t, a.admin, fake.URL)
	eventuallyStatus(t, a.url, key, http.StatusOK)
	eventuallyStatus(t, b.url, key, http.StatusOK)
	served := fireBudget(t, key, budgetN, a, b) + 2
	if served <= 2 || served > budgetN {
		t.Errorf("the budget should fit some requests and refuse others: %d served of %d", served, budgetN)
	}
	checkSpend(t, a.admin, budgetID, served)
	checkSpend(t, b.admin, budgetID, served)
}

// eventuallyStatus sends a budget request until the gateway answers want (the key and its
// providers take a moment to reach the data plane).
func eventuallyStatus(t *testing.T, base, key string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body, err := budgetRequest(base, key, 0)
		if err == nil && code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %v %s, want %d", base, code, err, body, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
