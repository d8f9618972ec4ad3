package xds

import (
	"context"
	"log/slog"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
)

// xdsServices binds go-control-plane's SotW and delta stream handlers to the
// ADS, CDS, LDS, RDS and ECDS gRPC services. ECDS on a stream of its own
// serves drop-in Envoys, whose ADS belongs to another control plane.
//
// Why not go-control-plane's pkg/server/v3: it imports the separate
// go-control-plane/ratelimit module (for RLS config discovery), which is not
// in this module's go.sum. The handlers below are the same one-liners that
// pkg/server/v3 uses, minus the services Sluice does not serve.
type xdsServices struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	clusterservice.UnimplementedClusterDiscoveryServiceServer
	listenerservice.UnimplementedListenerDiscoveryServiceServer
	routeservice.UnimplementedRouteDiscoveryServiceServer
	extensionservice.UnimplementedExtensionConfigDiscoveryServiceServer

	sotw  sotw.Server
	delta delta.Server
}

var (
	_ discovery.AggregatedDiscoveryServiceServer             = (*xdsServices)(nil)
	_ clusterservice.ClusterDiscoveryServiceServer           = (*xdsServices)(nil)
	_ listenerservice.ListenerDiscoveryServiceServer         = (*xdsServices)(nil)
	_ routeservice.RouteDiscoveryServiceServer               = (*xdsServices)(nil)
	_ extensionservice.ExtensionConfigDiscoveryServiceServer = (*xdsServices)(nil)
)

// StreamAggregatedResources implements
// [discovery.AggregatedDiscoveryServiceServer.StreamAggregatedResources].
func (s *xdsServices) StreamAggregatedResources(st discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.sotw.StreamHandler(st, resource.AnyType)
}

// DeltaAggregatedResources implements
// [discovery.AggregatedDiscoveryServiceServer.DeltaAggregatedResources].
func (s *xdsServices) DeltaAggregatedResources(st discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return s.delta.DeltaStreamHandler(st, resource.AnyType)
}

// StreamClusters implements [clusterservice.ClusterDiscoveryServiceServer.StreamClusters].
func (s *xdsServices) StreamClusters(st clusterservice.ClusterDiscoveryService_StreamClustersServer) error {
	return s.sotw.StreamHandler(st, resource.ClusterType)
}

// DeltaClusters implements [clusterservice.ClusterDiscoveryServiceServer.DeltaClusters].
func (s *xdsServices) DeltaClusters(st clusterservice.ClusterDiscoveryService_DeltaClustersServer) error {
	return s.delta.DeltaStreamHandler(st, resource.ClusterType)
}

// StreamListeners implements [listenerservice.ListenerDiscoveryServiceServer.StreamListeners].
func (s *xdsServices) StreamListeners(st listenerservice.ListenerDiscoveryService_StreamListenersServer) error {
	return s.sotw.StreamHandler(st, resource.ListenerType)
}

// DeltaListeners implements [listenerservice.ListenerDiscoveryServiceServer.DeltaListeners].
func (s *xdsServices) DeltaListeners(st listenerservice.ListenerDiscoveryService_DeltaListenersServer) error {
	return s.delta.DeltaStreamHandler(st, resource.ListenerType)
}

// StreamRoutes implements [routeservice.RouteDiscoveryServiceServer.StreamRoutes].
func (s *xdsServices) StreamRoutes(st routeservice.RouteDiscoveryService_StreamRoutesServer) error {
	return s.sotw.StreamHandler(st, resource.RouteType)
}

// DeltaRoutes implements [routeservice.RouteDiscoveryServiceServer.DeltaRoutes].
func (s *xdsServices) DeltaRoutes(st routeservice.RouteDiscoveryService_DeltaRoutesServer) error {
	return s.delta.DeltaStreamHandler(st, resource.RouteType)
}

// StreamExtensionConfigs implements
// [extensionservice.ExtensionConfigDiscoveryServiceServer.StreamExtensionConfigs].
func (s *xdsServices) StreamExtensionConfigs(st extensionservice.ExtensionConfigDiscoveryService_StreamExtensionConfigsServer) error {
	return s.sotw.StreamHandler(st, resource.ExtensionConfigType)
}

// DeltaExtensionConfigs implements
// [extensionservice.ExtensionConfigDiscoveryServiceServer.DeltaExtensionConfigs].
func (s *xdsServices) DeltaExtensionConfigs(st extensionservice.ExtensionConfigDiscoveryService_DeltaExtensionConfigsServer) error {
	return s.delta.DeltaStreamHandler(st, resource.ExtensionConfigType)
}

// callbacks logs stream lifecycle and, above all, NACKs: a rejected
// configuration otherwise shows up only in Envoy's own log. It implements
// both [sotw.Callbacks] and [delta.Callbacks].
type callbacks struct{ logger *slog.Logger }

var (
	_ sotw.Callbacks  = callbacks{}
	_ delta.Callbacks = callbacks{}
)

// OnStreamOpen implements [sotw.Callbacks.OnStreamOpen].
func (c callbacks) OnStreamOpen(_ context.Context, id int64, typeURL string) error {
	c.logger.Debug("xds stream open", "stream", id, "type", typeURL)
	return nil
}

// OnStreamClosed implements [sotw.Callbacks.OnStreamClosed].
func (c callbacks) OnStreamClosed(id int64, node *core.Node) {
	c.logger.Debug("xds stream closed", "stream", id, "node", node.GetId())
}

// OnStreamRequest implements [sotw.Callbacks.OnStreamRequest].
func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	if d := req.GetErrorDetail(); d != nil {
		c.logger.Warn("envoy rejected xds config (NACK)",
			"stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl(),
			"version", req.GetVersionInfo(), "error", d.GetMessage())
	}
	return nil
}

// OnStreamResponse implements [sotw.Callbacks.OnStreamResponse].
func (c callbacks) OnStreamResponse(context.Context, int64, *discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {
}

// OnDeltaStreamOpen implements [delta.Callbacks.OnDeltaStreamOpen].
func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, typeURL string) error {
	return c.OnStreamOpen(ctx, id, typeURL)
}

// OnDeltaStreamClosed implements [delta.Callbacks.OnDeltaStreamClosed].
func (c callbacks) OnDeltaStreamClosed(id int64, node *core.Node) { c.OnStreamClosed(id, node) }

// OnStreamDeltaRequest implements [delta.Callbacks.OnStreamDeltaRequest].
func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	if d := req.GetErrorDetail(); d != nil {
		c.logger.Warn("envoy rejected xds config (NACK)",
			"stream", id, "node", req.GetNode().GetId(), "type", req.GetTypeUrl(), "error", d.GetMessage())
	}
	return nil
}

// OnStreamDeltaResponse implements [delta.Callbacks.OnStreamDeltaResponse].
func (c callbacks) OnStreamDeltaResponse(int64, *discovery.DeltaDiscoveryRequest, *discovery.DeltaDiscoveryResponse) {
}
