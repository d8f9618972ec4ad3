package fleet

import (
	"context"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/xds/store"
)

// rawStream opens a bare delta xDS stream to srv.
func rawStream(t *testing.T, srv *testServer) discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient {
	t.Helper()
	conn, err := grpc.NewClient(srv.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	gs, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return gs
}

func recv(t *testing.T, gs discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient) *discovery.DeltaDiscoveryResponse {
	t.Helper()
	resp, err := gs.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func names(resp *discovery.DeltaDiscoveryResponse) map[string]string {
	m := map[string]string{}
	for _, r := range resp.GetResources() {
		m[r.GetName()] = r.GetVersion()
	}
	return m
}

// The wire protocol as another implementation would see it: initial versions honoured,
// NACKs counted and not resent, stale nonces ignored, index lookups answered by alias.
func TestProtocol(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	org := config.KindOrganization
	put(t, st, org, "a", `{"n":1}`) // rev 1
	put(t, st, org, "b", `{"n":2}`) // rev 2
	put(t, st, org, "c", `{"n":3}`) // rev 3
	vk := config.NewID(config.KindVirtualKey)
	putKey(t, st, vk, hashA, config.KeyActive) // rev 4
	srv := startServer(t, st, "tcp", "127.0.0.1:0", "", nil)
	gs := rawStream(t, srv)

	if err := gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(org), ResourceNamesSubscribe: []string{Wildcard},
		InitialResourceVersions: map[string]string{"a": "1", "b": "1", "gone": "2"}}); err != nil {
		t.Fatal(err)
	}
	first := recv(t, gs)
	if got := names(first); len(got) != 2 || got["b"] != "2" || got["c"] != "3" ||
		len(first.GetRemovedResources()) != 1 || first.GetRemovedResources()[0] != "gone" {
		t.Fatalf("initial response: resources %v, removed %v", got, first.GetRemovedResources())
	}
	if first.GetSystemVersionInfo() != "4" || first.GetNonce() == "" {
		t.Errorf("system version %q nonce %q", first.GetSystemVersionInfo(), first.GetNonce())
	}
	payload := first.GetResources()[0].GetResource()
	if payload.GetTypeUrl() != bytesValueURL {
		t.Errorf("payload type %q", payload.GetTypeUrl())
	}

	// NACK it; then a change is pushed, and what was NACKed is not resent.
	if err := gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(org), ResponseNonce: first.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "bad"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "NACK counted", func() bool { return srv.Stats().Nacks == 1 })
	put(t, st, org, "a", `{"n":10}`) // rev 5
	push := recv(t, gs)
	if got := names(push); len(got) != 1 || got["a"] != "5" || len(push.GetRemovedResources()) != 0 {
		t.Fatalf("push after NACK: %v removed %v", got, push.GetRemovedResources())
	}
	// A stale nonce is ignored; the current one is ACKed.
	gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(org), ResponseNonce: first.GetNonce()})
	gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(org), ResponseNonce: push.GetNonce()})
	waitUntil(t, "ACKs counted", func() bool { s := srv.Stats(); return s.StaleAcks == 1 && s.Acks == 1 })

	// A lookup on a type without wildcard: answered by id with the query as alias, then the
	// key (only it) stays subscribed.
	q := IndexName("vk_hash", hashA)
	miss := IndexName("vk_hash", hashB)
	gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeURL(config.KindVirtualKey), ResourceNamesSubscribe: []string{q, miss}})
	ans := recv(t, gs)
	if len(ans.GetResources()) != 1 || ans.GetResources()[0].GetName() != vk ||
		len(ans.GetResources()[0].GetAliases()) != 1 || ans.GetResources()[0].GetAliases()[0] != q ||
		len(ans.GetRemovedResources()) != 1 || ans.GetRemovedResources()[0] != miss {
		t.Fatalf("lookup answer = %v", ans)
	}
	putKey(t, st, config.NewID(config.KindVirtualKey), hashB, config.KeyActive) // not subscribed
	putKey(t, st, vk, hashA, config.KeyRevoked)
	upd := recv(t, gs)
	if got := names(upd); len(got) != 1 || got[vk] == "" || upd.GetTypeUrl() != TypeURL(config.KindVirtualKey) {
		t.Fatalf("update of the looked-up key = %v", upd)
	}
	// Unknown types are ignored, not fatal.
	gs.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: "type.googleapis.com/sluice.config.v1.nope"})
	if err := st.Delete(context.Background(), org, "b", 0); err != nil {
		t.Fatal(err)
	}
	if del := recv(t, gs); len(del.GetRemovedResources()) != 1 || del.GetRemovedResources()[0] != "b" {
		t.Fatalf("deletion = %v", del)
	}
}

