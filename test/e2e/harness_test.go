// Package e2e drives the real sluice binary, a real Envoy and the official SDKs against the
// fake provider. Every part is real except the provider, which the tests script.
//
// The tests need Envoy (SLUICE_ENVOY_BIN) and the SDKs (SLUICE_NODE_SDK, SLUICE_PYTHON);
// `make test` installs and names them. Without them the tests skip, unless
// SLUICE_E2E_REQUIRED is set, as it is in CI, where a missing part fails the run.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/telemetry/otlptest"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

// Provider credentials the fake expects; the tests check they, and not the virtual key,
// reach the provider.
const (
	fakeOpenAIKey    = "fake-openai-credential-0123456789"
	fakeAnthropicKey = "fake-anthropic-credential-0123456789"
)

type gateway struct {
	url        string // client listener, http://host:port
	dispatcher string // dispatcher, host:port (only Envoy should reach it)
	fake       *fakeprovider.Server
	fakeSrv    *httptest.Server
	judge      *judge // the guardrail webhook the "judged" key calls
	// Collectors: the gateway's own, and the two projects' that file their traces apart.
	otlp, otlpA, otlpB *otlptest.Receiver
	metrics            string            // http://host:port/metrics
	keyIDs             map[string]string // key name → key id
	keys               map[string]string // key name → secret
	pepper             string
	dir                string
	cmd                *exec.Cmd
	done               chan error // the sluice process's exit
	logs               *syncBuffer
}

var (
	gwOnce sync.Once
	gw     *gateway
	gwErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if gw != nil {
		gw.stop()
	}
	os.Exit(code)
}

// required skips or, under SLUICE_E2E_REQUIRED, fails when a real part is missing.
func required(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
		t.Fatalf("%s is required (set by make test)", what)
	}
	t.Skipf("%s not set: run through make test", what)
}

// startGateway returns the shared gateway, starting it on first use.
func startGateway(t *testing.T) *gateway {
	t.Helper()
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	gwOnce.Do(func() { gw, gwErr = newGateway() })
	if gwErr != nil {
		t.Fatalf("starting the gateway: %v", gwErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sluice and envoy output (last 8 KiB):\n%s", gw.logs.tail(8<<10))
		}
	})
	return gw
}

