package dispatcher

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/dispatcher/attempt"
	"github.com/sluice-gateway/sluice/dispatcher/breaker"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/wire"
)

// governedServer is a dispatcher with a memory counter store on an injected clock, whose
// providers are priced at $1/M input and $2/M output; oa2 allows 1 request a minute.
func governedServer(t *testing.T, lane Lane) (*Server, counters.Store, *time.Time) {
	t.Helper()
	now := time.Date(2026, 11, 23, 10, 0, 20, 0, time.UTC)
	st, err := counters.OpenMemory("", counters.Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := newServer(t, lane, nil, "")
	s.cfg.Counters = st
	c := testConfig("http://provider.invalid")
	price := pricing.Price{Input: config.NanoPerUSD, Output: 2 * config.NanoPerUSD}
	for i := range c.Providers {
		c.Providers[i].Pricing = pricing.Overrides{"*": price}
	}
	c.Providers[1].Limits = config.RateLimits{RPM: 1}
	c.Providers[1].Pricing = pricing.Overrides{"m": price} // "unpriced" has none
	if err := s.Load(c); err != nil {
		t.Fatal(err)
	}
	return s, st, &now
}

// hold reserves a budget of 1 USD as extproc would, for the claims' request id.
func hold(t *testing.T, st counters.Store, c *ctxtoken.Claims, worst, maxOut int64) {
	t.Helper()
	adm, err := st.Reserve(context.Background(), counters.OrgSlot("acme"), c.RequestID, []counters.Counter{
		{Key: counters.BudgetKey("bg_1", counters.WindowTotal), Window: counters.WindowTotal, Unit: counters.UnitNanoUSD,
			Limit: int64(config.NanoPerUSD), Amount: worst, Block: true}})
	if err != nil || !adm.OK {
		t.Fatalf("reserve: %v %+v", err, adm)
	}
	c.Hold = &ctxtoken.Hold{Slot: counters.OrgSlot("acme"), Counters: adm.Counters, MaxOutput: maxOut}
}

func spent(t *testing.T, st counters.Store) (int64, int64) {
	t.Helper()
	s, r, err := st.Usage(context.Background(), counters.OrgSlot("acme"), counters.Counter{
		Key: counters.BudgetKey("bg_1", counters.WindowTotal), Window: counters.WindowTotal, Unit: counters.UnitNanoUSD}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

// usageStep answers 200 and reports usage, as a lane reads it from the provider.
func usageStep(in, out int64, cut bool) step {
	st := answer(200, `{"ok":true}`)
	st.res.Usage = attempt.Usage{InputTokens: in, OutputTokens: out}
	if cut {
		st.res.Err = context.Canceled
	}
	return st
}

func TestSettleWithProviderUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		steps  []step
		maxOut int64
		chain  string
		want   int64
	}{
		{"priced usage", []step{usageStep(1000, 100, false)}, 0, "", 1000*1000 + 100*2000},
		{"usage unknown keeps the worst case", []step{usageStep(0, 0, false)}, 0, "", 5_000_000},
		{"a cut answer: its input, and all of max_tokens", []step{usageStep(1000, 1, true)}, 300, "", 1000*1000 + 300*2000},
		{"a cut answer without input keeps the worst case", []step{usageStep(0, 0, true)}, 300, "", 5_000_000},
		{"an unpriced model keeps the worst case", []step{usageStep(1000, 100, false)}, 0, "oa2:unpriced", 5_000_000},
		{"nobody answered: released", []step{fail(503, true, `{}`), fail(503, true, `{}`)}, 0, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice the script: the request is sent twice.
			s, st, _ := governedServer(t, newLane(t, append(tc.steps, tc.steps...)...))
			c := claims(wire.OpenAI, false, chain("oa:gpt-4o-mini", "oa:gpt-4o")...)
			c.Chain = c.Chain[:len(tc.steps)]
			if tc.chain != "" {
				c.Chain = chain(tc.chain)
			}
			hold(t, st, c, 5_000_000, tc.maxOut)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"m"}`, sign(t, testSignKey, c)))
			if got, reserved := spent(t, st); got != tc.want || reserved != 0 {
				t.Errorf("spent %d reserved %d, want %d and 0", got, reserved, tc.want)
			}
			// Settling again (a retried request id) changes nothing.
			s.ServeHTTP(httptest.NewRecorder(), request(t, "/v1/chat/completions", `{"model":"m"}`, sign(t, testSignKey, c)))
			if got, _ := spent(t, st); got != tc.want {
				t.Errorf("a second settle moved spend to %d", got)
			}
		})
	}
}

// A provider whose own rate limit is full is skipped like an open circuit; when every
// provider is, the client gets 429 rate_limited naming the limit.
func TestProviderRateLimit(t *testing.T) {
	lane := newLane(t, answer(200, `{}`), answer(200, `{}`))
	s, _, now := governedServer(t, lane)
	send := func(id string, pm ...string) *httptest.ResponseRecorder {
		c := claims(wire.OpenAI, false, chain(pm...)...)
		c.RequestID = id
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"m"}`, sign(t, testSignKey, c)))
		return rec
	}
	if rec := send("r1", "oa2:m", "oa:m"); rec.Code != 200 {
		t.Fatalf("first: %d %s", rec.Code, rec.Body)
	}
	// oa2's one request this minute is spent: the next goes to oa without a failed attempt.
	rec := send("r2", "oa2:m", "oa:m")
	if rec.Code != 200 || rec.Header().Get(wire.HeaderFallbackCount) != "0" {
		t.Fatalf("second: %d, fallback count %q", rec.Code, rec.Header().Get(wire.HeaderFallbackCount))
	}
	if got := strings.Join(lane.providers(), ","); got != "oa2:m,oa:m" {
		t.Errorf("attempts %s", got)
	}
	rec = send("r3", "oa2:m")
	if rec.Code != http.StatusTooManyRequests || errorCode(t, wire.OpenAI, rec.Body.Bytes()) != "rate_limited" {
		t.Fatalf("all limited: %d %s", rec.Code, rec.Body)
	}
	if ra := rec.Header().Get("Retry-After"); ra != "40" {
		t.Errorf("Retry-After %q, want 40", ra)
	}
	if h := rec.Header().Get(wire.HeaderRateLimit); h != "PROVIDER:oa2 rpm=1" {
		t.Errorf("%s = %q", wire.HeaderRateLimit, h)
	}
	*now = now.Add(40 * time.Second)
	lane.steps = append(lane.steps, answer(200, `{}`))
	if rec := send("r4", "oa2:m"); rec.Code != 200 {
		t.Errorf("next minute: %d", rec.Code)
	}
}

