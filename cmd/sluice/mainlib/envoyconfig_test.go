package mainlib

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-gateway/sluice/xds"
)

// decodeProto decodes raw strictly (protojson rejects unknown fields) into m and runs
// the protoc-gen-validate rules Envoy applies on load.
func decodeProto(t *testing.T, raw []byte, m proto.Message) {
	t.Helper()
	decodeStrict(t, raw, m)
	if err := m.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
		t.Errorf("%T: %v", m, err)
	}
}

// decodeStrict decodes a partial message (an Istio MERGE patch) strictly, without the
// required-field rules a complete one must meet.
func decodeStrict(t *testing.T, raw []byte, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal(raw, m); err != nil {
		t.Fatalf("%T: %v\n%s", m, err, raw)
	}
}

// TestEnvoyConfigPrintsDropIn: what `sluice envoy-config` prints decodes as the Envoy
// protos the xds package builds for the same flags, in both formats.
func TestEnvoyConfigPrintsDropIn(t *testing.T) {
	for _, format := range []string{"static", "ecds"} {
		args := []string{"envoy-config", "--format", format, "--extproc-addr", "extproc.sluice:9004",
			"--dispatcher-addr", "10.0.0.7:9100", "--max-request-bytes", "1048576", "--xds-addr", "xds.sluice:9002"}
		out, stderr, err := sluice(t, append(args, "--output", "json")...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", format, err, stderr)
		}
		var doc struct {
			HTTPFilters []json.RawMessage `json:"http_filters"`
			Routes      []json.RawMessage `json:"routes"`
			Clusters    []json.RawMessage `json:"clusters"`
			Listener    struct {
				Limit uint32 `json:"per_connection_buffer_limit_bytes"`
			} `json:"listener"`
			HCM struct {
				StreamIdle string `json:"stream_idle_timeout"`
			} `json:"http_connection_manager"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		xdsAddr := ""
		if format == "ecds" {
			xdsAddr = "xds.sluice:9002"
		}
		want, err := xds.BuildDropIn(xds.Params{ExtProcAddr: "extproc.sluice:9004", DispatcherAddr: "10.0.0.7:9100",
			MaxRequestBytes: 1 << 20}, xdsAddr)
		if err != nil {
			t.Fatal(err)
		}
		if len(doc.HTTPFilters) != 1 || len(doc.Routes) != 1 || len(doc.Clusters) != len(want.Clusters) {
			t.Fatalf("%s: %d filters, %d routes, %d clusters", format, len(doc.HTTPFilters), len(doc.Routes), len(doc.Clusters))
		}
		f, r := &hcm.HttpFilter{}, &route.Route{}
		decodeProto(t, doc.HTTPFilters[0], f)
		decodeProto(t, doc.Routes[0], r)
		if !proto.Equal(f, want.Filter) || !proto.Equal(r, want.Route) {
			t.Errorf("%s: the printed filter or route differs from xds.BuildDropIn's", format)
		}
		for i, raw := range doc.Clusters {
			c := &cluster.Cluster{}
			decodeProto(t, raw, c)
			if !proto.Equal(c, want.Clusters[i]) {
				t.Errorf("%s: cluster %s differs from xds.BuildDropIn's", format, c.GetName())
			}
		}
		if doc.Listener.Limit != 2<<20 || doc.HCM.StreamIdle != "900s" {
			t.Errorf("%s: listener limit %d, stream idle %q", format, doc.Listener.Limit, doc.HCM.StreamIdle)
		}
		yamlOut, _, err := sluice(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"\nhttp_filters:\n- name: sluice.ext_proc\n", "\nroutes:\n", "\nclusters:\n",
			"BEFORE\n#    envoy.filters.http.router", "per_connection_buffer_limit_bytes: 2097152"} {
			if !strings.Contains(yamlOut, s) {
				t.Errorf("%s YAML lacks %q", format, s)
			}
		}
	}
}

// TestEnvoyConfigBootstrap: --bootstrap is a complete static bootstrap, which the real
// Envoy accepts (`envoy --mode validate`) when $SLUICE_ENVOY_BIN is set.
func TestEnvoyConfigBootstrap(t *testing.T) {
	args := []string{"envoy-config", "--bootstrap", "--listen", "127.0.0.1:18080", "--extproc-addr", "unix:/run/sluice/extproc.sock"}
	out, stderr, err := sluice(t, append(args, "--output", "json")...)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	b := &bootstrap.Bootstrap{}
	decodeProto(t, []byte(out), b)
	want, err := xds.StaticBootstrap(xds.Params{ListenAddr: "127.0.0.1:18080", ExtProcAddr: "unix:/run/sluice/extproc.sock",
		DispatcherAddr: defaultDispatcherAddr}, "127.0.0.1:9901", "sluice-envoy")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(b, want) {
		t.Error("the printed bootstrap differs from xds.StaticBootstrap's")
	}
	bin := os.Getenv("SLUICE_ENVOY_BIN")
	if bin == "" {
		t.Skip("$SLUICE_ENVOY_BIN not set: the real Envoy does not validate the YAML")
	}
	yamlOut, _, err := sluice(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "bootstrap.yaml")
	if err := os.WriteFile(file, []byte(yamlOut), 0o600); err != nil {
		t.Fatal(err)
	}
	if res, err := exec.Command(bin, "--mode", "validate", "-c", file).CombinedOutput(); err != nil {
		t.Fatalf("envoy --mode validate: %v\n%s", err, res)
	}
}

func TestEnvoyConfigFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--format", "xml"},
		{"--bootstrap", "--format", "ecds"},
		{"--output", "toml"},
		{"--max-request-bytes", "0"},
		{"--dispatcher-addr", "nohost"},
		{"--bootstrap", "--admin-addr", "0.0.0.0:9901"},
		{"stray"},
	} {
		if _, _, err := sluice(t, append([]string{"envoy-config"}, args...)...); err == nil {
			t.Errorf("envoy-config %v: no error", args)
		}
	}
}