func sluiceBinary(dir string) (string, error) {
	if b := os.Getenv("SLUICE_BIN"); b != "" {
		return b, nil
	}
	bin := filepath.Join(dir, "sluice")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/sluice-gateway/sluice/cmd/sluice")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// freePort returns a loopback address that was free a moment ago. It picks below the
// kernel's ephemeral range (32768 and up on Linux): a port the kernel handed out with :0
// and took back is the next one it hands to any outgoing connection or :0 listener of the
// many processes a test runs, and the child told to listen there would find it taken.
func freePort() (string, error) {
	for range 50 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+mrand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port below the ephemeral range")
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newGateway() (*gateway, error) {
	dir, err := os.MkdirTemp("", "sluice-e2e-")
	if err != nil {
		return nil, err
	}
	g := &gateway{dir: dir, keys: map[string]string{}, keyIDs: map[string]string{}, pepper: randomString(32), logs: &syncBuffer{}}
	bin, err := sluiceBinary(dir)
	if err != nil {
		return nil, err
	}
	g.fake = fakeprovider.New(fakeprovider.Config{OpenAIKey: fakeOpenAIKey, AnthropicKey: fakeAnthropicKey})
	g.fakeSrv = httptest.NewServer(g.fake)
	g.judge = startJudge()
	for _, r := range []**otlptest.Receiver{&g.otlp, &g.otlpA, &g.otlpB} {
		if *r, err = otlptest.Start(); err != nil {
			return nil, err
		}
	}

	hasher, _ := vkey.NewHasher([]byte(g.pepper))
	cfg := config.Config{Version: config.Version, Providers: []config.Provider{
		{ID: "p-openai", Type: "openai", BaseURL: g.fakeSrv.URL, APIKeyEnv: "E2E_OPENAI_KEY",
			Models: []string{"gpt-4o-mini", "gpt-4o", "text-embedding-3-small"}},
		{ID: "p-anthropic", Type: "anthropic", BaseURL: g.fakeSrv.URL, APIKeyEnv: "E2E_ANTHROPIC_KEY",
			Models: []string{"claude-sonnet-4-5", "claude-haiku-4-5"}},
	}}
	addKey := func(name string, mod func(*config.Key)) {
		secret, _ := vkey.NewSecret()
		k := config.Key{ID: config.NewID(config.KindVirtualKey), Name: name, Hash: hasher.Sum(secret).Hex(),
			OrgID: "org-acme", TeamID: "team-eng", ProjectID: "proj-web"}
		if mod != nil {
			mod(&k)
		}
		cfg.Keys = append(cfg.Keys, k)
		g.keys[name], g.keyIDs[name] = secret, k.ID
	}
	addKey("main", func(k *config.Key) {
		k.ModelAliases = map[string]config.Alias{"fast": {Model: "gpt-4o-mini"}}
	})
	addKey("mini-only", func(k *config.Key) { k.ModelsAllowed = []string{"gpt-4o-mini"} })
	cfg.Guardrails = guardrails(g.judge.srv.URL)
	for name, ids := range guardedKeys {
		addKey(name, func(k *config.Key) { k.Guardrails = ids })
	}
	addKey("metrics-probe", func(k *config.Key) { k.ModelsAllowed = []string{"gpt-4o-mini"} })
	governedKeys(addKey)
	cfg.Projects = tenantProjects(g.otlpA.GRPCURL(), g.otlpB.HTTPURL())
	for _, p := range cfg.Projects {
		addKey("tenant-"+p.ID, func(k *config.Key) { k.ProjectID, k.TeamID = p.ID, "" })
	}
	cfgPath := filepath.Join(dir, "config.json")
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, err
	}

	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	disp, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	g.url, g.dispatcher, g.metrics = "http://"+listen, disp, "http://"+metricsAddr+"/metrics"
	g.cmd = exec.Command(bin, "serve", "--config", cfgPath, "--listen", listen,
		"--dispatcher-listen", disp, "--envoy", os.Getenv("SLUICE_ENVOY_BIN"),
		"--otlp-endpoint", g.otlp.HTTPURL(), "--metrics-listen", metricsAddr,
		"--state-dir", filepath.Join(dir, "state"), "--envoy-concurrency", "2", "--log-level", "debug")
	g.cmd.Env = append(os.Environ(), "SLUICE_PEPPER="+g.pepper,
		"E2E_OPENAI_KEY="+fakeOpenAIKey, "E2E_ANTHROPIC_KEY="+fakeAnthropicKey, judgeSecretEnv+"="+judgeSecret)
	g.cmd.Stderr = g.logs
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := g.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := g.cmd.Start(); err != nil {
		return nil, err
	}
	g.done = make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(g.logs, "[stdout] "+sc.Text())
			if !signalled && strings.HasPrefix(sc.Text(), "sluice: ready on ") {
				signalled = true
				close(ready)
			}
		}
		g.done <- g.cmd.Wait()
	}()
	select {
	case <-ready:
		return g, nil
	case err := <-g.done:
		g.done <- err
		return nil, fmt.Errorf("sluice exited before ready: %v\n%s", err, g.logs.tail(8<<10))
	case <-time.After(90 * time.Second):
		_ = g.cmd.Process.Kill()
		return nil, fmt.Errorf("sluice not ready after 90s\n%s", g.logs.tail(8<<10))
	}
}

func (g *gateway) stop() {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
	}
	g.fakeSrv.Close()
	g.judge.srv.Close()
	for _, r := range []*otlptest.Receiver{g.otlp, g.otlpA, g.otlpB} {
		r.Close()
	}
	_ = os.RemoveAll(g.dir)
}

// syncBuffer collects process output from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// do sends a raw request through the gateway.
func (g *gateway) do(t *testing.T, method, path string, body io.Reader, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, g.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp, b
}

func newMarker() string { return "mk-" + randomString(8) }
