package compose

import (
	"net"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

const otelConfigFile = "deploy/compose/otel-collector.yaml"

type otelFacts struct {
	otlpHTTPPort int
	healthPort   int
	traceExport  string // host:port the trace pipeline exports to
}

// otelConfig parses the collector config and checks its structure: every component a
// pipeline names is defined, and traces flow from the OTLP receiver to Jaeger.
func otelConfig(t *testing.T) otelFacts {
	t.Helper()
	var doc struct {
		Receivers  map[string]map[string]any `yaml:"receivers"`
		Processors map[string]any            `yaml:"processors"`
		Exporters  map[string]map[string]any `yaml:"exporters"`
		Extensions map[string]map[string]any `yaml:"extensions"`
		Service    struct {
			Extensions []string `yaml:"extensions"`
			Pipelines  map[string]struct {
				Receivers  []string `yaml:"receivers"`
				Processors []string `yaml:"processors"`
				Exporters  []string `yaml:"exporters"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, otelConfigFile)), &doc); err != nil {
		t.Fatalf("%s is not valid YAML: %v", otelConfigFile, err)
	}
	for _, p := range []string{"traces", "metrics", "logs"} {
		pl, ok := doc.Service.Pipelines[p]
		if !ok {
			t.Errorf("%s: no %s pipeline", otelConfigFile, p)
			continue
		}
		if len(pl.Receivers) == 0 || len(pl.Exporters) == 0 {
			t.Errorf("%s: pipeline %s needs receivers and exporters", otelConfigFile, p)
		}
		for _, r := range pl.Receivers {
			if _, ok := doc.Receivers[r]; !ok {
				t.Errorf("%s: pipeline %s names undefined receiver %q", otelConfigFile, p, r)
			}
		}
		for _, pr := range pl.Processors {
			if _, ok := doc.Processors[pr]; !ok {
				t.Errorf("%s: pipeline %s names undefined processor %q", otelConfigFile, p, pr)
			}
		}
		for _, e := range pl.Exporters {
			if _, ok := doc.Exporters[e]; !ok {
				t.Errorf("%s: pipeline %s names undefined exporter %q", otelConfigFile, p, e)
			}
		}
	}
	for _, e := range doc.Service.Extensions {
		if _, ok := doc.Extensions[e]; !ok {
			t.Errorf("%s: service names undefined extension %q", otelConfigFile, e)
		}
	}
	var f otelFacts
	traces := doc.Service.Pipelines["traces"]
	if !slices.Contains(traces.Receivers, "otlp") {
		t.Errorf("%s: the traces pipeline must receive OTLP", otelConfigFile)
	}
	// The gRPC OTLP exporter is otlp_grpc since collector 0.144 (otlp is a deprecated alias).
	for _, e := range traces.Exporters {
		if typ, _, _ := strings.Cut(e, "/"); typ == "otlp_grpc" {
			f.traceExport, _ = doc.Exporters[e]["endpoint"].(string)
			tls, _ := doc.Exporters[e]["tls"].(map[string]any)
			if insecure, _ := tls["insecure"].(bool); !insecure {
				t.Errorf("%s: exporter %s: Jaeger in compose speaks plaintext; set tls.insecure", otelConfigFile, e)
			}
		}
	}
	if f.traceExport == "" {
		t.Errorf("%s: the traces pipeline has no otlp_grpc exporter", otelConfigFile)
	}
	protocols, _ := doc.Receivers["otlp"]["protocols"].(map[string]any)
	for proto, want := range map[string]int{"grpc": 4317, "http": 4318} {
		p, _ := protocols[proto].(map[string]any)
		ep, _ := p["endpoint"].(string)
		host, port := splitAddr(t, ep)
		if host != "0.0.0.0" || port != want {
			t.Errorf("%s: otlp %s receiver on %q, want 0.0.0.0:%d (other containers send to it)", otelConfigFile, proto, ep, want)
		}
		if proto == "http" {
			f.otlpHTTPPort = port
		}
	}
	if !slices.Contains(doc.Service.Extensions, "health_check") {
		t.Fatalf("%s: the health_check extension must be enabled for the compose health check", otelConfigFile)
	}
	ep, _ := doc.Extensions["health_check"]["endpoint"].(string)
	host, port := splitAddr(t, ep)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("%s: health_check on %q: loopback is enough for an in-container probe", otelConfigFile, ep)
	}
	f.healthPort = port
	return f
}

func TestOtelCollectorConfig(t *testing.T) {
	f := otelConfig(t)
	s := service(t, "otel-collector")
	var target string
	for _, v := range s.Volumes {
		if strings.HasSuffix(v.Source, otelConfigFile) {
			target = v.Target
		}
	}
	if target == "" || !slices.Contains(s.Command, "--config="+target) {
		t.Errorf("otel-collector: command %q does not load the mounted %s (at %q)", s.Command, otelConfigFile, target)
	}
	if f.otlpHTTPPort != 4318 || f.traceExport != "jaeger:"+strconv.Itoa(4317) {
		t.Errorf("collector facts %+v", f)
	}
}

// The scripts parse as POSIX sh (BusyBox ash runs them in the image).
func TestScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh on this machine")
	}
	for _, f := range []string{"deploy/compose/secrets.sh", "deploy/compose/init.sh"} {
		if out, err := exec.Command(sh, "-n", repoRoot+"/"+f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", f, err, out)
		}
	}
	// init registers the demo provider with the credential the secrets service generated and
	// the demo provider itself expects.
	init := readFile(t, "deploy/compose/init.sh")
	for _, want := range []string{"--api-key-file \"$DEMO_KEY_FILE\"", "model-providers create", "virtual-keys create --name demo",
		"demo-openai openai", "demo-anthropic anthropic", "/v1/chat/completions"} {
		if !strings.Contains(init, want) {
			t.Errorf("deploy/compose/init.sh: missing %q", want)
		}
	}
	env := service(t, "init").Environment
	if v := env["DEMO_PROVIDER_KEY_FILE"]; v == nil || *v != "/run/sluice/demo/provider_key" {
		t.Errorf("init: DEMO_PROVIDER_KEY_FILE must be the demo provider's key file")
	}
	demo := service(t, "demo-provider")
	if cmd := strings.Join(demo.Command, " "); !strings.Contains(cmd, "cat /run/sluice/demo/provider_key") {
		t.Errorf("demo-provider: command %q does not read /run/sluice/demo/provider_key", cmd)
	}
}
