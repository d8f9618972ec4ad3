package xds

import (
	"fmt"
	"net/url"
	"strconv"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// OTLPCluster is the cluster Envoy exports its own spans through.
const OTLPCluster = "sluice_otlp"

// otlpTarget is where Envoy sends its spans: OTLP over plaintext gRPC or HTTP. Envoy's
// tracer has one collector per connection manager, so its spans go to the gateway's own
// collector, never to a tenant's; the tenants' traces are Sluice's spans, which name
// Envoy's span in sluice.envoy_span_id.
type otlpTarget struct {
	grpc       bool
	host       string
	port       uint32
	uri        string // the full URL, for OTLP/HTTP
	hostHeader string
}

// parseOTLP parses Params.OTLPEndpoint; TLS schemes are refused, since this cluster
// carries no TLS context.
func parseOTLP(s string) (*otlpTarget, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("OTLPEndpoint %q: want grpc://host:port or http://host:port[/path]", s)
	}
	t := &otlpTarget{grpc: u.Scheme == "grpc", host: u.Hostname(), hostHeader: u.Host}
	switch u.Scheme {
	case "grpc", "http":
	default:
		return nil, fmt.Errorf("OTLPEndpoint %q: Envoy exports over grpc:// or http:// only", s)
	}
	port := u.Port()
	if port == "" {
		port = map[bool]string{true: "4317", false: "4318"}[t.grpc]
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return nil, fmt.Errorf("OTLPEndpoint %q: bad port", s)
	}
	t.port = uint32(p)
	if !t.grpc {
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		t.uri = u.String()
	}
	return t, nil
}

func (t *otlpTarget) cluster() *cluster.Cluster {
	addr := socketAddress(t.host, t.port)
	if t.grpc {
		return grpcCluster(OTLPCluster, addr, t.host)
	}
	c := &cluster.Cluster{Name: OTLPCluster, ConnectTimeout: durationpb.New(connectTimeout),
		LoadAssignment: loadAssignment(OTLPCluster, addr)}
	setDiscovery(c, t.host)
	return c
}

// tracing is the connection manager's tracer: every request sampled unless the client's
// traceparent says otherwise.
func (t *otlpTarget) tracing() (*hcm.HttpConnectionManager_Tracing, error) {
	cfg := &tracev3.OpenTelemetryConfig{ServiceName: "sluice-envoy"}
	if t.grpc {
		cfg.GrpcService = &core.GrpcService{TargetSpecifier: &core.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: OTLPCluster}}}
	} else {
		cfg.HttpService = &core.HttpService{HttpUri: &core.HttpUri{Uri: t.uri,
			HttpUpstreamType: &core.HttpUri_Cluster{Cluster: OTLPCluster}, Timeout: durationpb.New(connectTimeout)}}
	}
	a, err := marshalAny(cfg)
	if err != nil {
		return nil, err
	}
	return &hcm.HttpConnectionManager_Tracing{
		Provider: &tracev3.Tracing_Http{Name: "envoy.tracers.opentelemetry",
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: a}},
		RandomSampling: &typev3.Percent{Value: 100},
	}, nil
}
