package xds_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/xds"
)

// validator is what protoc-gen-validate generates on every Envoy proto: the
// constraints Envoy itself checks on load.
type validator interface{ ValidateAll() error }

func validateAll(t *testing.T, ms ...proto.Message) {
	t.Helper()
	for _, m := range ms {
		if err := m.(validator).ValidateAll(); err != nil {
			t.Errorf("%T: %v", m, err)
		}
	}
}

// TestExtProcExtensionConfigServed: the xds snapshot carries the ext_proc
// filter as an ECDS resource, identical to the filter in Sluice's own
// listener.
func TestExtProcExtensionConfigServed(t *testing.T) {
	res := mustResources(t, baseParams())
	exts := res[resource.ExtensionConfigType]
	if len(exts) != 1 {
		t.Fatalf("%d extension configs, want 1", len(exts))
	}
	ext := exts[0].(*core.TypedExtensionConfig)
	validateAll(t, ext)
	if ext.GetName() != xds.DropInFilterName || ext.GetTypedConfig().GetTypeUrl() != xds.ExtProcTypeURL {
		t.Errorf("extension config %q of type %q", ext.GetName(), ext.GetTypedConfig().GetTypeUrl())
	}
	_, m := listenerHCM(t, res)
	if !proto.Equal(ext.GetTypedConfig(), m.GetHttpFilters()[0].GetTypedConfig()) {
		t.Error("the ECDS filter config differs from the listener's ext_proc filter")
	}
	p := baseParams()
	p.DisableExtProc = true
	if got := mustResources(t, p)[resource.ExtensionConfigType]; len(got) != 0 {
		t.Errorf("DisableExtProc: %d extension configs, want none", len(got))
	}
}

func TestBuildDropIn(t *testing.T) {
	for _, xdsAddr := range []string{"", "xds.sluice.svc:9002"} {
		d, err := xds.BuildDropIn(baseParams(), xdsAddr)
		if err != nil {
			t.Fatal(err)
		}
		validateAll(t, d.Filter, d.Route)
		for _, c := range d.Clusters {
			validateAll(t, c)
		}
		if d.Filter.GetName() != xds.DropInFilterName || !d.Filter.GetDisabled() {
			t.Errorf("filter %q disabled=%v, want %q disabled by default", d.Filter.GetName(), d.Filter.GetDisabled(), xds.DropInFilterName)
		}
		names := []string{}
		for _, c := range d.Clusters {
			names = append(names, c.GetName())
		}
		want := []string{xds.ExtProcCluster, xds.DispatcherCluster}
		if xdsAddr != "" {
			want = append(want, xds.XDSCluster)
			src := d.Filter.GetConfigDiscovery()
			if src == nil || src.GetTypeUrls()[0] != xds.ExtProcTypeURL ||
				src.GetConfigSource().GetApiConfigSource().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != xds.XDSCluster ||
				src.GetDefaultConfig() != nil {
				t.Errorf("ECDS source = %v, want sluice_xds, the ext_proc type and no default config (fail closed)", src)
			}
		} else {
			ep := &extproc.ExternalProcessor{}
			if err := d.Filter.GetTypedConfig().UnmarshalTo(ep); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(ep, xds.ExtProcConfig(xds.ExtProcCluster)) {
				t.Error("inline filter config differs from ExtProcConfig")
			}
		}
		if fmt.Sprint(names) != fmt.Sprint(want) {
			t.Errorf("clusters %v, want %v", names, want)
		}
		r := d.Route
		if r.GetMatch().GetPrefix() != "/v1/" || r.GetRoute().GetCluster() != xds.DispatcherCluster ||
			r.GetRoute().GetTimeout().AsDuration() != 0 || r.GetTypedPerFilterConfig()[xds.DropInFilterName] == nil {
			t.Errorf("route %v: want /v1/ to the dispatcher, timeout 0, the filter enabled", r)
		}
		if d.ListenerBufferLimit != xds.DefaultMaxRequestBytes+1<<20 {
			t.Errorf("listener buffer limit %d", d.ListenerBufferLimit)
		}
	}
	if _, err := xds.BuildDropIn(xds.Params{DisableExtProc: true, DispatcherAddr: "127.0.0.1:1"}, ""); err == nil {
		t.Error("a drop-in without ext_proc was built")
	}
	if _, err := xds.BuildDropIn(baseParams(), "no-port"); err == nil {
		t.Error("a bad xds address was accepted")
	}
}