// resyncStore hands the server a watch the test feeds, to simulate lost events.
type resyncStore struct {
	store.Store
	events chan store.Event
}

func (s *resyncStore) Watch(ctx context.Context) (<-chan store.Event, error) { return s.events, nil }

// After a store Resync (events were lost), every stream is diffed against the store.
func TestStoreResync(t *testing.T) {
	checkGoroutines(t)
	base := openStore(t)
	put(t, base, config.KindOrganization, "a", `{}`)
	put(t, base, config.KindOrganization, "b", `{}`)
	rs := &resyncStore{Store: base, events: make(chan store.Event, 1)}
	srv := startServer(t, rs, "tcp", "127.0.0.1:0", "", nil)
	c, r := startClient(t, ClientConfig{Addr: srv.addr, Kinds: dataKinds})
	r.waitFor(t, "initial", has(config.KindOrganization, "b"))
	before := c.Stats()

	// Writes whose events are lost.
	put(t, base, config.KindOrganization, "a", `{"v":2}`)
	put(t, base, config.KindTeam, "t", `{}`)
	if err := base.Delete(context.Background(), config.KindOrganization, "b", 0); err != nil {
		t.Fatal(err)
	}
	rs.events <- store.Event{Resync: true}
	r.waitFor(t, "resync", func(s *config.Snapshot) bool {
		return string(s.Resources[config.KindOrganization]["a"]) == `{"v":2}` && has(config.KindTeam, "t")(s) &&
			!has(config.KindOrganization, "b")(s)
	})
	if s := srv.Stats(); s.Resyncs != 1 {
		t.Errorf("server stats = %+v", s)
	}
	waitUntil(t, "counters", func() bool { return c.Stats().Removals-before.Removals == 1 })
	if got := c.Stats().Resources - before.Resources; got != 2 {
		t.Errorf("resync sent %d resources, want the 2 changed", got)
	}
}

// A stream's queue coalesces by document and overflows into a resync.
func TestStreamQueue(t *testing.T) {
	var stats serverCounters
	st := &stream{notify: make(chan struct{}, 1)}
	org := config.KindOrganization
	st.enqueue(org, "a", change{rev: 5, at: time.Unix(1, 0)}, defaultMaxPending, &stats)
	st.enqueue(org, "a", change{rev: 3, deleted: true}, defaultMaxPending, &stats) // older: dropped
	st.enqueue(org, "a", change{rev: 7, at: time.Unix(2, 0)}, defaultMaxPending, &stats)
	p, resync := st.take()
	if resync || len(p[org]) != 1 || p[org]["a"].rev != 7 || !p[org]["a"].at.Equal(time.Unix(1, 0)) {
		t.Fatalf("coalesced = %+v, %v", p, resync)
	}
	for i := range defaultMaxPending + 1 {
		st.enqueue(org, string(rune(i)), change{rev: int64(i + 1)}, defaultMaxPending, &stats)
	}
	p, resync = st.take()
	if !resync || p != nil || stats.overflows.Load() != 1 {
		t.Fatalf("overflow: pending %d, resync %v, overflows %d", len(p[org]), resync, stats.overflows.Load())
	}
	select {
	case <-st.notify:
	default:
		t.Error("no wake-up")
	}
}

// TestAPITokensNeverServed: a client holding the fleet token asks for the admin API's
// tokens and for another index; it gets neither.
func TestAPITokensNeverServed(t *testing.T) {
	if _, ok := kindOf(TypeURL(config.KindAPIToken)); ok {
		t.Fatal("api_token is a distributable kind")
	}
	if lookupAllowed(config.KindAPIToken, "api_token_hash") || lookupAllowed(config.KindVirtualKey, "api_token_hash") {
		t.Fatal("a lookup outside (virtual_key, vk_hash) is allowed")
	}
	if !lookupAllowed(config.KindVirtualKey, "vk_hash") {
		t.Fatal("the key lookup is not allowed")
	}
}
