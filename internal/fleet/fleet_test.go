package fleet

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
)

var (
	hashA = strings.Repeat("a", 64)
	hashB = strings.Repeat("b", 64)
)

// Two replicas get the initial snapshot; a revocation, a new document and a deletion reach
// both well within a second.
func TestLivePushToTwoClients(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	vk := config.NewID(config.KindVirtualKey)
	putKey(t, st, vk, hashA, config.KeyActive)
	put(t, st, config.KindOrganization, "acme", `{"id":"acme","name":"Acme"}`)
	srv := startServer(t, st, "tcp", "127.0.0.1:0", "", nil)

	var reps []*replica
	var clients []*Client
	for i := range 2 {
		c, r := startClient(t, ClientConfig{Addr: srv.addr, NodeID: "extproc-" + string(rune('a'+i)), Kinds: dataKinds})
		clients, reps = append(clients, c), append(reps, r)
	}
	for _, r := range reps {
		r.waitFor(t, "initial snapshot", func(s *config.Snapshot) bool {
			return keyStatus(s, vk) == config.KeyActive && s.Resources[config.KindOrganization]["acme"] != nil
		})
	}
	for _, c := range clients {
		<-c.Ready()
	}

	var worst time.Duration
	measure := func(what string, write func(), cond func(*config.Snapshot) bool) {
		t.Helper()
		t0 := time.Now()
		write()
		for i, r := range reps {
			d := r.waitFor(t, what, cond).Sub(t0)
			t.Logf("%s reached replica %d in %v", what, i, d)
			worst = max(worst, d)
			if d >= time.Second {
				t.Errorf("%s took %v to reach replica %d; want < 1s", what, d, i)
			}
		}
	}
	measure("revocation", func() { putKey(t, st, vk, hashA, config.KeyRevoked) },
		func(s *config.Snapshot) bool { return keyStatus(s, vk) == config.KeyRevoked })
	measure("new provider", func() { put(t, st, config.KindModelProvider, "mp_x", `{"id":"mp_x"}`) },
		has(config.KindModelProvider, "mp_x"))
	measure("deletion", func() {
		if err := st.Delete(context.Background(), config.KindOrganization, "acme", 0); err != nil {
			t.Fatal(err)
		}
	}, func(s *config.Snapshot) bool { return !has(config.KindOrganization, "acme")(s) })
	t.Logf("worst push latency: %v; server stats %+v", worst, srv.Stats())

	s := srv.Stats()
	if s.Streams != 2 || s.Nacks != 0 || s.Acks < 2*uint64(len(dataKinds)) || s.PushLagCount == 0 {
		t.Errorf("server stats = %+v", s)
	}
	if cs := clients[0].Stats(); cs.Connects != 1 || cs.Nacks != 0 || cs.Snapshots < 4 {
		t.Errorf("client stats = %+v", cs)
	}
	// Snapshot versions follow the store revision.
	rev, _ := st.Revision(context.Background())
	reps[0].waitFor(t, "latest version", func(s *config.Snapshot) bool { return s.Version == version(rev) })
}

