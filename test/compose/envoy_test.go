package compose

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/sluice-gateway/sluice/envoy"
)

var update = flag.Bool("update", false, "rewrite deploy/compose/envoy.yaml from envoy.Bootstrap")

const envoyBootstrapFile = "deploy/compose/envoy.yaml"

// The compose bootstrap is exactly what the gateway's own envoy.Bootstrap renders for
// compose's addresses, so it cannot drift from the one `sluice serve` and the end-to-end
// tests use. Regenerate with: cd test/compose && go test -run TestEnvoyBootstrapIsRendered -update
var composeBootstrap = envoy.BootstrapParams{
	XDSAddr:   "xds:9002",       // xds --ads-listen, by service name (STRICT_DNS)
	AdminAddr: "127.0.0.1:9901", // loopback: the health check runs inside the container
	NodeID:    "sluice-envoy",
	Cluster:   "sluice",
}

const envoyBootstrapHeader = `# Envoy bootstrap for docker-compose.yaml (service envoy), generated from
# envoy/bootstrap.yaml.tmpl by test/compose (go test -run TestEnvoyBootstrapIsRendered -update).
# It names only the xds control plane (ADS at xds:9002); the listener, routes, clusters
# and the ext_proc filter arrive over ADS. Do not edit by hand.
`

func TestEnvoyBootstrapIsRendered(t *testing.T) {
	body, err := envoy.Bootstrap(composeBootstrap)
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte(envoyBootstrapHeader), body...)
	path := filepath.Join(repoRoot, envoyBootstrapFile)
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what envoy.Bootstrap renders for compose; run: cd test/compose && go test -run TestEnvoyBootstrapIsRendered -update", envoyBootstrapFile)
	}
}

// bootstrapFacts are what the other tests need from the compose bootstrap.
type bootstrapFacts struct {
	adminHost string
	adminPort int
	adsHost   string
	adsPort   int
}

type socketAddress struct {
	Address   string `yaml:"address"`
	PortValue int    `yaml:"port_value"`
}

// envoyBootstrap parses deploy/compose/envoy.yaml and follows the ADS config to its
// cluster's endpoint.
func envoyBootstrap(t *testing.T) bootstrapFacts {
	t.Helper()
	var doc struct {
		Node struct {
			ID      string `yaml:"id"`
			Cluster string `yaml:"cluster"`
		} `yaml:"node"`
		Admin struct {
			Address struct {
				SocketAddress socketAddress `yaml:"socket_address"`
			} `yaml:"address"`
		} `yaml:"admin"`
		DynamicResources struct {
			ADSConfig struct {
				APIType      string `yaml:"api_type"`
				GRPCServices []struct {
					EnvoyGRPC struct {
						ClusterName string `yaml:"cluster_name"`
					} `yaml:"envoy_grpc"`
				} `yaml:"grpc_services"`
			} `yaml:"ads_config"`
			LDSConfig map[string]any `yaml:"lds_config"`
			CDSConfig map[string]any `yaml:"cds_config"`
		} `yaml:"dynamic_resources"`
		StaticResources struct {
			Clusters []struct {
				Name           string `yaml:"name"`
				Type           string `yaml:"type"`
				LoadAssignment struct {
					Endpoints []struct {
						LBEndpoints []struct {
							Endpoint struct {
								Address struct {
									SocketAddress socketAddress `yaml:"socket_address"`
								} `yaml:"address"`
							} `yaml:"endpoint"`
						} `yaml:"lb_endpoints"`
					} `yaml:"endpoints"`
				} `yaml:"load_assignment"`
			} `yaml:"clusters"`
		} `yaml:"static_resources"`
	}
	dec := yaml.NewDecoder(strings.NewReader(readFile(t, envoyBootstrapFile)))
	dec.KnownFields(false)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s is not valid YAML: %v", envoyBootstrapFile, err)
	}
	ads := doc.DynamicResources.ADSConfig
	if ads.APIType != "GRPC" || len(ads.GRPCServices) != 1 {
		t.Fatalf("%s: ads_config %+v: want one gRPC service", envoyBootstrapFile, ads)
	}
	if doc.DynamicResources.LDSConfig["ads"] == nil || doc.DynamicResources.CDSConfig["ads"] == nil {
		t.Errorf("%s: listeners and clusters must come over ADS", envoyBootstrapFile)
	}
	if doc.Node.ID == "" || doc.Node.Cluster == "" {
		t.Errorf("%s: node id and cluster are required", envoyBootstrapFile)
	}
	name := ads.GRPCServices[0].EnvoyGRPC.ClusterName
	f := bootstrapFacts{adminHost: doc.Admin.Address.SocketAddress.Address, adminPort: doc.Admin.Address.SocketAddress.PortValue}
	found := false
	for _, c := range doc.StaticResources.Clusters {
		if c.Name != name {
			continue
		}
		found = true
		if c.Type != "STRICT_DNS" {
			t.Errorf("%s: cluster %s type %s: a compose service name needs STRICT_DNS", envoyBootstrapFile, name, c.Type)
		}
		if len(c.LoadAssignment.Endpoints) != 1 || len(c.LoadAssignment.Endpoints[0].LBEndpoints) != 1 {
			t.Fatalf("%s: cluster %s: want exactly one endpoint", envoyBootstrapFile, name)
		}
		sa := c.LoadAssignment.Endpoints[0].LBEndpoints[0].Endpoint.Address.SocketAddress
		f.adsHost, f.adsPort = sa.Address, sa.PortValue
	}
	if !found {
		t.Fatalf("%s: the ADS cluster %q is not among the static clusters", envoyBootstrapFile, name)
	}
	return f
}

func TestEnvoyBootstrap(t *testing.T) {
	b := envoyBootstrap(t)
	if b.adsHost != "xds" || b.adsPort != 9002 {
		t.Errorf("ADS cluster endpoint %s:%d, want xds:9002", b.adsHost, b.adsPort)
	}
	if b.adminHost != "127.0.0.1" {
		t.Errorf("admin on %s: keep Envoy's admin API on loopback", b.adminHost)
	}
	// Envoy mounts this file where its command reads it.
	s := service(t, "envoy")
	cmd := strings.Join(s.Command, " ")
	var mounted string
	for _, v := range s.Volumes {
		if strings.HasSuffix(v.Source, envoyBootstrapFile) {
			mounted = v.Target
		}
	}
	if mounted == "" || !strings.Contains(cmd, "-c "+mounted) {
		t.Errorf("envoy: command %q does not load the mounted %s (at %q)", cmd, envoyBootstrapFile, mounted)
	}
	if !strings.HasPrefix(s.Image, "envoyproxy/envoy:v1.40.") {
		t.Errorf("envoy image %s: the project pins Envoy 1.40 (Makefile ENVOY_VERSION)", s.Image)
	}
}

// The real Envoy accepts the compose bootstrap (`envoy --mode validate`).
func TestEnvoyValidatesBootstrap(t *testing.T) {
	bin := os.Getenv("SLUICE_ENVOY_BIN")
	if bin == "" {
		if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
			t.Fatal("SLUICE_ENVOY_BIN is not set (SLUICE_E2E_REQUIRED)")
		}
		t.Skip("SLUICE_ENVOY_BIN is not set")
	}
	cmd := exec.Command(bin, "--mode", "validate", "-c", filepath.Join(repoRoot, envoyBootstrapFile),
		"--log-level", "warn")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("envoy --mode validate %s: %v\n%s", envoyBootstrapFile, err, out)
	}
}