// The cache mode is applied to the body every attempt sends, and named on the response.
func TestCacheModeApplied(t *testing.T) {
	lane := newLane(t, answer(200, `{}`))
	s := newServer(t, lane, nil, "")
	c := claims(wire.Anthropic, false, chain("an:claude")...)
	c.CacheMode = "disable"
	rec := httptest.NewRecorder()
	body := `{"model":"m","system":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}],"messages":[]}`
	s.ServeHTTP(rec, request(t, "/v1/messages", body, sign(t, testSignKey, c)))
	if rec.Header().Get(wire.HeaderCache) != "disable" {
		t.Errorf("%s = %q", wire.HeaderCache, rec.Header().Get(wire.HeaderCache))
	}
	if got := lane.calls[0].Body; strings.Contains(got, "cache_control") {
		t.Errorf("the provider got %s", got)
	}
}

// Circuit breakers: failures open a provider's circuit, open circuits are skipped (not
// counted as failed attempts), every provider open is 503 circuit_open, and after the
// cooldown one probe closes it again. A 429's retry-after pauses the provider without
// opening its circuit.
func TestCircuitBreakers(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	lane := newLane(t)
	s := newServer(t, lane, nil, "")
	s.cfg.Now = func() time.Time { return now }
	var changes []string
	s.breakers = breakerSet(&now, &changes, s)
	send := func(pm ...string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"m"}`, sign(t, testSignKey, claims(wire.OpenAI, false, chain(pm...)...))))
		return rec
	}
	// Two 503s from oa open its circuit (threshold 2).
	lane.steps = []step{fail(503, true, `{}`), answer(200, `{}`), fail(503, true, `{}`), answer(200, `{}`)}
	send("oa:m", "oa2:m")
	send("oa:m", "oa2:m")
	if got := strings.Join(changes, ","); got != "oa:closed>open" {
		t.Fatalf("transitions %q", got)
	}
	// oa is skipped: oa2 answers, and no attempt failed.
	lane.steps, lane.calls = []step{answer(200, `{}`)}, nil
	rec := send("oa:m", "oa2:m")
	if rec.Code != 200 || rec.Header().Get(wire.HeaderFallbackCount) != "0" || strings.Join(lane.providers(), ",") != "oa2:m" {
		t.Fatalf("open circuit: %d, fallback %q, calls %v", rec.Code, rec.Header().Get(wire.HeaderFallbackCount), lane.providers())
	}
	// Only oa in the chain: 503 circuit_open, nothing attempted.
	lane.calls = nil
	rec = send("oa:m")
	if rec.Code != http.StatusServiceUnavailable || errorCode(t, wire.OpenAI, rec.Body.Bytes()) != "circuit_open" || len(lane.calls) != 0 {
		t.Fatalf("all open: %d %s, calls %v", rec.Code, rec.Body, lane.providers())
	}
	// After the cooldown a probe goes through; its success closes the circuit.
	now = now.Add(31 * time.Second)
	lane.steps = []step{answer(200, `{}`)}
	if rec := send("oa:m"); rec.Code != 200 {
		t.Fatalf("probe: %d", rec.Code)
	}
	if got := strings.Join(changes, ","); got != "oa:closed>open,oa:open>half-open,oa:half-open>closed" {
		t.Fatalf("transitions %q", got)
	}
	// A 429 with retry-after pauses oa2 for that long without opening it.
	lane.steps, lane.calls = []step{{res: attempt.Result{Status: 429, Retryable: true, Body: []byte(`{}`),
		Header: http.Header{"Retry-After": {"20"}}}}, answer(200, `{}`)}, nil
	send("oa2:m", "oa:m")
	lane.steps, lane.calls = []step{answer(200, `{}`)}, nil
	send("oa2:m", "oa:m")
	if got := strings.Join(lane.providers(), ","); got != "oa:m" {
		t.Errorf("during its retry-after oa2 was attempted: %v", got)
	}
	now = now.Add(21 * time.Second)
	lane.steps, lane.calls = []step{answer(200, `{}`)}, nil
	send("oa2:m", "oa:m")
	if got := strings.Join(lane.providers(), ","); got != "oa2:m" {
		t.Errorf("after its retry-after oa2 was skipped: %v", got)
	}
}

func breakerSet(now *time.Time, changes *[]string, s *Server) *breaker.Set {
	return breaker.New(breaker.Config{Threshold: 2, Window: 30 * time.Second, Cooldown: 30 * time.Second,
		Now: func() time.Time { return *now },
		OnChange: func(id string, from, to breaker.State) {
			*changes = append(*changes, id+":"+from.String()+">"+to.String())
		}})
}

// A key may retry the same provider: after its retry-after when it asked for a short one,
// never when it asked for longer than the gateway waits; each failed try counts in
// X-Sluice-Fallback-Count.
func TestRetriesSameProvider(t *testing.T) {
	limited := func(h string) step {
		return step{res: attempt.Result{Status: 429, Retryable: true, Body: []byte(`{}`), Header: http.Header{"Retry-After-Ms": {h}}}}
	}
	for _, tc := range []struct {
		name     string
		steps    []step
		calls    string
		fallback string
	}{
		{"two 503s then an answer", []step{fail(503, true, `{}`), fail(503, true, `{}`), answer(200, `{}`)}, "oa:m,oa:m,oa:m", "2"},
		{"a short retry-after is waited out", []step{limited("50"), answer(200, `{}`)}, "oa:m,oa:m", "1"},
		{"a long retry-after moves on", []step{limited("60000"), answer(200, `{}`)}, "oa:m,oa2:m", "1"},
		{"a 400 is never retried", []step{fail(400, false, `{}`)}, "oa:m", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lane := newLane(t, tc.steps...)
			s := newServer(t, lane, nil, "")
			c := claims(wire.OpenAI, false, chain("oa:m", "oa2:m")...)
			c.Fallback = &ctxtoken.Fallback{Retries: 2}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, request(t, "/v1/chat/completions", `{"model":"m"}`, sign(t, testSignKey, c)))
			if got := strings.Join(lane.providers(), ","); got != tc.calls {
				t.Errorf("attempts %s, want %s", got, tc.calls)
			}
			if tc.fallback != "" && rec.Header().Get(wire.HeaderFallbackCount) != tc.fallback {
				t.Errorf("fallback count %q, want %s", rec.Header().Get(wire.HeaderFallbackCount), tc.fallback)
			}
		})
	}
}
