package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"

	"strings"
	"sync"
	"sync/atomic"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluice-gateway/sluice/internal/config"
)

// Client defaults.
const (
	defaultMinBackoff     = 100 * time.Millisecond
	defaultMaxBackoff     = 10 * time.Second
	defaultMaxMessageSize = 256 << 20 // a kind's initial state is one response
)

// ClientConfig configures a [Client].
type ClientConfig struct {
	// Addr is the fleet server: host:port, or unix:/path. Required.
	Addr string
	// Token is sent as "authorization: Bearer <token>" when set.
	Token string
	// NodeID identifies the replica in the server's logs, e.g. "extproc-<hostname>-<pid>".
	NodeID string
	// Kinds are subscribed with the wildcard: the replica holds every document of these.
	// At least one is required.
	Kinds []config.Kind
	// StateFile, if set, is where the last delivered snapshot is persisted (bootstrap mode)
	// and loaded from at start. One file per replica.
	StateFile string
	// Logger defaults to discarding.
	Logger *slog.Logger
	// OnSnapshot receives each new complete snapshot, sequentially: first the one from
	// StateFile if there is one, then one after each applied server update. It should be
	// quick (compile and publish); it delays the ACK. Snapshots are immutable.
	OnSnapshot func(*config.Snapshot)
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 100 ms and 10 s); it
	// doubles per failed attempt, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// MaxMessageSize bounds one response (default 256 MiB).
	MaxMessageSize int
}

// Client keeps a replica's copy of the configuration in sync with the fleet server.
type Client struct {
	// Immutable after NewClient.
	cfg     ClientConfig
	logger  *slog.Logger
	target  string
	wild    map[config.Kind]bool
	ready   chan struct{}
	running atomic.Bool
	snap    atomic.Pointer[config.Snapshot]
	stats   clientCounters

	// Owned by the Run goroutine.
	docs      map[config.Kind]map[string]entry
	published map[config.Kind]map[string]json.RawMessage // per kind, shared by snapshots
	dirty     map[config.Kind]bool
	sysRev    int64
	delivered bool

	mu      sync.Mutex // guards sess and lookups
	sess    *session   // the live stream, nil while disconnected
	lookups map[lookupKey]*lookupCall
}

type entry struct {
	version string
	doc     json.RawMessage
}

type lookupKey struct {
	kind config.Kind
	name string
}

// lookupCall is one in-flight lookup, shared by concurrent callers of the same name.
type lookupCall struct {
	done    chan struct{}
	waiters int
	doc     json.RawMessage
	found   bool
	err     error
}

// session is one stream. Sends are serialised by sendMu (Run's ACKs, Lookup's subscribes).
type session struct {
	sendMu sync.Mutex
	gs     discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
}

func (s *session) send(req *discovery.DeltaDiscoveryRequest) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.gs.Send(req)
}

