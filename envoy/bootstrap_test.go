package envoy_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
)

func TestBootstrap(t *testing.T) {
	b, err := envoy.Bootstrap(envoy.BootstrapParams{
		XDSAddr: "127.0.0.1:18000", AdminAddr: "127.0.0.1:9901", NodeID: `node "1": #x`, Cluster: "sluice",
	})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{
		`id: "node \"1\": #x"`, // JSON-quoted: YAML metacharacters stay data
		"type: STATIC",
		`socket_address: {address: "127.0.0.1", port_value: 18000}`,
		`socket_address: {address: "127.0.0.1", port_value: 9901}`,
		"lds_config: {resource_api_version: V3, ads: {}}",
		"cds_config: {resource_api_version: V3, ads: {}}",
		"transport_api_version: V3",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("bootstrap lacks %q:\n%s", want, s)
		}
	}

	b, err = envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: "sluice-xds:18000", AdminAddr: "127.0.0.1:9901", NodeID: "n", Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "type: STRICT_DNS") {
		t.Error("a host-name XDSAddr should use STRICT_DNS")
	}
}

func TestBootstrapInvalid(t *testing.T) {
	ok := envoy.BootstrapParams{XDSAddr: "127.0.0.1:18000", AdminAddr: "127.0.0.1:9901", NodeID: "n", Cluster: "c"}
	for name, mut := range map[string]func(*envoy.BootstrapParams){
		"public admin":   func(p *envoy.BootstrapParams) { p.AdminAddr = "0.0.0.0:9901" },
		"admin hostname": func(p *envoy.BootstrapParams) { p.AdminAddr = "localhost:9901" },
		"no xds port":    func(p *envoy.BootstrapParams) { p.XDSAddr = "127.0.0.1" },
		"no node":        func(p *envoy.BootstrapParams) { p.NodeID = "" },
		"no cluster":     func(p *envoy.BootstrapParams) { p.Cluster = "" },
	} {
		p := ok
		mut(&p)
		if _, err := envoy.Bootstrap(p); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
}

// TestBootstrapValidatesInEnvoy asks the real Envoy to validate the rendered
// bootstrap (--mode validate), so a template typo fails here, not at startup.
func TestBootstrapValidatesInEnvoy(t *testing.T) {
	bin := envoyBin(t)
	b, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: "127.0.0.1:18000", AdminAddr: "127.0.0.1:9901", NodeID: "n", Cluster: "c"})
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/bootstrap.yaml"
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", path, "--disable-hot-restart").CombinedOutput()
	if err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, out)
	}
}

func envoyBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envoy.EnvBinary)
	if bin == "" {
		t.Skipf("$%s not set; skipping real-Envoy test", envoy.EnvBinary)
	}
	return bin
}