func TestStaticBootstrap(t *testing.T) {
	b, err := xds.StaticBootstrap(baseParams(), "127.0.0.1:9901", "edge-1")
	if err != nil {
		t.Fatal(err)
	}
	validateAll(t, b)
	if b.GetDynamicResources() != nil || len(b.GetStaticResources().GetListeners()) != 1 || len(b.GetStaticResources().GetClusters()) != 2 {
		t.Errorf("want one static listener, two clusters and no xDS: %v", b)
	}
	m := &hcm.HttpConnectionManager{}
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	if m.GetRouteConfig() == nil || m.GetRds() != nil {
		t.Error("the bootstrap's routes are not inline")
	}
	for _, bad := range [][2]string{{"10.0.0.1:9901", "edge"}, {"127.0.0.1:9901", ""}, {"127.0.0.1", "edge"}} {
		if _, err := xds.StaticBootstrap(baseParams(), bad[0], bad[1]); err == nil {
			t.Errorf("admin %q node %q accepted", bad[0], bad[1])
		}
	}
}

// dropInBootstrap is an operator's Envoy: a listener of its own with an
// unrelated catch-all route to other, into which the drop-in pieces are
// merged as `sluice envoy-config` instructs.
func dropInBootstrap(t *testing.T, d *xds.DropIn, listenAddr, adminAddr string, other net.Addr) []byte {
	t.Helper()
	routerAny, _ := anypb.New(&router.Router{})
	m := &hcm.HttpConnectionManager{
		StatPrefix: "operator",
		HttpFilters: []*hcm.HttpFilter{d.Filter, {Name: wellknown.Router,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerAny}}},
		StreamIdleTimeout: d.StreamIdleTimeout,
		RouteSpecifier: &hcm.HttpConnectionManager_RouteConfig{RouteConfig: &route.RouteConfiguration{
			VirtualHosts: []*route.VirtualHost{{Name: "operator", Domains: []string{"*"}, Routes: []*route.Route{
				d.Route,
				{Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_Route{Route: &route.RouteAction{ClusterSpecifier: &route.RouteAction_Cluster{Cluster: "other"}}}},
			}}},
		}},
	}
	hcmAny, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(a string) *core.Address {
		host, port, _ := net.SplitHostPort(a)
		n, _ := strconv.Atoi(port)
		return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
			Address: host, PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(n)}}}}
	}
	clusters := append([]*cluster.Cluster{{
		Name: "other", ClusterDiscoveryType: &cluster.Cluster_Type{Type: cluster.Cluster_STATIC},
		LoadAssignment: &endpoint.ClusterLoadAssignment{ClusterName: "other", Endpoints: []*endpoint.LocalityLbEndpoints{{
			LbEndpoints: []*endpoint.LbEndpoint{{HostIdentifier: &endpoint.LbEndpoint_Endpoint{
				Endpoint: &endpoint.Endpoint{Address: addr(other.String())}}}},
		}}},
	}}, d.Clusters...)
	b := &bootstrap.Bootstrap{
		Node:  &core.Node{Id: t.Name(), Cluster: "operator"},
		Admin: &bootstrap.Admin{Address: addr(adminAddr)},
		StaticResources: &bootstrap.Bootstrap_StaticResources{
			Listeners: []*listener.Listener{{
				Name: "operator", Address: addr(listenAddr),
				FilterChains: []*listener.FilterChain{{Filters: []*listener.Filter{{
					Name: wellknown.HTTPConnectionManager, ConfigType: &listener.Filter_TypedConfig{TypedConfig: hcmAny},
				}}}},
			}},
			Clusters: clusters,
		},
	}
	// JSON is YAML: Envoy reads it from the .yaml bootstrap file.
	out, err := protojson.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startDropInEnvoy runs Envoy on boot and waits until it is LIVE.
