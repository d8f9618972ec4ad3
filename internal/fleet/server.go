package fleet

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// defaultMaxPending bounds the changes (distinct documents) queued for one stream; past it
// the queue is dropped and the stream does a full resync instead.
const defaultMaxPending = 4096

// ServerConfig configures a [Server].
type ServerConfig struct {
	// Store is the source of truth. Required.
	Store store.Store
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Token, if set, is the bearer token every stream must present in the gRPC metadata
	// "authorization" ("Bearer <token>").
	Token string
}

// Server serves the fleet's delta xDS streams. Register it on a gRPC server, then call Run;
// streams opened before Run has its store watch wait for it, and end (Unavailable) when Run
// returns. A Server runs once.
type Server struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer

	// Immutable after NewServer.
	store      store.Store
	logger     *slog.Logger
	tokenHash  [sha256.Size]byte
	hasToken   bool
	maxPending int
	started    chan struct{} // closed once Run watches the store
	stopped    chan struct{} // closed when Run returns

	running  atomic.Bool
	streamID atomic.Int64
	nonce    atomic.Uint64
	stats    serverCounters

	mu      sync.Mutex // guards streams
	streams map[*stream]struct{}
}

var _ discovery.AggregatedDiscoveryServiceServer = (*Server)(nil)

// NewServer returns a Server over cfg.Store.
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("fleet: ServerConfig.Store is required")
	}
	s := &Server{
		store:      cfg.Store,
		logger:     cfg.Logger,
		started:    make(chan struct{}),
		stopped:    make(chan struct{}),
		streams:    map[*stream]struct{}{},
		maxPending: defaultMaxPending,
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Token != "" {
		s.tokenHash, s.hasToken = sha256.Sum256([]byte(cfg.Token)), true
	}
	return s, nil
}

// Register registers the AggregatedDiscoveryService on g, which should be dedicated to the
// fleet (Envoy's ADS lives on another listener) and built with [ServerOptions]: clients
// send keepalive pings every 30 s, which grpc-go's default enforcement (5 min) punishes by
// closing the connection.
func (s *Server) Register(g *grpc.Server) { discovery.RegisterAggregatedDiscoveryServiceServer(g, s) }

// ServerOptions are the gRPC server options the fleet listener should use: explicit
// keepalive (clients ping every 30 s; idle NAT mappings are kept) and stream limits.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(1 << 12),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
}

// Run owns the store watch and fans every change out to the connected streams. It returns
// nil when ctx ends, or an error if the watch cannot start or the store closes it.
func (s *Server) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Server.Run called twice")
	}
	defer close(s.stopped)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, err := s.store.Watch(wctx)
	if err != nil {
		return fmt.Errorf("fleet: watch store: %w", err)
	}
	close(s.started)
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("fleet: store watch closed")
			}
			s.dispatch(ctx, ev)
		}
	}
}

// change is one document's new state, queued for a stream.
type change struct {
	rev     int64
	value   []byte // nil when deleted
	deleted bool
	at      time.Time // when the server learned of it (push lag is measured from here)
}

// dispatch turns a store event into a change and queues it on every stream. It never blocks
// on a stream.
func (s *Server) dispatch(ctx context.Context, ev store.Event) {
	streams := s.snapshotStreams()
	if ev.Resync {
		s.logger.Info("fleet: store watch resync; resynchronising every stream", "streams", len(streams))
		for _, st := range streams {
			st.markResync()
		}
		return
	}
	if len(streams) == 0 {
		return // a stream that opens later Lists the kind
	}
	c := change{rev: ev.Revision, deleted: ev.Deleted, at: time.Now()}
	if !ev.Deleted {
		doc, err := s.store.Get(ctx, ev.Kind, ev.ID)
		switch {
		case err == nil:
			c.rev, c.value = doc.Revision, doc.Value
		case errors.Is(err, store.ErrNotFound):
			c.deleted = true // deleted since; its own event follows
		default:
			s.logger.Warn("fleet: read changed document; resynchronising every stream",
				"kind", ev.Kind, "id", ev.ID, "error", err)
			for _, st := range streams {
				st.markResync()
			}
			return
		}
	}
	for _, st := range streams {
		st.enqueue(ev.Kind, ev.ID, c, s.maxPending, &s.stats)
	}
}

