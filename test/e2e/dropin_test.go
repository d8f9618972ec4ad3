package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
)

// TestDropInStaticEnvoy runs the "alongside an existing Envoy" path as an operator would: a
// plain Envoy configured only from `sluice envoy-config --bootstrap` (no xDS at all), in
// front of `sluice extproc` (TCP) and `sluice dispatcher`, which a `sluice xds` with the
// embedded file store feeds over the fleet channel. A key and a provider created through
// the admin API then work through that Envoy, and a bad key is refused in the OpenAI
// envelope.
func TestDropInStaticEnvoy(t *testing.T) {
	if os.Getenv("SLUICE_ENVOY_BIN") == "" {
		required(t, "SLUICE_ENVOY_BIN")
	}
	dir := t.TempDir()
	bin, err := sluiceBinary(dir)
	if err != nil {
		t.Fatal(err)
	}
	fakeSrv := httptest.NewServer(fakeprovider.New(fakeprovider.Config{OpenAIKey: fakeOpenAIKey}))
	t.Cleanup(fakeSrv.Close)

	// Every secret as base64 of 32 random bytes (randomString's hex is 32 bytes of text).
	newSecret := func() string { return base64.StdEncoding.EncodeToString([]byte(randomString(16))) }
	adminToken := newSecret()
	env := []string{"SLUICE_PEPPER=" + newSecret(), "SLUICE_MASTER_KEY=" + newSecret(),
		"SLUICE_ADMIN_TOKEN=" + adminToken, "SLUICE_FLEET_TOKEN=" + newSecret(), "SLUICE_CTX_KEY=" + newSecret()}
	port := func() string {
		a, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	admin, fleet, ads, extproc, dispatcher, listen, envoyAdmin := port(), port(), port(), port(), port(), port(), port()

	// The control plane serves only the fleet here: no Envoy ever connects to its ADS port.
	startProc(t, "xds", "sluice xds: ready", env, bin, "xds", "--store-dir", filepath.Join(dir, "store"),
		"--admin-listen", admin, "--fleet-listen", fleet, "--ads-listen", ads)
	startProc(t, "extproc", "sluice extproc: ready", env, bin, "extproc", "--listen", extproc, "--xds", fleet,
		"--state-dir", filepath.Join(dir, "extproc"))
	startProc(t, "dispatcher", "sluice dispatcher: ready", env, bin, "dispatcher", "--listen", dispatcher,
		"--xds", fleet, "--state-dir", filepath.Join(dir, "dispatcher"))

	boot := sluiceOutput(t, bin, "envoy-config", "--bootstrap", "--listen", listen, "--admin-addr", envoyAdmin,
		"--extproc-addr", extproc, "--dispatcher-addr", dispatcher, "--node-id", "drop-in")
	if bytes.Contains(boot, []byte("dynamic_resources")) || bytes.Contains(boot, []byte(ads)) {
		t.Fatal("the drop-in bootstrap refers to xDS")
	}
	startEnvoyBootstrap(t, "drop-in", boot, envoyAdmin, listen)

	api := adminAPI{url: "http://" + admin, token: adminToken}
	api.call(t, "POST", "/v1/model-providers", map[string]any{"id": "fake", "name": "fake", "type": "openai",
		"base_url": fakeSrv.URL, "api_key": fakeOpenAIKey, "models": []string{"gpt-4o-mini"}})
	key := api.call(t, "POST", "/v1/virtual-keys", map[string]any{"name": "drop-in", "scope": "ORG:default"})
	secret, _ := key["secret"].(string)
	if secret == "" {
		t.Fatalf("no secret in %v", key)
	}

	base := "http://" + listen
	eventually(t, base, secret, 200, "", 10*time.Second)

	// A bad key: extproc's 401 in the OpenAI envelope, with the gateway's request id.
	req, _ := http.NewRequest("POST", base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-sluice-not-a-real-key")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var envl struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if resp.StatusCode != 401 || json.Unmarshal(body, &envl) != nil || envl.Error.Code != "invalid_api_key" ||
		envl.Error.Message == "" || envl.Error.Type == "" || !bytes.Contains(body, []byte(`"param":null`)) {
		t.Errorf("bad key: %d %s, want 401 invalid_api_key in the OpenAI envelope", resp.StatusCode, body)
	}
	if resp.Header.Get("X-Sluice-Request-Id") == "" {
		t.Error("bad key: no X-Sluice-Request-Id")
	}
	// Outside /v1/: the bootstrap's own 404, also in the OpenAI envelope.
	resp, err = http.Post(base+"/v2/chat/completions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || json.Unmarshal(body, &envl) != nil || envl.Error.Code != "not_found" {
		t.Errorf("/v2/: %d %s, want 404 not_found", resp.StatusCode, body)
	}
}

// sluiceOutput runs a sluice command that prints configuration and returns its stdout.
func sluiceOutput(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes()
}

// startEnvoyBootstrap runs a real Envoy from a complete bootstrap and waits until its
// listener at listen answers.
func startEnvoyBootstrap(t *testing.T, name string, boot []byte, adminAddr, listen string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	p, err := envoy.StartWith(ctx, envoy.Options{Bin: os.Getenv("SLUICE_ENVOY_BIN"), Bootstrap: boot,
		WorkDir: t.TempDir(), Out: logs, Concurrency: 1})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("envoy-%s output (last 4 KiB):\n%s", name, logs.tail(4<<10))
		}
	})
	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	defer readyCancel()
	if err := envoy.WaitReady(readyCtx, adminAddr); err != nil {
		t.Fatalf("envoy-%s: %v\n%s", name, err, logs.tail(4<<10))
	}
	if err := envoy.WaitListener(readyCtx, listen); err != nil {
		t.Fatalf("envoy-%s listener: %v", name, err)
	}
}