// NewClient returns a Client; nothing happens until Run.
func NewClient(cfg ClientConfig) (*Client, error) {
	var errs []error
	if cfg.Addr == "" {
		errs = append(errs, errors.New("fleet: ClientConfig.Addr is required"))
	}
	if len(cfg.Kinds) == 0 {
		errs = append(errs, errors.New("fleet: ClientConfig.Kinds is empty"))
	}
	c := &Client{
		cfg: cfg, logger: cfg.Logger, target: cfg.Addr, wild: map[config.Kind]bool{},
		ready: make(chan struct{}), docs: map[config.Kind]map[string]entry{},
		published: map[config.Kind]map[string]json.RawMessage{}, dirty: map[config.Kind]bool{},
		lookups: map[lookupKey]*lookupCall{},
	}
	for _, k := range cfg.Kinds {
		if !k.Valid() {
			errs = append(errs, fmt.Errorf("fleet: unknown kind %q", k))
		}
		c.wild[k] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.cfg.MinBackoff <= 0 {
		c.cfg.MinBackoff = defaultMinBackoff
	}
	if c.cfg.MaxBackoff <= 0 {
		c.cfg.MaxBackoff = defaultMaxBackoff
	}
	c.cfg.MaxBackoff = max(c.cfg.MaxBackoff, c.cfg.MinBackoff)
	if c.cfg.MaxMessageSize <= 0 {
		c.cfg.MaxMessageSize = defaultMaxMessageSize
	}
	if c.cfg.OnSnapshot == nil {
		c.cfg.OnSnapshot = func(*config.Snapshot) {}
	}
	if !strings.HasPrefix(c.target, "unix:") {
		c.target = "passthrough:///" + c.target
	}
	return c, nil
}

// Ready is closed once a snapshot (from the state file or the server) has been delivered.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Snapshot returns the last delivered snapshot, or nil before the first.
func (c *Client) Snapshot() *config.Snapshot { return c.snap.Load() }

// Run delivers the state file's snapshot, if any, then keeps a stream to the server,
// reconnecting with capped exponential backoff and jitter, until ctx ends (it then returns
// nil). Run may be called once.
func (c *Client) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("fleet: Client.Run called twice")
	}
	c.loadState()
	backoff := c.cfg.MinBackoff
	for {
		progressed, err := c.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		c.stats.disconnects.Add(1)
		if progressed {
			backoff = c.cfg.MinBackoff
		}
		// Equal jitter: somewhere in [backoff/2, backoff).
		delay := backoff/2 + rand.N(backoff/2+1)
		switch code := status.Code(err); code {
		case codes.Unauthenticated, codes.PermissionDenied:
			c.stats.authFailures.Add(1)
			c.logger.Error("fleet: control plane refused the stream; check the fleet token",
				"addr", c.cfg.Addr, "code", code.String(), "retry_in", delay)
		default:
			c.logger.Warn("fleet: control plane stream lost; serving the last snapshot",
				"addr", c.cfg.Addr, "error", err, "retry_in", delay)
		}
		backoff = min(backoff*2, c.cfg.MaxBackoff)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// session runs one stream until it fails or ctx ends; progressed reports whether the
// server sent anything (the backoff then restarts from the minimum).
func (c *Client) session(ctx context.Context) (progressed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.cfg.Token != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+c.cfg.Token)
	}
	conn, err := grpc.NewClient(c.target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxMessageSize)))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	gs, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	sess := &session{gs: gs}

	// Publish the session and subscribe under sendMu, so that a concurrent Lookup's
	// request cannot become a kind's first request (which carries initial versions).
	sess.sendMu.Lock()
	c.mu.Lock()
	c.sess = sess
	pending := map[config.Kind][]string{}
	for k := range c.lookups {
		pending[k.kind] = append(pending[k.kind], k.name)
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.sess = nil
		c.mu.Unlock()
	}()
	err = c.subscribe(gs, pending)
	sess.sendMu.Unlock()
	if err != nil {
		return false, err
	}

	// Until a first snapshot is delivered, wait for every wildcard kind's initial state.
	initial := map[config.Kind]bool{}
	for _, k := range c.cfg.Kinds {
		initial[k] = true
	}
	for {
		resp, err := gs.Recv()
		if err != nil {
			return progressed, err
		}
		if !progressed {
			progressed = true
			c.stats.connects.Add(1)
			c.logger.Info("fleet: connected to the control plane", "addr", c.cfg.Addr)
		}
		if err := c.handleResponse(sess, resp, initial); err != nil {
			return progressed, err
		}
	}
}

// subscribe sends each kind's first request: the wildcard (or, for kinds the client only
// holds through lookups, their ids), with the versions held and any pending lookups.
func (c *Client) subscribe(gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient, pending map[config.Kind][]string) error {
	node := &core.Node{Id: c.cfg.NodeID}
	var kinds []config.Kind
	for _, k := range config.Kinds() {
		if c.wild[k] || len(c.docs[k]) > 0 || len(pending[k]) > 0 {
			kinds = append(kinds, k)
		}
	}
	for _, k := range kinds {
		req := &discovery.DeltaDiscoveryRequest{Node: node, TypeUrl: TypeURL(k)}
		if c.wild[k] {
			req.ResourceNamesSubscribe = []string{Wildcard}
		}
		if docs := c.docs[k]; len(docs) > 0 {
			req.InitialResourceVersions = make(map[string]string, len(docs))
			for id, e := range docs {
				req.InitialResourceVersions[id] = e.version
				if !c.wild[k] {
					req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, id)
				}
			}
		}
		req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, pending[k]...)
		if err := gs.Send(req); err != nil {
			return err
		}
	}
	return nil
}

