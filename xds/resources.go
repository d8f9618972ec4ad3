package xds

import (
	"fmt"
	"net"
	"strings"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationrules "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extproc "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	router "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	earlymutation "github.com/envoyproxy/go-control-plane/envoy/extensions/http/early_header_mutation/header_mutation/v3"
	upstreamhttp "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Timeouts. Each one exists because an Envoy default is wrong for LLM traffic
// (see /work/shared/notes/field-notes.md, "Envoy ext_proc and xDS pitfalls").
const (
	// extProcMessageTimeout: the ext_proc default is 200 ms, far too short
	// for a cold key lookup; the pitfall list says >= 10 s.
	extProcMessageTimeout = 15 * time.Second
	// extProcMaxMessageTimeout caps what extproc may ask for per message
	// through override_message_timeout.
	extProcMaxMessageTimeout = 30 * time.Second
	// streamIdleTimeout replaces the route timeout as the bound on LLM
	// streams: the route timeout (default 15 s) covers the whole response
	// and would cut long streams. It is the outer bound only: the dispatcher's
	// own timeouts (first byte, 10 min for an answer that begins only when it
	// is complete; 5 min of silence in a stream) fire first and fall back or
	// end the stream with an error event, so it must be longer than both.
	streamIdleTimeout = 15 * time.Minute
	connectTimeout    = 5 * time.Second
	// circuitBreakerMax lifts Envoy's default thresholds (1024 requests,
	// 1024 pending) which would otherwise cap concurrent LLM streams and,
	// on the ext_proc cluster, concurrent gRPC streams (one per request).
	circuitBreakerMax = 100000
)

// extProcFilterName is the ext_proc HTTP filter (absent from wellknown).
const extProcFilterName = "envoy.filters.http.ext_proc"

// notFoundBody is the direct response for paths outside /v1/, already in the
// OpenAI error envelope (no local-reply rewriting applies: see localreply.go).
const notFoundBody = `{"error":{"message":"Unknown endpoint.","type":"not_found_error","code":"not_found","param":null}}`

// Resources builds the complete Envoy configuration for p: one listener, one
// route configuration, two clusters and, for Envoys that take only the filter
// from Sluice, the ext_proc filter as an ECDS extension config
// ([ExtProcExtensionConfig]), keyed by xDS type URL. It is pure and
// deterministic: the same Params always yield protos that serialize to the
// same bytes (see [Version]). The returned protos are new on every call and
// owned by the caller.
func Resources(p Params) (map[resource.Type][]types.Resource, error) {
	p = p.withDefaults()
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("xds: invalid params: %w", err)
	}
	lis, err := buildListener(p, nil)
	if err != nil {
		return nil, err
	}
	clusters := []types.Resource{dispatcherCluster(p)}
	res := map[resource.Type][]types.Resource{
		resource.ListenerType: {lis},
		resource.RouteType:    {buildRouteConfig()},
	}
	if !p.DisableExtProc {
		clusters = append(clusters, extProcCluster(p))
		ext, err := ExtProcExtensionConfig()
		if err != nil {
			return nil, err
		}
		res[resource.ExtensionConfigType] = []types.Resource{ext}
	}
	if p.OTLPEndpoint != "" {
		t, _ := parseOTLP(p.OTLPEndpoint) // validated
		clusters = append(clusters, t.cluster())
	}
	res[resource.ClusterType] = clusters
	return res, nil
}

// buildListener builds the client listener. Its HTTP connection manager takes
// routes over RDS when static is nil, else inline (a static bootstrap with no
// control plane, see [StaticBootstrap]).
func buildListener(p Params, static *route.RouteConfiguration) (*listener.Listener, error) {
	host, port, _ := splitHostPort(p.ListenAddr) // validated
	var filters []*hcm.HttpFilter
	if !p.DisableExtProc {
		epAny, err := marshalAny(ExtProcConfig(ExtProcCluster))
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcm.HttpFilter{
			Name:       extProcFilterName,
			ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: epAny},
		})
	}
	routerAny, err := marshalAny(&router.Router{SuppressEnvoyHeaders: true})
	if err != nil {
		return nil, err
	}
	filters = append(filters, &hcm.HttpFilter{
		Name:       wellknown.Router,
		ConfigType: &hcm.HttpFilter_TypedConfig{TypedConfig: routerAny},
	})

	manager := &hcm.HttpConnectionManager{
		StatPrefix: "sluice",
		// AUTO serves HTTP/1.1 and cleartext HTTP/2 (h2c prior knowledge)
		// on one port.
		CodecType: hcm.HttpConnectionManager_AUTO,
		// Routes come over RDS on the same ADS stream: route churn then
		// never touches the Listener, whose change would drain connections
		// (field notes, last pitfall).
		RouteSpecifier: &hcm.HttpConnectionManager_Rds{Rds: &hcm.Rds{
			RouteConfigName: RouteConfigName,
			ConfigSource:    adsSource(),
		}},
		EarlyHeaderMutationExtensions: []*core.TypedExtensionConfig{requestIDMutation()},
		StreamIdleTimeout:             durationpb.New(streamIdleTimeout),
		UseRemoteAddress:              wrapperspb.Bool(true),
		HttpFilters:                   filters,
		LocalReplyConfig:              localReplyConfig(p),
	}
	if static != nil {
		manager.RouteSpecifier = &hcm.HttpConnectionManager_RouteConfig{RouteConfig: static}
	}
	if p.OTLPEndpoint != "" {
		t, _ := parseOTLP(p.OTLPEndpoint) // validated
		if manager.Tracing, err = t.tracing(); err != nil {
			return nil, err
		}
	}
	hcmAny, err := marshalAny(manager)
	if err != nil {
		return nil, err
	}
	return &listener.Listener{
		Name:    ListenerName,
		Address: socketAddress(host, port),
		// The stream's request buffer limit derives from this; a BUFFERED
		// ext_proc body above it is a 413 (field notes). This is the
		// effective body cap: MaxRequestBytes plus 1 MiB of headroom.
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(p.connBufferLimit()),
		FilterChains: []*listener.FilterChain{{
			Filters: []*listener.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listener.Filter_TypedConfig{TypedConfig: hcmAny},
			}},
		}},
	}, nil
}

