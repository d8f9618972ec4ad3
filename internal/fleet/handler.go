package fleet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// handler is the sending side of one stream. Only the stream's handler goroutine uses it.
type handler struct {
	s     *Server
	st    *stream
	gs    discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
	log   *slog.Logger
	node  string
	types map[config.Kind]*typeState
}

// typeState is one subscribed kind on one stream.
type typeState struct {
	wildcard bool
	names    map[string]struct{} // ids subscribed by name (beyond the wildcard)
	// known is what the client holds: the versions it declared in initial_resource_versions
	// and those sent since (ACKed or NACKed: a NACKed version is not sent again).
	known map[string]int64
	nonce string // of the last response; ACKs and NACKs of other nonces are stale
}

func (ts *typeState) wants(id string) bool {
	if ts.wildcard {
		return true
	}
	_, ok := ts.names[id]
	return ok
}

// batch accumulates one response.
type batch struct {
	kind    config.Kind
	res     map[string]*discovery.Resource
	order   []string
	removed []string
	sysRev  int64
	oldest  time.Time // earliest change included, for push lag
}

func newBatch(kind config.Kind) *batch {
	return &batch{kind: kind, res: map[string]*discovery.Resource{}}
}

func (b *batch) empty() bool { return len(b.order) == 0 && len(b.removed) == 0 }

