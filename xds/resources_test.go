package xds_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-gateway/sluice/xds"
)

func baseParams() xds.Params {
	return xds.Params{
		ExtProcAddr:    "127.0.0.1:9001",
		DispatcherAddr: "127.0.0.1:9100",
	}
}

func mustResources(t *testing.T, p xds.Params) map[resource.Type][]types.Resource {
	t.Helper()
	res, err := xds.Resources(p)
	if err != nil {
		t.Fatalf("Resources(%+v): %v", p, err)
	}
	return res
}

func mustVersion(t *testing.T, p xds.Params) string {
	t.Helper()
	v, err := xds.Version(mustResources(t, p))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestResourcesDeterministic(t *testing.T) {
	p := baseParams()
	want := mustVersion(t, p)
	// Many builds: a map serialized without Deterministic (the local-reply
	// Struct, typed_extension_protocol_options) would vary across them.
	for i := range 50 {
		if got := mustVersion(t, p); got != want {
			t.Fatalf("build %d: version %s, want %s", i, got, want)
		}
	}
	a, b := mustResources(t, p), mustResources(t, p)
	for typ := range a {
		for i := range a[typ] {
			if !proto.Equal(a[typ][i], b[typ][i]) {
				t.Errorf("%s[%d] differs between builds", typ, i)
			}
		}
	}

	changed := p
	changed.DispatcherAddr = "127.0.0.1:9200"
	if mustVersion(t, changed) == want {
		t.Error("version unchanged after a DispatcherAddr change")
	}
}

func TestSnapshotConsistent(t *testing.T) {
	for _, disable := range []bool{false, true} {
		p := baseParams()
		p.DisableExtProc = disable
		snap, err := cache.NewSnapshot("v", mustResources(t, p))
		if err != nil {
			t.Fatal(err)
		}
		if err := snap.Consistent(); err != nil {
			t.Errorf("DisableExtProc=%v: %v", disable, err)
		}
	}
}

func listenerHCM(t *testing.T, res map[resource.Type][]types.Resource) (*listener.Listener, *hcm.HttpConnectionManager) {
	t.Helper()
	if len(res[resource.ListenerType]) != 1 {
		t.Fatalf("want 1 listener, got %d", len(res[resource.ListenerType]))
	}
	l := res[resource.ListenerType][0].(*listener.Listener)
	m := &hcm.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(m); err != nil {
		t.Fatal(err)
	}
	return l, m
}

func TestExtProcFilterConfig(t *testing.T) {
	_, m := listenerHCM(t, mustResources(t, baseParams()))
	filters := m.GetHttpFilters()
	if len(filters) != 2 || filters[0].GetName() != "envoy.filters.http.ext_proc" || filters[1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("filters = %v, want [ext_proc router]", filters)
	}
	ep := &extproc.ExternalProcessor{}
	if err := filters[0].GetTypedConfig().UnmarshalTo(ep); err != nil {
		t.Fatal(err)
	}
	if got := ep.GetGrpcService().GetEnvoyGrpc().GetClusterName(); got != xds.ExtProcCluster {
		t.Errorf("grpc cluster %q, want %q", got, xds.ExtProcCluster)
	}
	if ep.GetFailureModeAllow() {
		t.Error("failure_mode_allow true: ext_proc must fail closed")
	}
	if !ep.GetAllowModeOverride() {
		t.Error("allow_mode_override false")
	}
	if got := ep.GetMessageTimeout().AsDuration(); got != 15*time.Second {
		t.Errorf("message_timeout %v, want 15s (default 200ms is a pitfall)", got)
	}
	if got := ep.GetMaxMessageTimeout().AsDuration(); got != 30*time.Second {
		t.Errorf("max_message_timeout %v, want 30s", got)
	}
	want := &extproc.ProcessingMode{
		RequestHeaderMode:   extproc.ProcessingMode_SEND,
		RequestBodyMode:     extproc.ProcessingMode_BUFFERED,
		RequestTrailerMode:  extproc.ProcessingMode_SKIP,
		ResponseHeaderMode:  extproc.ProcessingMode_SKIP,
		ResponseBodyMode:    extproc.ProcessingMode_NONE,
		ResponseTrailerMode: extproc.ProcessingMode_SKIP,
	}
	if !proto.Equal(ep.GetProcessingMode(), want) {
		t.Errorf("processing_mode %v, want %v", ep.GetProcessingMode(), want)
	}
	r := &router.Router{}
	if err := filters[1].GetTypedConfig().UnmarshalTo(r); err != nil {
		t.Fatal(err)
	}
	if !r.GetSuppressEnvoyHeaders() {
		t.Error("router suppress_envoy_headers false")
	}
	if m.GetCodecType() != hcm.HttpConnectionManager_AUTO || !m.GetUseRemoteAddress().GetValue() ||
		m.GetStreamIdleTimeout().AsDuration() != 15*time.Minute || m.GetRds().GetRouteConfigName() != xds.RouteConfigName ||
		m.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("HCM basics wrong: %v", m)
	}
	if len(m.GetLocalReplyConfig().GetMappers()) == 0 {
		t.Error("no local_reply_config mappers")
	}

	p := baseParams()
	p.DisableExtProc = true
	res := mustResources(t, p)
	_, m = listenerHCM(t, res)
	if len(m.GetHttpFilters()) != 1 || m.GetHttpFilters()[0].GetName() != "envoy.filters.http.router" {
		t.Errorf("DisableExtProc: filters = %v, want [router]", m.GetHttpFilters())
	}
	for _, c := range res[resource.ClusterType] {
		if c.(*cluster.Cluster).GetName() == xds.ExtProcCluster {
			t.Error("DisableExtProc: ext_proc cluster still present")
		}
	}
}