// A replica that does not hold every key resolves one on demand, on a unix socket; the
// answer is merged and then kept up to date. An unknown key is answered fast.
func TestLookup(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	vk := config.NewID(config.KindVirtualKey)
	putKey(t, st, vk, hashA, config.KeyActive)
	sock := filepath.Join(t.TempDir(), "fleet.sock")
	srv := startServer(t, st, "unix", sock, "", nil)

	// A dispatcher-like replica: providers only.
	c, r := startClient(t, ClientConfig{Addr: srv.addr, NodeID: "dispatcher-1", Kinds: []config.Kind{config.KindModelProvider}})
	r.waitFor(t, "initial snapshot", func(*config.Snapshot) bool { return true })
	if r.snap.Resources[config.KindVirtualKey] != nil {
		t.Fatal("keys delivered without a subscription")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	doc, found, err := c.Lookup(ctx, config.KindVirtualKey, "vk_hash", hashA)
	if err != nil || !found {
		t.Fatalf("Lookup existing = %s, %v, %v", doc, found, err)
	}
	t.Logf("lookup hit in %v", time.Since(t0))
	var k config.VirtualKey
	if err := json.Unmarshal(doc, &k); err != nil || k.ID != vk {
		t.Fatalf("Lookup returned %s (%v)", doc, err)
	}
	if !has(config.KindVirtualKey, vk)(c.Snapshot()) {
		t.Fatal("looked-up key is not in the snapshot")
	}

	t0 = time.Now()
	_, found, err = c.Lookup(ctx, config.KindVirtualKey, "vk_hash", hashB)
	miss := time.Since(t0)
	if err != nil || found {
		t.Fatalf("Lookup missing: found=%v err=%v", found, err)
	}
	t.Logf("lookup miss in %v", miss)
	if miss > 100*time.Millisecond {
		t.Errorf("a miss took %v; want well under the 250 ms budget", miss)
	}

	// The looked-up key stays subscribed: its revocation is pushed.
	t0 = time.Now()
	putKey(t, st, vk, hashA, config.KeyRevoked)
	d := r.waitFor(t, "revocation of the looked-up key", func(s *config.Snapshot) bool {
		return keyStatus(s, vk) == config.KeyRevoked
	}).Sub(t0)
	t.Logf("revocation of a looked-up key pushed in %v", d)
	// Other keys are still not pushed to this replica.
	putKey(t, st, config.NewID(config.KindVirtualKey), hashB, config.KeyActive)
	put(t, st, config.KindModelProvider, "mp_sync", `{}`)
	r.waitFor(t, "provider", has(config.KindModelProvider, "mp_sync"))
	if n := len(c.Snapshot().Resources[config.KindVirtualKey]); n != 1 {
		t.Errorf("replica holds %d keys, want only the looked-up one", n)
	}
	if s := srv.Stats(); s.Lookups != 2 || s.LookupMisses != 1 {
		t.Errorf("server stats = %+v", s)
	}
	if s := c.Stats(); s.Lookups != 2 || s.LookupMisses != 1 {
		t.Errorf("client stats = %+v", s)
	}
	// Not connected: fails at once.
	srv.stop()
	waitUntil(t, "session end", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.sess == nil })
	if _, _, err := c.Lookup(ctx, config.KindVirtualKey, "vk_hash", hashA); err != ErrNotConnected {
		t.Errorf("Lookup while disconnected: %v", err)
	}
}