func (s *Server) snapshotStreams() []*stream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*stream, 0, len(s.streams))
	for st := range s.streams {
		out = append(out, st)
	}
	return out
}

// stream is the fan-out side of one connected client: the changes waiting to be sent.
type stream struct {
	id     int64
	notify chan struct{} // cap 1: "pending changed"

	mu       sync.Mutex // guards the fields below
	pending  map[config.Kind]map[string]change
	npending int
	resync   bool
}

func (st *stream) wake() {
	select {
	case st.notify <- struct{}{}:
	default:
	}
}

func (st *stream) markResync() {
	st.mu.Lock()
	st.pending, st.npending, st.resync = nil, 0, true
	st.mu.Unlock()
	st.wake()
}

// enqueue coalesces c with what is already pending for (kind, id), keeping the newer.
func (st *stream) enqueue(kind config.Kind, id string, c change, limit int, stats *serverCounters) {
	st.mu.Lock()
	switch {
	case st.resync:
		// The coming resync reads the store after this change committed.
	default:
		m := st.pending[kind]
		old, ok := m[id]
		switch {
		case ok && old.rev > c.rev:
		case ok:
			c.at = old.at // lag counts from the first unsent change
			m[id] = c
		case st.npending >= limit:
			st.pending, st.npending, st.resync = nil, 0, true
			stats.overflows.Add(1)
		default:
			if st.pending == nil {
				st.pending = map[config.Kind]map[string]change{}
			}
			if m == nil {
				m = map[string]change{}
				st.pending[kind] = m
			}
			m[id] = c
			st.npending++
		}
	}
	st.mu.Unlock()
	st.wake()
}

// take returns and clears what is pending.
func (st *stream) take() (map[config.Kind]map[string]change, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	p, r := st.pending, st.resync
	st.pending, st.npending, st.resync = nil, 0, false
	return p, r
}

// DeltaAggregatedResources implements [discovery.AggregatedDiscoveryServiceServer]: one
// client's stream, until the client leaves, the stream breaks or Run returns.
func (s *Server) DeltaAggregatedResources(gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ctx := gs.Context()
	if err := s.authorize(ctx); err != nil {
		return err
	}
	select {
	case <-s.started:
	case <-s.stopped:
		return status.Error(codes.Unavailable, "fleet: server stopped")
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	st := &stream{id: s.streamID.Add(1), notify: make(chan struct{}, 1)}
	// Register before the first List, so no change committed after it is missed.
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
	s.stats.streams.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.streams, st)
		s.mu.Unlock()
		s.stats.streams.Add(-1)
	}()

	// The receiver exits when the stream ends, which gRPC makes happen as soon as this
	// handler returns (the stream's context is cancelled and Recv fails).
	reqs := make(chan *discovery.DeltaDiscoveryRequest)
	recvErr := make(chan error, 1)
	go func() {
		for {
			req, err := gs.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- req:
			case <-ctx.Done():
				return
			}
		}
	}()

	h := &handler{s: s, st: st, gs: gs, types: map[config.Kind]*typeState{}}
	h.log = s.logger.With("stream", st.id)
	defer func() { h.log.Debug("fleet: stream closed", "node", h.node) }()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopped:
			return status.Error(codes.Unavailable, "fleet: server stopping")
		case err := <-recvErr:
			if errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled {
				return nil
			}
			return ignoreEOF(err)
		case req := <-reqs:
			if err := h.handleRequest(ctx, req); err != nil {
				return err
			}
		case <-st.notify:
			if err := h.flush(ctx); err != nil {
				return err
			}
		}
	}
}

// authorize checks the bearer token, if one is configured.
func (s *Server) authorize(ctx context.Context) error {
	if !s.hasToken {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		h := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(h[:], s.tokenHash[:]) == 1 {
			return nil
		}
	}
	s.stats.authFailures.Add(1)
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	s.logger.Warn("fleet: stream refused: missing or wrong token", "peer", addr)
	return status.Error(codes.Unauthenticated, "fleet: missing or invalid token")
}
