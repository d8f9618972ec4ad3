package extproc

import (
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
)

// BenchmarkProcessChat measures one full admission on the fake stream: headers (key lookup,
// strip and stamp) then body (field scan, routing, token signing).
//
//	go test -run x -bench ProcessChat -benchmem -count 10 ./extproc/ > new.txt && benchstat old.txt new.txt
func BenchmarkProcessChat(b *testing.B) {
	f := newFixture(b)
	s := newStream(b,
		headersMsg("POST", "/v1/chat/completions", false,
			"authorization", f.bearer("vk_main"), "content-type", "application/json",
			"content-length", "120", "user-agent", "OpenAI/Python 1.99.0", "x-stainless-lang", "python"),
		bodyMsg(`{"model":"gpt-4o","stream":true,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`))
	b.ReportAllocs()
	for b.Loop() {
		s.reset()
		if err := f.srv.Process(s); err != nil {
			b.Fatal(err)
		}
		if len(s.sent) != 2 || s.sent[1].GetRequestBody() == nil {
			b.Fatalf("unexpected responses %v", s.sent)
		}
	}
}

// BenchmarkProcessGoverned is BenchmarkProcessChat for a key under a budget and an RPM limit
// (in-process counter store): the reservation's cost over a plain key.
//
//	go test -run x -bench 'Process(Chat|Governed)' -benchmem ./extproc/
func BenchmarkProcessGoverned(b *testing.B) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	st, err := counters.OpenMemory("", counters.Options{Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f := newFixture(b)
	f.srv.cfg.Now, f.srv.cfg.Counters = clk.Now, st
	c := &config.Config{Version: config.Version,
		Providers: []config.Provider{{ID: "oa", Type: config.ProviderOpenAI, Models: []string{"gpt-4o"}}},
		Keys: []config.Key{{ID: "vk_gov", Hash: f.hash("vk_gov"), OrgID: "acme",
			RateLimits: config.RateLimits{RPM: 1 << 40}}},
		Budgets: []config.Budget{{ID: "bg_b", Name: "b", Scope: config.MustParseScope("ORG:acme"),
			Window: config.WindowMonth, LimitNanoUSD: 1 << 60, OnBreach: config.BreachBlock}},
	}
	if err := f.srv.Load(c); err != nil {
		b.Fatal(err)
	}
	s := newStream(b,
		headersMsg("POST", "/v1/chat/completions", false, "authorization", f.bearer("vk_gov"), "content-type", "application/json"),
		bodyMsg(`{"model":"gpt-4o","stream":true,"max_tokens":1000,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}]}`))
	b.ReportAllocs()
	for b.Loop() {
		s.reset()
		if err := f.srv.Process(s); err != nil {
			b.Fatal(err)
		}
		if len(s.sent) != 2 || s.sent[1].GetRequestBody() == nil {
			b.Fatalf("unexpected responses %v", s.sent)
		}
	}
}