func TestRoutes(t *testing.T) {
	res := mustResources(t, baseParams())
	rc := res[resource.RouteType][0].(*route.RouteConfiguration)
	vh := rc.GetVirtualHosts()[0]
	if rc.GetName() != xds.RouteConfigName || len(vh.GetDomains()) != 1 || vh.GetDomains()[0] != "*" {
		t.Fatalf("route config %v", rc)
	}
	v1 := vh.GetRoutes()[0]
	if v1.GetMatch().GetPrefix() != "/v1/" || v1.GetRoute().GetCluster() != xds.DispatcherCluster {
		t.Fatalf("first route %v, want /v1/ -> %s", v1, xds.DispatcherCluster)
	}
	if to := v1.GetRoute().GetTimeout(); to == nil || to.AsDuration() != 0 {
		t.Errorf("route timeout %v, want explicit 0s (the 15s default cuts LLM streams)", to)
	}
	if got := v1.GetRoute().GetIdleTimeout().AsDuration(); got != 15*time.Minute {
		t.Errorf("route idle_timeout %v, want 15m", got)
	}
	nf := vh.GetRoutes()[1]
	if nf.GetMatch().GetPrefix() != "/" || nf.GetDirectResponse().GetStatus() != 404 {
		t.Errorf("fallback route %v, want / -> direct 404", nf)
	}
}

func TestBufferLimits(t *testing.T) {
	for _, tc := range []struct {
		max  uint32
		want uint32
	}{
		{0, 32<<20 + 1<<20}, // default 32 MiB
		{64 << 10, 64<<10 + 1<<20},
	} {
		p := baseParams()
		p.MaxRequestBytes = tc.max
		res := mustResources(t, p)
		l, _ := listenerHCM(t, res)
		if got := l.GetPerConnectionBufferLimitBytes().GetValue(); got != tc.want {
			t.Errorf("max %d: listener limit %d, want %d", tc.max, got, tc.want)
		}
		for _, r := range res[resource.ClusterType] {
			c := r.(*cluster.Cluster)
			if c.GetName() != xds.DispatcherCluster {
				continue
			}
			if got := c.GetPerConnectionBufferLimitBytes().GetValue(); got != tc.want {
				t.Errorf("max %d: dispatcher cluster limit %d, want %d", tc.max, got, tc.want)
			}
			th := c.GetCircuitBreakers().GetThresholds()[0]
			if th.GetMaxConnections().GetValue() != 100000 || th.GetMaxPendingRequests().GetValue() != 100000 || th.GetMaxRequests().GetValue() != 100000 {
				t.Errorf("dispatcher circuit breakers %v, want 100000", th)
			}
		}
	}
}