// requestIDMutation overwrites x-sluice-request-id with an Envoy-minted UUID
// before route selection and any filter. The request id must never come from
// the client (ARCHITECTURE.md, "Headers"), yet the local-reply mappers echo
// the request header: without this, a client-sent value would be echoed
// whenever extproc is down, and a 413 that fires before extproc's header
// response would carry no id at all. extproc may keep this id or replace it.
func requestIDMutation() *core.TypedExtensionConfig {
	return &core.TypedExtensionConfig{
		Name: "sluice_request_id",
		TypedConfig: mustAny(&earlymutation.HeaderMutation{Mutations: []*mutationrules.HeaderMutation{{
			Action: &mutationrules.HeaderMutation_Append{Append: &core.HeaderValueOption{
				Header:       &core.HeaderValue{Key: RequestIDHeader, Value: "%UNIQUE_ID%"},
				AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			}},
		}}}),
	}
}

// ExtProcConfig is Sluice's ext_proc filter configuration, calling extproc
// through the Envoy cluster named clusterName. Every Envoy that fronts Sluice
// (its own, a drop-in, an Istio gateway) gets exactly this; only the cluster
// name differs.
func ExtProcConfig(clusterName string) *extproc.ExternalProcessor {
	return &extproc.ExternalProcessor{
		GrpcService: &core.GrpcService{
			TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{
				ClusterName: clusterName,
			}},
		},
		// Fail closed: extproc is the authentication point (field notes).
		FailureModeAllow: false,
		ProcessingMode: &extproc.ProcessingMode{
			RequestHeaderMode:   extproc.ProcessingMode_SEND,
			RequestBodyMode:     extproc.ProcessingMode_BUFFERED,
			RequestTrailerMode:  extproc.ProcessingMode_SKIP,
			ResponseHeaderMode:  extproc.ProcessingMode_SKIP,
			ResponseBodyMode:    extproc.ProcessingMode_NONE,
			ResponseTrailerMode: extproc.ProcessingMode_SKIP,
		},
		MessageTimeout:    durationpb.New(extProcMessageTimeout),
		MaxMessageTimeout: durationpb.New(extProcMaxMessageTimeout),
		// Response phases stay skipped unless a key has response
		// guardrails; extproc turns them on per request with
		// mode_override, which Envoy only honours with this flag and only
		// on header responses (field notes).
		AllowModeOverride: true,
	}
}

func buildRouteConfig() *route.RouteConfiguration {
	v1 := v1Route()
	return &route.RouteConfiguration{
		Name: RouteConfigName,
		VirtualHosts: []*route.VirtualHost{{
			Name:    "sluice",
			Domains: []string{"*"},
			// X-Sluice-Request-Id on every response (ARCHITECTURE.md,
			// "Headers"); the dispatcher's own value wins.
			ResponseHeadersToAdd: []*core.HeaderValueOption{requestIDHeader(core.HeaderValueOption_ADD_IF_ABSENT)},
			// No request_body_buffer_limit: verified against Envoy 1.40, it
			// (and the deprecated per_request_buffer_limit_bytes) can raise
			// the stream's buffer limit above the listener's but not lower
			// it, so the listener limit is the effective body cap.
			Routes: []*route.Route{
				v1,
				{
					Name:  "not_found",
					Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/"}},
					Action: &route.Route_DirectResponse{DirectResponse: &route.DirectResponseAction{
						Status: 404,
						Body:   &core.DataSource{Specifier: &core.DataSource_InlineString{InlineString: notFoundBody}},
					}},
					// Setting content-type here also marks the reply as
					// already formatted for the local-reply mappers.
					ResponseHeadersToAdd: []*core.HeaderValueOption{jsonContentType()},
				},
			},
		}},
	}
}

