package xds

import (
	"errors"
	"fmt"
	"net"

	bootstrap "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	overload "github.com/envoyproxy/go-control-plane/envoy/config/overload/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	downstreamconns "github.com/envoyproxy/go-control-plane/envoy/extensions/resource_monitors/downstream_connections/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The drop-in: Sluice in front of an Envoy that Sluice does not configure (an
// operator's own Envoy, or an Istio gateway). The pieces are built by the
// same functions as Sluice's own listener, so the ext_proc settings that
// matter (phases, fail closed, timeouts, buffer limits) cannot drift apart.

// Names in a drop-in Envoy. They are part of the contract: operators put
// them into their own configuration.
const (
	// DropInFilterName names Sluice's ext_proc HTTP filter in an Envoy Sluice
	// does not own, and is the name of the ECDS resource that carries its
	// config. It is not envoy.filters.http.ext_proc, so it cannot clash with
	// an ext_proc filter the operator already runs.
	DropInFilterName = "sluice.ext_proc"
	// DropInRouteName is the /v1/ route of the drop-in.
	DropInRouteName = "sluice_v1"
	// XDSCluster is how a drop-in Envoy reaches Sluice's xds for ECDS.
	XDSCluster = "sluice_xds"
	// ExtProcTypeURL is the type of the ECDS resource's typed_config.
	ExtProcTypeURL = "type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
)

// ExtProcExtensionConfig is the ext_proc filter as an ECDS resource, named
// [DropInFilterName], calling extproc through the cluster [ExtProcCluster].
// Sluice's xds serves it (see [Resources]) to Envoys whose listeners come from
// another control plane.
func ExtProcExtensionConfig() (*core.TypedExtensionConfig, error) {
	a, err := marshalAny(ExtProcConfig(ExtProcCluster))
	if err != nil {
		return nil, err
	}
	return &core.TypedExtensionConfig{Name: DropInFilterName, TypedConfig: a}, nil
}

// EnableFilterOnRoute is the typed_per_filter_config value that turns a
// drop-in filter (disabled by default, see [DropIn]) on for one route: an
// ext_proc per-route config that overrides nothing. (An empty FilterConfig
// would say the same, but Envoy 1.40 rejects it: "Empty route/virtual host
// per filter configuration".)
func EnableFilterOnRoute() *anypb.Any {
	return mustAny(&extproc.ExtProcPerRoute{Override: &extproc.ExtProcPerRoute_Overrides{Overrides: &extproc.ExtProcOverrides{}}})
}

// DropIn is what an operator adds to an Envoy they already run.
type DropIn struct {
	// Filter goes into the HTTP connection manager's http_filters, before
	// envoy.filters.http.router. It is disabled by default and Route
	// enables it, so the listener's other routes do not need a Sluice key.
	Filter *hcm.HttpFilter
	// Route sends /v1/ to the dispatcher with the route timeout disabled;
	// it belongs in the virtual host that serves Sluice's clients.
	Route *route.Route
	// Clusters are the extproc (HTTP/2) and dispatcher clusters, plus the
	// xds cluster for ECDS.
	Clusters []*cluster.Cluster
	// ListenerBufferLimit is the per_connection_buffer_limit_bytes the
	// listener needs: a BUFFERED body above it is a 413 (field notes).
	ListenerBufferLimit uint32
	// StreamIdleTimeout bounds a stalled stream now that the route timeout
	// is off (HCM stream_idle_timeout; Envoy's default is 5 minutes too).
	StreamIdleTimeout *durationpb.Duration
}

// BuildDropIn builds the drop-in for p (ListenAddr is not used). With xdsAddr
// empty the filter's config is inline; with xdsAddr (host:port of `sluice
// xds`'s ADS port) it comes over ECDS from Sluice's xds, on a gRPC stream of
// its own so that Envoys whose ADS is another control plane can use it.
func BuildDropIn(p Params, xdsAddr string) (*DropIn, error) {
	p = p.withDefaults()
	if p.DisableExtProc {
		return nil, errors.New("xds: a drop-in without ext_proc would authenticate nothing")
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("xds: invalid params: %w", err)
	}
	d := &DropIn{
		Clusters:            []*cluster.Cluster{extProcCluster(p), dispatcherCluster(p)},
		ListenerBufferLimit: p.connBufferLimit(),
		StreamIdleTimeout:   durationpb.New(streamIdleTimeout),
		Filter:              &hcm.HttpFilter{Name: DropInFilterName, Disabled: true},
	}
	if xdsAddr == "" {
		a, err := marshalAny(ExtProcConfig(ExtProcCluster))
		if err != nil {
			return nil, err
		}
		d.Filter.ConfigType = &hcm.HttpFilter_TypedConfig{TypedConfig: a}
	} else {
		host, port, err := splitHostPort(xdsAddr)
		if err != nil {
			return nil, fmt.Errorf("xds: xds address: %w", err)
		}
		d.Clusters = append(d.Clusters, grpcCluster(XDSCluster, socketAddress(host, port), host))
		d.Filter.ConfigType = &hcm.HttpFilter_ConfigDiscovery{ConfigDiscovery: ecdsSource()}
	}
	r := v1Route()
	r.Name = DropInRouteName
	r.TypedPerFilterConfig = map[string]*anypb.Any{DropInFilterName: EnableFilterOnRoute()}
	r.ResponseHeadersToAdd = []*core.HeaderValueOption{requestIDHeader(core.HeaderValueOption_ADD_IF_ABSENT)}
	d.Route = r
	return d, nil
}

// ecdsSource fetches the filter config from Sluice's xds over a gRPC stream
// of its own (not ADS: a drop-in Envoy's ADS belongs to its own control
// plane). There is deliberately no default_config: until the first config
// arrives the listener warms, and if it never does, routes that enable the
// filter answer 500 (fail closed) instead of skipping authentication.
func ecdsSource() *core.ExtensionConfigSource {
	return &core.ExtensionConfigSource{
		ConfigSource: &core.ConfigSource{
			ResourceApiVersion: core.ApiVersion_V3,
			ConfigSourceSpecifier: &core.ConfigSource_ApiConfigSource{ApiConfigSource: &core.ApiConfigSource{
				ApiType:                   core.ApiConfigSource_GRPC,
				TransportApiVersion:       core.ApiVersion_V3,
				SetNodeOnFirstMessageOnly: true,
				GrpcServices: []*core.GrpcService{{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
					EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: XDSCluster},
				}}},
			}},
		},
		TypeUrls: []string{ExtProcTypeURL},
	}
}