func TestExtProcUnixSocket(t *testing.T) {
	p := baseParams()
	p.ExtProcAddr = "unix:/run/sluice/extproc.sock"
	for _, r := range mustResources(t, p)[resource.ClusterType] {
		c := r.(*cluster.Cluster)
		if c.GetName() != xds.ExtProcCluster {
			continue
		}
		addr := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress()
		if addr.GetPipe().GetPath() != "/run/sluice/extproc.sock" {
			t.Errorf("ext_proc address %v, want pipe /run/sluice/extproc.sock", addr)
		}
		if c.GetType() != cluster.Cluster_STATIC {
			t.Errorf("ext_proc cluster type %v, want STATIC", c.GetType())
		}
		return
	}
	t.Fatal("no ext_proc cluster")
}

func TestParamsInvalid(t *testing.T) {
	for name, mut := range map[string]func(*xds.Params){
		"no dispatcher":      func(p *xds.Params) { p.DispatcherAddr = "" },
		"bad dispatcher":     func(p *xds.Params) { p.DispatcherAddr = "127.0.0.1" },
		"no extproc":         func(p *xds.Params) { p.ExtProcAddr = "" },
		"relative unix path": func(p *xds.Params) { p.ExtProcAddr = "unix:extproc.sock" },
		"listen host name":   func(p *xds.Params) { p.ListenAddr = "localhost:8080" },
		"huge body limit":    func(p *xds.Params) { p.MaxRequestBytes = 1<<32 - 1 },
		"otlp over tls":      func(p *xds.Params) { p.OTLPEndpoint = "https://otel.example:4318" },
		"otlp no host":       func(p *xds.Params) { p.OTLPEndpoint = "grpc://" },
	} {
		p := baseParams()
		mut(&p)
		if _, err := xds.Resources(p); err == nil {
			t.Errorf("%s: Resources accepted %+v", name, p)
		}
	}
}

func TestServerUpdate(t *testing.T) {
	s := xds.NewServer(slog.New(slog.DiscardHandler))
	if s.Version() != "" {
		t.Fatalf("fresh server has version %q", s.Version())
	}
	if err := s.Update(baseParams()); err != nil {
		t.Fatal(err)
	}
	v := s.Version()
	if v != mustVersion(t, baseParams()) {
		t.Errorf("server version %q, want the Resources hash", v)
	}
	bad := baseParams()
	bad.DispatcherAddr = ""
	if err := s.Update(bad); err == nil {
		t.Error("Update accepted invalid params")
	}
	if s.Version() != v {
		t.Error("failed Update changed the published version")
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	s := xds.NewServer(nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

// TestEnvoyTracing: with an OTLP endpoint Envoy traces every request and exports through a
// cluster of its own; without one it does not trace.
func TestEnvoyTracing(t *testing.T) {
	if _, m := listenerHCM(t, mustResources(t, baseParams())); m.Tracing != nil {
		t.Fatalf("tracing on without an endpoint: %v", m.Tracing)
	}
	for _, ep := range []string{"grpc://127.0.0.1:4317", "http://otel-collector:4318"} {
		p := baseParams()
		p.OTLPEndpoint = ep
		res := mustResources(t, p)
		if _, m := listenerHCM(t, res); m.Tracing == nil || m.Tracing.GetProvider().GetName() != "envoy.tracers.opentelemetry" {
			t.Errorf("%s: tracing = %v", ep, m.Tracing)
		}
		found := false
		for _, c := range res[resource.ClusterType] {
			found = found || c.(*cluster.Cluster).Name == xds.OTLPCluster
		}
		if !found {
			t.Errorf("%s: no %s cluster", ep, xds.OTLPCluster)
		}
	}
}
