package mainlib

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-gateway/sluice/xds"
)

// The Istio resources' schema is checked against Istio's CRDs in the test/istio module;
// here the EnvoyFilter's patch values are checked to be the Envoy protos they claim to be.

type istioObject struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Name, Namespace string
	} `json:"metadata"`
	Spec json.RawMessage `json:"spec"`
}

func istioObjects(t *testing.T, args ...string) []istioObject {
	t.Helper()
	out, stderr, err := sluice(t, append([]string{"istio", "--output", "json"}, args...)...)
	if err != nil {
		t.Fatalf("sluice istio %v: %v\n%s", args, err, stderr)
	}
	var list struct {
		Kind  string        `json:"kind"`
		Items []istioObject `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Kind != "List" {
		t.Fatalf("not a List (%v): %s", err, out)
	}
	return list.Items
}

func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestIstioPatchValuesAreEnvoyProtos(t *testing.T) {
	objs := istioObjects(t, "--sluice-namespace", "ai", "--max-request-bytes", "1048576", "--listener-port", "8443")
	if objs[0].Kind != "EnvoyFilter" || objs[0].Metadata.Namespace != "istio-system" {
		t.Fatalf("first object %s in %s, want the EnvoyFilter in istio-system", objs[0].Kind, objs[0].Metadata.Namespace)
	}
	var spec struct {
		WorkloadSelector struct {
			Labels map[string]string `json:"labels"`
		} `json:"workloadSelector"`
		ConfigPatches []struct {
			ApplyTo string `json:"applyTo"`
			Match   struct {
				Context  string `json:"context"`
				Listener struct {
					PortNumber  int `json:"portNumber"`
					FilterChain struct {
						Filter struct {
							SubFilter struct{ Name string } `json:"subFilter"`
						} `json:"filter"`
					} `json:"filterChain"`
				} `json:"listener"`
			} `json:"match"`
			Patch struct {
				Operation string          `json:"operation"`
				Value     json.RawMessage `json:"value"`
			} `json:"patch"`
		} `json:"configPatches"`
	}
	if err := json.Unmarshal(objs[0].Spec, &spec); err != nil {
		t.Fatal(err)
	}
	if spec.WorkloadSelector.Labels["istio"] != "ingressgateway" || len(spec.ConfigPatches) != 3 {
		t.Fatalf("selector %v, %d patches", spec.WorkloadSelector.Labels, len(spec.ConfigPatches))
	}
	const extprocCluster = "outbound|9004||sluice-extproc.ai.svc.cluster.local"
	for _, p := range spec.ConfigPatches {
		if p.Match.Context != "GATEWAY" || p.Match.Listener.PortNumber != 8443 && p.ApplyTo != "HTTP_ROUTE" {
			t.Errorf("%s: match %+v, want the gateway listener on 8443", p.ApplyTo, p.Match)
		}
		switch p.ApplyTo {
		case "HTTP_FILTER":
			f := &hcm.HttpFilter{}
			decodeProto(t, p.Patch.Value, f)
			ep := &extproc.ExternalProcessor{}
			if err := f.GetTypedConfig().UnmarshalTo(ep); err != nil {
				t.Fatal(err)
			}
			if p.Patch.Operation != "INSERT_BEFORE" || p.Match.Listener.FilterChain.Filter.SubFilter.Name != "envoy.filters.http.router" {
				t.Errorf("the filter is not inserted before the router: %s %+v", p.Patch.Operation, p.Match)
			}
			if f.GetName() != xds.DropInFilterName || !f.GetDisabled() || !proto.Equal(ep, xds.ExtProcConfig(extprocCluster)) {
				t.Errorf("filter %s (disabled %v): want Sluice's ext_proc config, disabled by default, via %s", f.GetName(), f.GetDisabled(), extprocCluster)
			}
		case "HTTP_ROUTE":
			r := &route.Route{}
			decodeStrict(t, p.Patch.Value, r) // a MERGE patch: a partial Route
			if !proto.Equal(r.GetTypedPerFilterConfig()[xds.DropInFilterName], xds.EnableFilterOnRoute()) {
				t.Errorf("the route patch does not enable %s: %v", xds.DropInFilterName, r)
			}
		case "LISTENER":
			l := &listener.Listener{}
			decodeStrict(t, p.Patch.Value, l) // a MERGE patch: a partial Listener
			if l.GetPerConnectionBufferLimitBytes().GetValue() != 2<<20 {
				t.Errorf("listener buffer limit %d, want 2 MiB", l.GetPerConnectionBufferLimitBytes().GetValue())
			}
		default:
			t.Errorf("unexpected patch %s", p.ApplyTo)
		}
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.Kind)
	}
	if strings.Join(kinds, ",") != "EnvoyFilter,VirtualService,DestinationRule" {
		t.Errorf("in-mesh Sluice: kinds %v, want no ServiceEntry", kinds)
	}
	vs := compact(t, objs[1].Spec)
	if !strings.Contains(vs, `"name":"sluice-v1"`) || !strings.Contains(vs, `"host":"sluice-dispatcher.ai.svc.cluster.local"`) ||
		strings.Contains(vs, "timeout") {
		t.Errorf("VirtualService spec %s: want route sluice-v1 to the dispatcher, no timeout", vs)
	}
}

func TestIstioServiceEntriesForExternalSluice(t *testing.T) {
	objs := istioObjects(t, "--extproc-host", "10.1.2.3", "--dispatcher-host", "sluice.example.com")
	if len(objs) != 5 {
		t.Fatalf("%d objects, want EnvoyFilter, VirtualService, DestinationRule and two ServiceEntries", len(objs))
	}
	ext, disp := compact(t, objs[3].Spec), compact(t, objs[4].Spec)
	if !strings.Contains(ext, `"resolution":"STATIC"`) || !strings.Contains(ext, `"address":"10.1.2.3"`) ||
		!strings.Contains(ext, `"protocol":"GRPC"`) {
		t.Errorf("extproc ServiceEntry %s", ext)
	}
	if !strings.Contains(disp, `"hosts":["sluice.example.com"]`) || !strings.Contains(disp, `"resolution":"DNS"`) {
		t.Errorf("dispatcher ServiceEntry %s", disp)
	}
	if !strings.Contains(compact(t, objs[0].Spec), `outbound|9004||sluice-extproc.sluice.external`) {
		t.Errorf("the filter does not use the ServiceEntry's cluster: %s", objs[0].Spec)
	}
}

func TestIstioYAMLDocuments(t *testing.T) {
	out, _, err := sluice(t, "istio")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n---\n"); n != 3 {
		t.Errorf("%d document separators, want 3", n)
	}
	for _, s := range []string{"excludeInboundPorts", "excludeOutboundPorts", "sidecar.istio.io/inject",
		"kind: EnvoyFilter", "cluster_name: \"outbound|9004||sluice-extproc.sluice.svc.cluster.local\""} {
		if !strings.Contains(out, s) {
			t.Errorf("YAML lacks %q", s)
		}
	}
}

func TestIstioFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--selector", "istio"},
		{"--hosts", ","},
		{"--extproc-port", "0"},
		{"--listener-port", "70000"},
		{"--output", "xml"},
	} {
		if _, _, err := sluice(t, append([]string{"istio"}, args...)...); err == nil {
			t.Errorf("istio %v: no error", args)
		}
	}
}