// handleResponse applies one response (or NACKs it), delivers the new snapshot, resolves
// lookups, ACKs and persists.
func (c *Client) handleResponse(sess *session, resp *discovery.DeltaDiscoveryResponse, initial map[config.Kind]bool) error {
	start := time.Now()
	c.stats.responses.Add(1)
	kind, ok := kindOf(resp.GetTypeUrl())
	var bad error
	if !ok {
		bad = fmt.Errorf("unknown type %q", resp.GetTypeUrl())
	}
	docs := make([]json.RawMessage, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		if bad != nil {
			break
		}
		docs[i], bad = decodeResource(r)
	}
	if bad != nil {
		c.stats.nacks.Add(1)
		c.logger.Warn("fleet: rejected an update (NACK)", "type", resp.GetTypeUrl(), "error", bad)
		for _, r := range resp.GetResources() {
			for _, a := range r.GetAliases() {
				c.finishLookup(lookupKey{kind, a}, nil, false, fmt.Errorf("fleet: lookup answer rejected: %w", bad))
			}
		}
		return sess.send(&discovery.DeltaDiscoveryRequest{
			TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce(),
			ErrorDetail: status.New(codes.InvalidArgument, bad.Error()).Proto(),
		})
	}

	m := c.docs[kind]
	if m == nil {
		m = map[string]entry{}
		c.docs[kind] = m
	}
	changed := false
	for i, r := range resp.GetResources() {
		old, ok := m[r.GetName()]
		if !ok || old.version != r.GetVersion() || string(old.doc) != string(docs[i]) {
			m[r.GetName()] = entry{version: r.GetVersion(), doc: docs[i]}
			changed = true
		}
	}
	c.stats.resources.Add(uint64(len(docs)))
	var misses []string
	for _, name := range resp.GetRemovedResources() {
		if _, _, isIndex := parseIndexName(name); isIndex {
			misses = append(misses, name)
			continue
		}
		c.stats.removals.Add(1)
		if _, ok := m[name]; ok {
			delete(m, name)
			changed = true
		}
	}
	c.sysRev = max(c.sysRev, parseVersion(resp.GetSystemVersionInfo()))
	if changed {
		c.dirty[kind] = true
	}
	delete(initial, kind)
	deliver := (changed && c.delivered) || (!c.delivered && len(initial) == 0)
	if deliver {
		c.deliver()
		c.stats.lastUpdateLag.Store(int64(time.Since(start)))
	}

	for i, r := range resp.GetResources() {
		for _, a := range r.GetAliases() {
			c.finishLookup(lookupKey{kind, a}, docs[i], true, nil)
		}
	}
	for _, name := range misses {
		c.stats.lookupMisses.Add(1)
		c.finishLookup(lookupKey{kind, name}, nil, false, nil)
	}
	if err := sess.send(&discovery.DeltaDiscoveryRequest{TypeUrl: resp.GetTypeUrl(), ResponseNonce: resp.GetNonce()}); err != nil {
		return err
	}
	c.stats.acks.Add(1)
	if deliver {
		c.persist()
	}
	return nil
}

// deliver builds the snapshot from what the client holds and hands it to OnSnapshot.
func (c *Client) deliver() {
	res := make(map[config.Kind]map[string]json.RawMessage, len(c.docs))
	for kind, docs := range c.docs {
		p, ok := c.published[kind]
		if !ok || c.dirty[kind] {
			p = make(map[string]json.RawMessage, len(docs))
			for id, e := range docs {
				p[id] = e.doc
			}
			c.published[kind] = p
		}
		res[kind] = p
	}
	clear(c.dirty)
	snap := &config.Snapshot{Version: version(c.sysRev), Resources: res}
	c.snap.Store(snap)
	c.stats.snapshots.Add(1)
	c.cfg.OnSnapshot(snap)
	if !c.delivered {
		c.delivered = true
		close(c.ready)
	}
}

