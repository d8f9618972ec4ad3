package xds

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	extensionservice "github.com/envoyproxy/go-control-plane/envoy/service/extension/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// gRPC server limits, set explicitly (STYLE rule 16). grpc-go's defaults
// would let a single Envoy's streams be throttled (MaxConcurrentStreams) and
// silently drop idle ADS connections behind NATs (no keepalive).
const (
	grpcMaxConcurrentStreams = 1 << 16
	grpcKeepaliveTime        = 30 * time.Second
	grpcKeepaliveTimeout     = 5 * time.Second
	grpcKeepaliveMinTime     = 15 * time.Second
	// gracefulStopTimeout bounds Serve's shutdown: ADS streams are
	// long-lived, so GracefulStop alone could wait forever.
	gracefulStopTimeout = 5 * time.Second
)

// fleetNode is the single cache key: every Envoy gets the same configuration,
// whatever node id or cluster its bootstrap names.
const fleetNode = "sluice"

type fleetHash struct{}

// ID implements [cache.NodeHash.ID].
func (fleetHash) ID(*core.Node) string { return fleetNode }

var _ cache.NodeHash = fleetHash{}

// Server serves the Envoy configuration over ADS. It is safe for concurrent
// use: Update may be called from any goroutine while Serve runs.
type Server struct {
	// Immutable after NewServer.
	logger *slog.Logger
	cache  cache.SnapshotCache

	// mu serializes Update and guards version.
	mu      sync.Mutex
	version string
}

// NewServer returns a Server with an empty configuration; Envoys that connect
// before the first [Server.Update] wait for it.
func NewServer(logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{
		logger: logger,
		// ads=true: responses wait until Envoy has asked for every
		// resource they reference, so it never sees half an update.
		cache: cache.NewSnapshotCache(true, fleetHash{}, slogAdapter(logger)),
	}
}

// Update builds the full configuration for p, checks it, and publishes it to
// every connected and future Envoy. An unchanged configuration (same version)
// is not republished. On error the previous configuration keeps serving.
func (s *Server) Update(p Params) error {
	res, err := Resources(p)
	if err != nil {
		return err
	}
	version, err := Version(res)
	if err != nil {
		return err
	}
	snap, err := cache.NewSnapshot(version, res)
	if err != nil {
		return fmt.Errorf("xds: snapshot: %w", err)
	}
	if err := snap.Consistent(); err != nil {
		return fmt.Errorf("xds: inconsistent snapshot: %w", err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if version == s.version {
		return nil
	}
	// The protos now belong to the cache; nothing may mutate them.
	if err := s.cache.SetSnapshot(context.Background(), fleetNode, snap); err != nil {
		return fmt.Errorf("xds: set snapshot: %w", err)
	}
	s.version = version
	s.logger.Info("xds snapshot published", "version", version)
	return nil
}

// Version returns the version of the published configuration, "" before the
// first successful Update.
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Serve runs the ADS gRPC server on lis until ctx is done, then stops
// gracefully under a deadline. It returns nil after a ctx-initiated stop.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// go-control-plane ends its streams when this ctx is done, which is
	// what lets GracefulStop finish instead of waiting on open ADS streams.
	cb := callbacks{logger: s.logger}
	xs := &xdsServices{
		sotw:  sotw.NewServer(ctx, s.cache, cb, sotw.WithLogger(slogAdapter(s.logger))),
		delta: delta.NewServer(ctx, s.cache, cb, delta.WithLogger(slogAdapter(s.logger))),
	}
	gs := grpc.NewServer(
		grpc.MaxConcurrentStreams(grpcMaxConcurrentStreams),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    grpcKeepaliveTime,
			Timeout: grpcKeepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             grpcKeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	)
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(gs, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(gs, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(gs, xs)
	extensionservice.RegisterExtensionConfigDiscoveryServiceServer(gs, xs)

	serveErr := make(chan error, 1)
	go func() { serveErr <- gs.Serve(lis) }()
	s.logger.Info("xds server listening", "addr", lis.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("xds: serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		gs.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(gracefulStopTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		gs.Stop()
		<-stopped
	}
	if err := <-serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("xds: serve: %w", err)
	}
	return nil
}

// Version hashes the deterministic serialization of res, in a fixed type and
// resource order, so the version changes exactly when the content does (field
// notes: serialize deterministically, or every rebuild looks like a change).
func Version(res map[resource.Type][]types.Resource) (string, error) {
	h := sha256.New()
	typeURLs := make([]string, 0, len(res))
	for t := range res {
		typeURLs = append(typeURLs, t)
	}
	slices.Sort(typeURLs)
	opts := proto.MarshalOptions{Deterministic: true}
	var n [8]byte
	for _, t := range typeURLs {
		binary.BigEndian.PutUint64(n[:], uint64(len(t)))
		h.Write(n[:])
		h.Write([]byte(t))
		for _, r := range res[t] {
			b, err := opts.Marshal(r)
			if err != nil {
				return "", fmt.Errorf("xds: marshal %T: %w", r, err)
			}
			binary.BigEndian.PutUint64(n[:], uint64(len(b)))
			h.Write(n[:])
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12]), nil
}

// slogAdapter routes go-control-plane's printf logging into slog. Its debug
// output is per-request chatter, so it goes to Debug.
func slogAdapter(l *slog.Logger) log.Logger {
	return log.LoggerFuncs{
		DebugFunc: func(f string, a ...any) {
			if l.Enabled(context.Background(), slog.LevelDebug) {
				l.Debug(fmt.Sprintf(f, a...), "component", "go-control-plane")
			}
		},
		InfoFunc:  func(f string, a ...any) { l.Info(fmt.Sprintf(f, a...), "component", "go-control-plane") },
		WarnFunc:  func(f string, a ...any) { l.Warn(fmt.Sprintf(f, a...), "component", "go-control-plane") },
		ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...), "component", "go-control-plane") },
	}
}