// With the server down, replicas keep their snapshot and a new one starts from its state
// file; when the server returns on the same address they resynchronise, receiving only
// what changed meanwhile.
func TestOutageBootstrapAndResync(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	vk := config.NewID(config.KindVirtualKey)
	putKey(t, st, vk, hashA, config.KeyActive)
	for _, id := range []string{"acme", "globex", "initech"} {
		put(t, st, config.KindOrganization, id, `{"id":"`+id+`","name":"x"}`)
	}
	srv := startServer(t, st, "tcp", "127.0.0.1:0", "", nil)
	addr := strings.TrimPrefix(srv.addr, "passthrough:///")
	dir := t.TempDir()
	state1 := filepath.Join(dir, "extproc-1.json")

	c1, r1 := startClient(t, ClientConfig{Addr: addr, Kinds: dataKinds, StateFile: state1})
	r1.waitFor(t, "initial snapshot", func(s *config.Snapshot) bool { return len(s.Resources[config.KindOrganization]) == 3 })
	put(t, st, config.KindBudget, "bg_1", `{"id":"bg_1"}`) // ensure a persisted update after the initial one
	r1.waitFor(t, "budget", has(config.KindBudget, "bg_1"))
	waitUntil(t, "state file written after the budget", func() bool { return c1.Stats().StateWrites >= c1.Stats().Snapshots })

	srv.stop()
	before := c1.Snapshot()

	// A restarted replica with no server: serves from its state file.
	b, err := os.ReadFile(state1)
	if err != nil {
		t.Fatal(err)
	}
	state2 := filepath.Join(dir, "extproc-2.json")
	if err := os.WriteFile(state2, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c2, r2 := startClient(t, ClientConfig{Addr: addr, Kinds: dataKinds, StateFile: state2})
	select {
	case <-c2.Ready():
	case <-time.After(2 * time.Second):
		t.Fatal("a replica with a state file is not ready without the server")
	}
	r2.waitFor(t, "state-file snapshot", func(*config.Snapshot) bool { return true })
	if got := c2.Snapshot(); keyStatus(got, vk) != config.KeyActive || len(got.Resources[config.KindOrganization]) != 3 ||
		!has(config.KindBudget, "bg_1")(got) {
		t.Fatalf("state-file snapshot = %+v", got)
	}

	// Changes while the fleet is disconnected.
	putKey(t, st, vk, hashA, config.KeyRevoked)
	if err := st.Delete(context.Background(), config.KindOrganization, "globex", 0); err != nil {
		t.Fatal(err)
	}
	if c1.Snapshot() != before || keyStatus(before, vk) != config.KeyActive {
		t.Fatal("replica 1 lost or changed its snapshot while the server was down")
	}
	stats1, stats2 := c1.Stats(), c2.Stats()

	// The server comes back on the same address.
	srv2 := startServer(t, st, "tcp", addr, "", nil)
	t0 := time.Now()
	for i, r := range []*replica{r1, r2} {
		at := r.waitFor(t, "resync", func(s *config.Snapshot) bool {
			return keyStatus(s, vk) == config.KeyRevoked && !has(config.KindOrganization, "globex")(s)
		})
		t.Logf("replica %d resynchronised %v after the restart", i+1, at.Sub(t0))
	}
	for i, pair := range [][2]ClientStats{{stats1, c1.Stats()}, {stats2, c2.Stats()}} {
		res, rem := pair[1].Resources-pair[0].Resources, pair[1].Removals-pair[0].Removals
		if res != 1 || rem != 1 {
			t.Errorf("replica %d received %d resources and %d removals on resync; want only the 1 change and 1 deletion", i+1, res, rem)
		}
		if pair[1].Connects < pair[0].Connects+1 {
			t.Errorf("replica %d did not reconnect: %+v", i+1, pair[1])
		}
	}
	if s := srv2.Stats(); s.Resources != 2 || s.Removals != 2 {
		t.Errorf("restarted server sent %d resources, %d removals; want 2 and 2", s.Resources, s.Removals)
	}

	// The resynchronised state is persisted.
	waitUntil(t, "replica 2 persists the resync", func() bool { s := c2.Stats(); return s.StateWrites == s.Snapshots-1 })
	got, err := loadState(state2)
	if err != nil || keyStatus(got.Snapshot, vk) != config.KeyRevoked || got.Versions[config.KindVirtualKey][vk] == "" {
		t.Errorf("persisted state after resync = %+v, %v", got, err)
	}
}

// A replica with the wrong token is refused, keeps retrying, and says so without logging
// either token; one with the right token is served.
func TestTokenAuth(t *testing.T) {
	checkGoroutines(t)
	st := openStore(t)
	put(t, st, config.KindOrganization, "acme", `{}`)
	const good, bad = "canary-good-token-7f3a", "canary-bad-token-91c2"
	srvLog := newLogBuffer()
	srv := startServer(t, st, "tcp", "127.0.0.1:0", good, slog.New(slog.NewTextHandler(srvLog, nil)))

	cliLog := newLogBuffer()
	c, r := startClient(t, ClientConfig{Addr: srv.addr, Token: bad, Kinds: dataKinds,
		Logger: slog.New(slog.NewTextHandler(cliLog, nil))})
	cliLog.waitCount(t, "refused the stream", 3)
	if r.count() != 0 || c.Stats().AuthFailures < 3 {
		t.Errorf("refused client: %d snapshots, stats %+v", r.count(), c.Stats())
	}
	if srv.Stats().AuthFailures < 3 || srv.Stats().Streams != 0 {
		t.Errorf("server stats = %+v", srv.Stats())
	}
	_, r2 := startClient(t, ClientConfig{Addr: srv.addr, Token: good, Kinds: dataKinds})
	r2.waitFor(t, "authorised snapshot", has(config.KindOrganization, "acme"))
	for name, l := range map[string]*logBuffer{"client": cliLog, "server": srvLog} {
		if s := l.String(); strings.Contains(s, good) || strings.Contains(s, bad) {
			t.Errorf("%s log contains a token:\n%s", name, s)
		}
	}
	t.Logf("client log:\n%s", cliLog.String())
}