func (b *batch) add(id string, rev int64, doc []byte, alias string) error {
	if r, ok := b.res[id]; ok {
		if alias != "" {
			r.Aliases = append(r.Aliases, alias)
		}
		return nil
	}
	var aliases []string
	if alias != "" {
		aliases = []string{alias}
	}
	r, err := encodeResource(id, rev, doc, aliases...)
	if err != nil {
		return err
	}
	b.res[id] = r
	b.order = append(b.order, id)
	b.sysRev = max(b.sysRev, rev)
	return nil
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// handleRequest processes one DeltaDiscoveryRequest: ACK/NACK bookkeeping, subscription
// changes, and the responses they call for (initial state, named resources, lookups).
func (h *handler) handleRequest(ctx context.Context, req *discovery.DeltaDiscoveryRequest) error {
	if h.node == "" && req.GetNode().GetId() != "" {
		h.node = req.GetNode().GetId()
		h.log = h.log.With("node", h.node)
		h.log.Debug("fleet: stream opened")
	}
	kind, ok := kindOf(req.GetTypeUrl())
	if !ok {
		h.log.Warn("fleet: request for an unknown type ignored", "type", req.GetTypeUrl())
		return nil
	}
	ts := h.types[kind]
	if nonce := req.GetResponseNonce(); nonce != "" {
		switch {
		case ts == nil || nonce != ts.nonce:
			h.s.stats.staleAcks.Add(1)
		case req.GetErrorDetail() != nil:
			h.s.stats.nacks.Add(1)
			h.log.Warn("fleet: replica rejected an update (NACK)", "kind", kind,
				"nonce", nonce, "error", req.GetErrorDetail().GetMessage())
		default:
			h.s.stats.acks.Add(1)
		}
	}
	first := ts == nil
	if first {
		ts = &typeState{names: map[string]struct{}{}, known: map[string]int64{}}
		for name, v := range req.GetInitialResourceVersions() {
			ts.known[name] = parseVersion(v)
		}
		// Legacy delta xDS: a first request naming nothing is a wildcard subscription.
		ts.wildcard = len(req.GetResourceNamesSubscribe()) == 0
		h.types[kind] = ts
	}
	full := first && ts.wildcard
	var ids, lookups []string
	for _, n := range req.GetResourceNamesSubscribe() {
		switch _, _, isIndex := parseIndexName(n); {
		case n == Wildcard:
			full = full || first || !ts.wildcard
			ts.wildcard = true
		case isIndex:
			lookups = append(lookups, n)
		default:
			if _, ok := ts.names[n]; !ok || first {
				ts.names[n] = struct{}{}
				ids = append(ids, n)
			}
		}
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		if n == Wildcard {
			ts.wildcard = false
			continue
		}
		delete(ts.names, n)
		if !ts.wildcard {
			delete(ts.known, n)
		}
	}

	b := newBatch(kind)
	if full {
		if err := h.fullState(ctx, ts, b); err != nil {
			return err
		}
	}
	for _, id := range ids {
		if err := h.named(ctx, ts, b, id); err != nil {
			return err
		}
	}
	for _, n := range lookups {
		h.lookup(ctx, ts, b, n)
	}
	if full || !b.empty() {
		return h.send(ts, b)
	}
	return nil
}

// fullState adds to b every difference between the store and what the client holds.
func (h *handler) fullState(ctx context.Context, ts *typeState, b *batch) error {
	rev, err := h.s.store.Revision(ctx)
	if err != nil {
		return fmt.Errorf("fleet: store revision: %w", err)
	}
	docs, err := h.s.store.List(ctx, b.kind)
	if err != nil {
		return fmt.Errorf("fleet: list %s: %w", b.kind, err)
	}
	b.sysRev = max(b.sysRev, rev)
	present := make(map[string]struct{}, len(docs))
	for _, d := range docs {
		if !ts.wants(d.ID) {
			continue
		}
		present[d.ID] = struct{}{}
		if have, ok := ts.known[d.ID]; ok && have == d.Revision {
			continue
		}
		if err := b.add(d.ID, d.Revision, d.Value, ""); err != nil {
			return err
		}
		ts.known[d.ID] = d.Revision
	}
	for id := range ts.known {
		if _, ok := present[id]; !ok && ts.wants(id) {
			b.removed = append(b.removed, id)
			delete(ts.known, id)
		}
	}
	return nil
}

// named adds a resource subscribed by id, if the client lacks its current version.
func (h *handler) named(ctx context.Context, ts *typeState, b *batch, id string) error {
	d, err := h.s.store.Get(ctx, b.kind, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if _, ok := ts.known[id]; ok {
			b.removed = append(b.removed, id)
			delete(ts.known, id)
		}
		return nil
	case err != nil:
		return fmt.Errorf("fleet: get %s %s: %w", b.kind, id, err)
	}
	if have, ok := ts.known[id]; ok && have == d.Revision {
		return nil
	}
	ts.known[id] = d.Revision
	return b.add(id, d.Revision, d.Value, "")
}

// lookup resolves an "index:<name>:<key>" query: the document, aliased by the query, or
// the query in removed_resources when nothing owns the entry. A store error is logged and
// left unanswered (the client's deadline bounds it).
func (h *handler) lookup(ctx context.Context, ts *typeState, b *batch, query string) {
	h.s.stats.lookups.Add(1)
	name, key, _ := parseIndexName(query)
	if !lookupAllowed(b.kind, name) {
		// Answered as not found: a replica learns nothing from an index it may not use.
		h.s.stats.lookupMisses.Add(1)
		b.removed = append(b.removed, query)
		return
	}
	id, err := h.s.store.Index(ctx, name, key)
	var d store.Doc
	if err == nil {
		d, err = h.s.store.Get(ctx, b.kind, id)
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.s.stats.lookupMisses.Add(1)
		b.removed = append(b.removed, query)
		return
	case err != nil:
		h.log.Warn("fleet: lookup failed", "kind", b.kind, "index", name, "error", err)
		return
	}
	if !ts.wildcard {
		ts.names[id] = struct{}{}
	}
	ts.known[id] = max(ts.known[id], d.Revision)
	if err := b.add(id, d.Revision, d.Value, query); err != nil {
		h.log.Warn("fleet: encode lookup result", "kind", b.kind, "error", err)
	}
}

// flush sends what the fan-out queued: a full resync of every subscribed kind if the queue
// overflowed or the store asked for it, else the pending changes the client lacks.
func (h *handler) flush(ctx context.Context) error {
	pending, resync := h.st.take()
	if resync {
		h.s.stats.resyncs.Add(1)
		for kind, ts := range h.types {
			b := newBatch(kind)
			if err := h.fullState(ctx, ts, b); err != nil {
				return err
			}
			if !b.empty() {
				if err := h.send(ts, b); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for kind, changes := range pending {
		ts := h.types[kind]
		if ts == nil {
			continue
		}
		b := newBatch(kind)
		for id, c := range changes {
			if !ts.wants(id) {
				continue
			}
			have, ok := ts.known[id]
			switch {
			case c.deleted:
				if !ok || have >= c.rev {
					continue
				}
				b.removed = append(b.removed, id)
				b.sysRev = max(b.sysRev, c.rev)
				delete(ts.known, id)
			case ok && have >= c.rev:
				continue
			default:
				if err := b.add(id, c.rev, c.value, ""); err != nil {
					return err
				}
				ts.known[id] = c.rev
			}
			if b.oldest.IsZero() || c.at.Before(b.oldest) {
				b.oldest = c.at
			}
		}
		if !b.empty() {
			if err := h.send(ts, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// send sends b as one response with a fresh nonce.
func (h *handler) send(ts *typeState, b *batch) error {
	resp := &discovery.DeltaDiscoveryResponse{
		TypeUrl:           TypeURL(b.kind),
		SystemVersionInfo: version(b.sysRev),
		RemovedResources:  b.removed,
		Nonce:             fmt.Sprintf("%d", h.s.nonce.Add(1)),
	}
	for _, id := range b.order {
		resp.Resources = append(resp.Resources, b.res[id])
	}
	ts.nonce = resp.Nonce
	if err := h.gs.Send(resp); err != nil {
		return err
	}
	h.s.stats.pushes.Add(1)
	h.s.stats.resources.Add(uint64(len(resp.Resources)))
	h.s.stats.removals.Add(uint64(len(resp.RemovedResources)))
	if !b.oldest.IsZero() {
		h.s.stats.observeLag(time.Since(b.oldest))
	}
	return nil
}