// persist writes the state file; a failure is logged and counted, not fatal.
func (c *Client) persist() {
	if c.cfg.StateFile == "" {
		return
	}
	st := &stateFile{Format: stateFormat, Snapshot: c.snap.Load(), Versions: map[config.Kind]map[string]string{}}
	for kind, docs := range c.docs {
		v := make(map[string]string, len(docs))
		for id, e := range docs {
			v[id] = e.version
		}
		st.Versions[kind] = v
	}
	if err := saveState(c.cfg.StateFile, st); err != nil {
		c.stats.stateErrors.Add(1)
		c.logger.Error("fleet: persist state file", "path", c.cfg.StateFile, "error", err)
		return
	}
	c.stats.stateWrites.Add(1)
}

// loadState delivers the state file's snapshot, if there is a readable one.
func (c *Client) loadState() {
	if c.cfg.StateFile == "" {
		return
	}
	st, err := loadState(c.cfg.StateFile)
	if err != nil {
		c.logger.Warn("fleet: ignoring unreadable state file; waiting for the control plane",
			"path", c.cfg.StateFile, "error", err)
		return
	}
	if st == nil {
		return
	}
	n := 0
	for kind, docs := range st.Snapshot.Resources {
		m := make(map[string]entry, len(docs))
		for id, doc := range docs {
			m[id] = entry{version: st.Versions[kind][id], doc: doc}
		}
		c.docs[kind] = m
		c.dirty[kind] = true
		n += len(m)
	}
	c.sysRev = parseVersion(st.Snapshot.Version)
	c.logger.Info("fleet: serving the snapshot from the state file until the control plane answers",
		"path", c.cfg.StateFile, "version", st.Snapshot.Version, "documents", n)
	c.deliver()
}

// Lookup resolves the index entry (indexName, indexKey) of kind on the server, for
// something this replica has not seen. found is false, quickly, when nothing owns the
// entry. The document is also merged into the snapshot (OnSnapshot runs before Lookup
// returns, except before the first complete snapshot, which will then include it) and
// stays subscribed. Lookup fails at once with ErrNotConnected while there is no stream,
// and otherwise waits at most until ctx ends. Concurrent lookups of one entry share one
// request. The returned document is the caller's.
func (c *Client) Lookup(ctx context.Context, kind config.Kind, indexName, indexKey string) (json.RawMessage, bool, error) {
	if !kind.Valid() {
		return nil, false, fmt.Errorf("fleet: unknown kind %q", kind)
	}
	if indexName == "" || strings.ContainsAny(indexName, ": ") || indexKey == "" {
		return nil, false, errors.New("fleet: invalid index name or key")
	}
	c.stats.lookups.Add(1)
	key := lookupKey{kind, IndexName(indexName, indexKey)}
	c.mu.Lock()
	sess := c.sess
	if sess == nil {
		c.mu.Unlock()
		return nil, false, ErrNotConnected
	}
	call, inflight := c.lookups[key]
	if !inflight {
		call = &lookupCall{done: make(chan struct{})}
		c.lookups[key] = call
	}
	call.waiters++
	c.mu.Unlock()

	if !inflight {
		err := sess.send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(kind), ResourceNamesSubscribe: []string{key.name}})
		if err != nil {
			c.finishLookup(key, nil, false, fmt.Errorf("fleet: lookup: %w", err))
		}
	}
	select {
	case <-call.done:
		return call.doc, call.found, call.err
	case <-ctx.Done():
		c.mu.Lock()
		if call.waiters--; call.waiters == 0 && c.lookups[key] == call {
			delete(c.lookups, key)
		}
		c.mu.Unlock()
		return nil, false, ctx.Err()
	}
}

// finishLookup answers the in-flight lookup key, if any.
func (c *Client) finishLookup(key lookupKey, doc json.RawMessage, found bool, err error) {
	c.mu.Lock()
	call, ok := c.lookups[key]
	if ok {
		delete(c.lookups, key)
	}
	c.mu.Unlock()
	if ok {
		call.doc, call.found, call.err = bytes.Clone(doc), found, err
		close(call.done)
	}
}