// v1Route sends the API (everything under /v1/) to the dispatcher.
func v1Route() *route.Route {
	return &route.Route{
		Name:  "v1",
		Match: &route.RouteMatch{PathSpecifier: &route.RouteMatch_Prefix{Prefix: "/v1/"}},
		Action: &route.Route_Route{Route: &route.RouteAction{
			ClusterSpecifier: &route.RouteAction_Cluster{Cluster: DispatcherCluster},
			// 0 disables the route timeout: it covers the whole response
			// and cuts LLM streams (field notes); idle_timeout bounds a
			// stalled stream instead.
			Timeout:     durationpb.New(0),
			IdleTimeout: durationpb.New(streamIdleTimeout),
		}},
	}
}

func jsonContentType() *core.HeaderValueOption {
	return &core.HeaderValueOption{
		Header:       &core.HeaderValue{Key: "content-type", Value: "application/json"},
		AppendAction: core.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func dispatcherCluster(p Params) *cluster.Cluster {
	host, port, _ := splitHostPort(p.DispatcherAddr) // validated
	c := &cluster.Cluster{
		Name:                          DispatcherCluster,
		ConnectTimeout:                durationpb.New(connectTimeout),
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(p.connBufferLimit()),
		CircuitBreakers:               raisedCircuitBreakers(),
		LoadAssignment:                loadAssignment(DispatcherCluster, socketAddress(host, port)),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			// Explicit HTTP/1.1: the dispatcher is a plain net/http server.
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttp.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{
							HttpProtocolOptions: &core.Http1ProtocolOptions{},
						},
					},
				},
			}),
		},
	}
	setDiscovery(c, host)
	return c
}

func extProcCluster(p Params) *cluster.Cluster {
	if path, ok := strings.CutPrefix(p.ExtProcAddr, "unix:"); ok {
		return grpcCluster(ExtProcCluster, &core.Address{Address: &core.Address_Pipe{Pipe: &core.Pipe{Path: path}}}, "")
	}
	h, port, _ := splitHostPort(p.ExtProcAddr) // validated
	return grpcCluster(ExtProcCluster, socketAddress(h, port), h)
}

// grpcCluster is a cluster for a gRPC server at addr; host is addr's host
// name, "" for a pipe.
func grpcCluster(name string, addr *core.Address, host string) *cluster.Cluster {
	c := &cluster.Cluster{
		Name:            name,
		ConnectTimeout:  durationpb.New(connectTimeout),
		CircuitBreakers: raisedCircuitBreakers(),
		LoadAssignment:  loadAssignment(name, addr),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			// gRPC needs HTTP/2; without this Envoy speaks HTTP/1.1 to
			// extproc and every ext_proc stream fails.
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": mustAny(&upstreamhttp.HttpProtocolOptions{
				UpstreamProtocolOptions: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_{
					ExplicitHttpConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig{
						ProtocolConfig: &upstreamhttp.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
							Http2ProtocolOptions: &core.Http2ProtocolOptions{},
						},
					},
				},
			}),
		},
	}
	setDiscovery(c, host)
	return c
}

// setDiscovery picks STATIC for IP literals and pipes (no DNS on the hot
// path) and STRICT_DNS for host names, which compose and Kubernetes
// deployments use ("dispatcher:9100").
func setDiscovery(c *cluster.Cluster, host string) {
	t := cluster.Cluster_STATIC
	if host != "" && net.ParseIP(host) == nil {
		t = cluster.Cluster_STRICT_DNS
	}
	c.ClusterDiscoveryType = &cluster.Cluster_Type{Type: t}
}

func raisedCircuitBreakers() *cluster.CircuitBreakers {
	return &cluster.CircuitBreakers{Thresholds: []*cluster.CircuitBreakers_Thresholds{{
		Priority:           core.RoutingPriority_DEFAULT,
		MaxConnections:     wrapperspb.UInt32(circuitBreakerMax),
		MaxPendingRequests: wrapperspb.UInt32(circuitBreakerMax),
		MaxRequests:        wrapperspb.UInt32(circuitBreakerMax),
	}}}
}

func loadAssignment(name string, addr *core.Address) *endpoint.ClusterLoadAssignment {
	return &endpoint.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints: []*endpoint.LocalityLbEndpoints{{
			LbEndpoints: []*endpoint.LbEndpoint{{
				HostIdentifier: &endpoint.LbEndpoint_Endpoint{Endpoint: &endpoint.Endpoint{Address: addr}},
			}},
		}},
	}
}

func socketAddress(host string, port uint32) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: port},
	}}}
}

// adsSource points a dynamic resource at the ADS stream, so Envoy receives
// listener, routes and clusters in order on one stream and never sees half an
// update (STYLE rule 16).
func adsSource() *core.ConfigSource {
	return &core.ConfigSource{
		ResourceApiVersion:    core.ApiVersion_V3,
		ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
	}
}

// marshalAny packs m deterministically. anypb.New uses non-deterministic
// marshaling, so a map inside (the local-reply json_format Struct,
// typed_extension_protocol_options) would make the packed bytes, and with
// them the snapshot version, differ between identical builds.
func marshalAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("xds: pack %T: %w", m, err)
	}
	return a, nil
}

// mustAny is marshalAny for messages built from constants, which cannot fail
// to marshal.
func mustAny(m proto.Message) *anypb.Any {
	a, err := marshalAny(m)
	if err != nil {
		panic(err)
	}
	return a
}