func startDropInEnvoy(t *testing.T, boot []byte, adminAddr string) {
	t.Helper()
	bin := os.Getenv(envoy.EnvBinary)
	if bin == "" {
		t.Skipf("$%s not set; skipping real-Envoy test", envoy.EnvBinary)
	}
	out := &lockedBuffer{}
	p, err := envoy.Start(context.Background(), bin, boot, t.TempDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(5 * time.Second); err != nil {
			t.Errorf("stop envoy: %v", err)
		}
		if t.Failed() {
			t.Logf("envoy output:\n%s", out.String())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	if err := envoy.WaitReady(ctx, adminAddr); err != nil {
		t.Fatal(err)
	}
}

func dropInEnv(listen string) *testEnv {
	return &testEnv{listenAddr: listen, client: &http.Client{Timeout: 10 * time.Second}}
}

// checkDropIn: /v1/ goes through ext_proc to the dispatcher (a denied key is
// extproc's 401), and the operator's other route does not touch ext_proc.
func checkDropIn(t *testing.T, e *testEnv, seen, otherSeen interface{ Load(any) (any, bool) }) {
	t.Helper()
	if r := e.do(t, "POST", "/v1/chat/completions", []byte(`{}`)); r.status != 200 || r.body != "A 2" {
		t.Fatalf("/v1/: got %d %q, want the dispatcher's 200", r.status, r.body)
	}
	if rid, _ := seen.Load("/v1/chat/completions"); rid != fakeRequestID {
		t.Errorf("dispatcher saw x-sluice-request-id %q, want ext_proc's %q", rid, fakeRequestID)
	}
	r := e.do(t, "POST", "/v1/chat/completions", []byte(`{}`), denyHeader, "1")
	if r.status != 401 || r.body != denyBody {
		t.Errorf("/v1/ with a denied key: got %d %q, want ext_proc's 401", r.status, r.body)
	}
	if r := e.do(t, "GET", "/app/index.html", nil, denyHeader, "1"); r.status != 200 || r.body != "other 0" {
		t.Errorf("operator's route: got %d %q, want its own upstream's 200 (no ext_proc)", r.status, r.body)
	}
	if rid, _ := otherSeen.Load("/app/index.html"); rid != "" {
		t.Errorf("the operator's route went through ext_proc (x-sluice-request-id %q)", rid)
	}
}

// TestEnvoyDropInStatic: the static drop-in pieces, merged into an operator's
// own listener, on a real Envoy.
func TestEnvoyDropInStatic(t *testing.T) {
	a, seen := upstream(t, "A")
	other, otherSeen := upstream(t, "other")
	d, err := xds.BuildDropIn(xds.Params{ExtProcAddr: startFakeExtProc(t), DispatcherAddr: a.Listener.Addr().String()}, "")
	if err != nil {
		t.Fatal(err)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	startDropInEnvoy(t, dropInBootstrap(t, d, listen, admin, other.Listener.Addr()), admin)
	checkDropIn(t, dropInEnv(listen), seen, otherSeen)
}

// TestEnvoyDropInECDS: the operator's listener names the filter only; its
// config arrives over ECDS from a running xds Server.
func TestEnvoyDropInECDS(t *testing.T) {
	a, seen := upstream(t, "A")
	other, otherSeen := upstream(t, "other")
	srv := xds.NewServer(slog.New(slog.DiscardHandler))
	p := xds.Params{ExtProcAddr: startFakeExtProc(t), DispatcherAddr: a.Listener.Addr().String()}
	if err := srv.Update(p); err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	d, err := xds.BuildDropIn(p, lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	listen, admin := freeAddr(t), freeAddr(t)
	startDropInEnvoy(t, dropInBootstrap(t, d, listen, admin, other.Listener.Addr()), admin)
	checkDropIn(t, dropInEnv(listen), seen, otherSeen)
}