// maxDownstreamConnections bounds memory on an edge proxy (Envoy warns at
// startup without an overload manager); the same value as envoy.Bootstrap's.
const maxDownstreamConnections = 50000

// StaticBootstrap is a complete Envoy bootstrap with no xDS at all: Sluice's
// listener at p.ListenAddr (the same listener, filters, local replies and
// routes that Sluice's xds serves, with the routes inline), its two clusters,
// and an admin listener at adminAddr (a loopback IP and port).
func StaticBootstrap(p Params, adminAddr, nodeID string) (*bootstrap.Bootstrap, error) {
	p = p.withDefaults()
	if p.DisableExtProc {
		return nil, errors.New("xds: a bootstrap without ext_proc would authenticate nothing")
	}
	errs := []error{p.validate()}
	host, port, err := splitHostPort(adminAddr)
	if err != nil {
		errs = append(errs, fmt.Errorf("admin address: %w", err))
	} else if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		errs = append(errs, fmt.Errorf("admin address %q: must be a loopback IP (the admin API can change Envoy's state)", adminAddr))
	}
	if nodeID == "" {
		errs = append(errs, errors.New("node id is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("xds: bootstrap: %w", err)
	}
	lis, err := buildListener(p, buildRouteConfig())
	if err != nil {
		return nil, err
	}
	return &bootstrap.Bootstrap{
		Node:  &core.Node{Id: nodeID, Cluster: "sluice"},
		Admin: &bootstrap.Admin{Address: socketAddress(host, port)},
		StaticResources: &bootstrap.Bootstrap_StaticResources{
			Listeners: []*listener.Listener{lis},
			Clusters:  []*cluster.Cluster{dispatcherCluster(p), extProcCluster(p)},
		},
		OverloadManager: &overload.OverloadManager{ResourceMonitors: []*overload.ResourceMonitor{{
			Name: "envoy.resource_monitors.global_downstream_max_connections",
			ConfigType: &overload.ResourceMonitor_TypedConfig{TypedConfig: mustAny(
				&downstreamconns.DownstreamConnectionsConfig{MaxActiveDownstreamConnections: maxDownstreamConnections})},
		}}},
	}, nil
}
