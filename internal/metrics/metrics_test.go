package metrics

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches m's exposition through Handler and parses it.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// sample is one series of a family, flattened: Value is a counter's or gauge's value, or a
// histogram's sample count, with Sum its sum.
type sample struct {
	Value, Sum float64
}

// series returns name's series keyed by their labels rendered as `a="x",b="y"`, sorted by
// label name (see canon); a missing family yields an empty map.
func series(t *testing.T, fams map[string]*dto.MetricFamily, name string) map[string]sample {
	t.Helper()
	out := make(map[string]sample)
	mf, ok := fams[name]
	if !ok {
		return out
	}
	for _, m := range mf.GetMetric() {
		var ls []string
		for _, lp := range m.GetLabel() {
			ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
		}
		slices.Sort(ls)
		key := strings.Join(ls, ",")
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			out[key] = sample{Value: m.GetCounter().GetValue()}
		case dto.MetricType_GAUGE:
			out[key] = sample{Value: m.GetGauge().GetValue()}
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			out[key] = sample{Value: float64(h.GetSampleCount()), Sum: h.GetSampleSum()}
		default:
			t.Fatalf("%s: unexpected type %v", name, mf.GetType())
		}
	}
	return out
}

// canon renders a label list written as `b="y",a="x"` in series' form: sorted by name,
// values quoted with %q. Tests can then list labels in the metric's declared order.
func canon(t *testing.T, k string) string {
	t.Helper()
	var ls []string
	for k != "" {
		name, rest, ok := strings.Cut(k, "=")
		if !ok {
			t.Fatalf("bad label list %q", k)
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			t.Fatalf("bad label list %q: %v", k, err)
		}
		v, _ := strconv.Unquote(q)
		ls = append(ls, fmt.Sprintf("%s=%q", name, v))
		k = strings.TrimPrefix(rest[len(q):], ",")
	}
	slices.Sort(ls)
	return strings.Join(ls, ",")
}

// checkSeries asserts that name has exactly the series in want, with sums within 1e-9.
func checkSeries(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]sample) {
	t.Helper()
	got := series(t, fams, name)
	canonWant := make(map[string]sample, len(want))
	for k, w := range want {
		canonWant[canon(t, k)] = w
	}
	want = canonWant
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s{%s}: missing; have %v", name, k, keys(got))
			continue
		}
		if math.Abs(g.Value-w.Value) > 1e-9 || math.Abs(g.Sum-w.Sum) > 1e-9 {
			t.Errorf("%s{%s} = %+v, want %+v", name, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s{%s}: unexpected series", name, k)
		}
	}
}

func keys(m map[string]sample) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

var tenantA = TenantLabels{KeyID: "key_01", Org: "org_1", Team: "team_1", Project: "proj_1"}

func TestRequest(t *testing.T) {
	m := New()
	ok := RequestLabels{Route: "chat_completions", Status: Status(200), Provider: "openai", Model: "gpt-4o",
		KeyID: "key_01", Org: "org_1", Team: "team_1", Project: "proj_1"}
	// Two streamed successes, one non-streamed 502 from the same provider and one
	// request refused by extproc before any provider saw it.
	m.Request(ok, 2*time.Second, 200*time.Microsecond, 1800*time.Millisecond, 300*time.Millisecond)
	m.Request(ok, 4*time.Second, 300*time.Microsecond, 3*time.Second, 500*time.Millisecond)
	failed := ok
	failed.Status = Status(502)
	m.Request(failed, time.Second, 100*time.Microsecond, 900*time.Millisecond, 0)
	refused := RequestLabels{Route: "messages", Status: Status(401)}
	m.Request(refused, 50*time.Microsecond, 50*time.Microsecond, 0, 0)

	fams := scrape(t, m)
	const tenant = `key_id="key_01",organization_id="org_1",team_id="team_1",project_id="proj_1"`
	checkSeries(t, fams, "sluice_requests_total", map[string]sample{
		`route="chat_completions",status="200",provider="openai",model="gpt-4o",` + tenant:                         {Value: 2},
		`route="chat_completions",status="502",provider="openai",model="gpt-4o",` + tenant:                         {Value: 1},
		`route="messages",status="401",provider="",model="",key_id="",organization_id="",team_id="",project_id=""`: {Value: 1},
	})
	checkSeries(t, fams, "sluice_request_duration_seconds", map[string]sample{
		`route="chat_completions",status="200",provider="openai"`: {Value: 2, Sum: 6},
		`route="chat_completions",status="502",provider="openai"`: {Value: 1, Sum: 1},
		`route="messages",status="401",provider=""`:               {Value: 1, Sum: 50e-6},
	})
	checkSeries(t, fams, "sluice_gateway_overhead_seconds", map[string]sample{
		`route="chat_completions",status="200",provider="openai"`: {Value: 2, Sum: 500e-6},
		`route="chat_completions",status="502",provider="openai"`: {Value: 1, Sum: 100e-6},
		`route="messages",status="401",provider=""`:               {Value: 1, Sum: 50e-6},
	})
	checkSeries(t, fams, "sluice_provider_duration_seconds", map[string]sample{
		`provider="openai",model="gpt-4o"`: {Value: 3, Sum: 5.7},
	})
	checkSeries(t, fams, "gen_ai_server_request_duration_seconds", map[string]sample{
		`gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",error_type=""`:    {Value: 2, Sum: 6},
		`gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o",error_type="502"`: {Value: 1, Sum: 1},
		`gen_ai_provider_name="",gen_ai_request_model="",error_type="401"`:             {Value: 1, Sum: 50e-6},
	})
	checkSeries(t, fams, "gen_ai_server_time_to_first_token_seconds", map[string]sample{
		`gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o"`: {Value: 2, Sum: 0.8},
	})

	// Buckets: the 2 s and 4 s requests fall in le=2 and le=4 of the LLM layout.
	checked := 0
	for _, mm := range fams["sluice_request_duration_seconds"].GetMetric() {
		if !slices.ContainsFunc(mm.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "status" && l.GetValue() == "200" }) {
			continue
		}
		checked++
		for _, b := range mm.GetHistogram().GetBucket() {
			var want uint64
			switch {
			case b.GetUpperBound() >= 4:
				want = 2
			case b.GetUpperBound() >= 2:
				want = 1
			}
			if b.GetCumulativeCount() != want {
				t.Errorf("bucket le=%g: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
			}
		}
	}
	if checked != 1 {
		t.Errorf("checked buckets of %d series, want 1", checked)
	}
}

func TestTokensAndCost(t *testing.T) {
	m := New()
	m.Tokens(tenantA, "anthropic", "claude-sonnet-4-5", 100, 20, 0, 0)
	m.Tokens(tenantA, "anthropic", "claude-sonnet-4-5", 10, 5, 1000, 300)
	m.Tokens(TenantLabels{KeyID: "key_02"}, "openai", "gpt-4o", 7, 0, -1, 0)
	m.Cost(tenantA, 123_000)
	m.Cost(tenantA, 1_000_000_000)
	m.Cost(TenantLabels{KeyID: "key_02"}, 0) // ignored: creates no series
	m.Cost(TenantLabels{KeyID: "key_03"}, -5)

	fams := scrape(t, m)
	const a = `key_id="key_01",organization_id="org_1",team_id="team_1",project_id="proj_1",provider="anthropic",model="claude-sonnet-4-5"`
	const b = `key_id="key_02",organization_id="",team_id="",project_id="",provider="openai",model="gpt-4o"`
	checkSeries(t, fams, "sluice_tokens_total", map[string]sample{
		`type="input",` + a:          {Value: 110},
		`type="output",` + a:         {Value: 25},
		`type="cache_read",` + a:     {Value: 1000},
		`type="cache_creation",` + a: {Value: 300},
		`type="input",` + b:          {Value: 7},
		`type="output",` + b:         {Value: 0},
	})
	const ga = `gen_ai_provider_name="anthropic",gen_ai_request_model="claude-sonnet-4-5"`
	const gb = `gen_ai_provider_name="openai",gen_ai_request_model="gpt-4o"`
	checkSeries(t, fams, "gen_ai_client_token_usage", map[string]sample{
		`gen_ai_token_type="input",` + ga:          {Value: 2, Sum: 110},
		`gen_ai_token_type="output",` + ga:         {Value: 2, Sum: 25},
		`gen_ai_token_type="cache_read",` + ga:     {Value: 1, Sum: 1000},
		`gen_ai_token_type="cache_creation",` + ga: {Value: 1, Sum: 300},
		`gen_ai_token_type="input",` + gb:          {Value: 1, Sum: 7},
		`gen_ai_token_type="output",` + gb:         {Value: 1, Sum: 0},
	})
	checkSeries(t, fams, "sluice_cost_usd_total", map[string]sample{
		`key_id="key_01",organization_id="org_1",team_id="team_1",project_id="proj_1"`: {Value: 1.000123},
	})
}

func TestEvents(t *testing.T) {
	m := New()
	m.Fallback("openai", "429")
	m.Fallback("openai", "429")
	m.Fallback("anthropic", "circuit_open")
	m.CircuitState("openai", CircuitOpen)
	m.CircuitState("anthropic", CircuitHalfOpen)
	m.CircuitState("anthropic", CircuitClosed)
	m.BudgetDenied("team", "monthly")
	m.BudgetWarning("key")
	m.BudgetWarning("key")
	m.RateLimited("rpm")
	m.RateLimited("tpm")
	m.GuardrailVerdict("gr_pii", "request", "modify")
	m.GuardrailVerdict("gr_pii", "response", "block")
	m.ExtProcMessage("request_headers")
	m.ExtProcMessage("request_headers")
	m.ExtProcMessage("request_body")
	m.ExtProcMessage("response_body")
	m.ExtProcMessage("something_new")
	m.Rejected("chat_completions", "invalid_api_key")
	m.Rejected("chat_completions", "invalid_api_key")
	m.Rejected("messages", "model_not_allowed")
	m.CounterStoreError("reserve")

	fams := scrape(t, m)
	checkSeries(t, fams, "sluice_fallbacks_total", map[string]sample{
		`provider="openai",reason="429"`:             {Value: 2},
		`provider="anthropic",reason="circuit_open"`: {Value: 1},
	})
	checkSeries(t, fams, "sluice_circuit_breaker_state", map[string]sample{
		`provider="openai"`:    {Value: 2},
		`provider="anthropic"`: {Value: 0},
	})
	checkSeries(t, fams, "sluice_budget_denials_total", map[string]sample{`scope="team",window="monthly"`: {Value: 1}})
	checkSeries(t, fams, "sluice_budget_warnings_total", map[string]sample{`scope="key"`: {Value: 2}})
	checkSeries(t, fams, "sluice_rate_limit_denials_total", map[string]sample{`limit="rpm"`: {Value: 1}, `limit="tpm"`: {Value: 1}})
	checkSeries(t, fams, "sluice_guardrail_verdicts_total", map[string]sample{
		`guardrail="gr_pii",direction="request",verdict="modify"`: {Value: 1},
		`guardrail="gr_pii",direction="response",verdict="block"`: {Value: 1},
	})
	checkSeries(t, fams, "sluice_extproc_messages_total", map[string]sample{
		`phase="request_headers"`:   {Value: 2},
		`phase="request_body"`:      {Value: 1},
		`phase="request_trailers"`:  {Value: 0},
		`phase="response_headers"`:  {Value: 0},
		`phase="response_body"`:     {Value: 1},
		`phase="response_trailers"`: {Value: 0},
		`phase="something_new"`:     {Value: 1},
	})
	checkSeries(t, fams, "sluice_rejections_total", map[string]sample{
		`route="chat_completions",code="invalid_api_key"`: {Value: 2},
		`route="messages",code="model_not_allowed"`:       {Value: 1},
	})
	checkSeries(t, fams, "sluice_counter_store_errors_total", map[string]sample{`op="reserve"`: {Value: 1}})
}

func TestConfigApplied(t *testing.T) {
	m := New()
	before := float64(time.Now().Unix())
	m.ConfigApplied("extproc", "v1", 0) // loaded from disk: no lag observed
	m.ConfigApplied("dispatcher", "v1", 3*time.Millisecond)
	m.ConfigApplied("extproc", "v2", 5*time.Millisecond)
	m.ConfigApplied("extproc", "v2", 7*time.Millisecond) // re-applying keeps the series
	after := float64(time.Now().Unix() + 1)

	fams := scrape(t, m)
	checkSeries(t, fams, "sluice_config_info", map[string]sample{
		`component="extproc",version="v2"`:    {Value: 1},
		`component="dispatcher",version="v1"`: {Value: 1},
	})
	checkSeries(t, fams, "sluice_config_push_lag_seconds", map[string]sample{
		`component="extproc"`:    {Value: 2, Sum: 0.012},
		`component="dispatcher"`: {Value: 1, Sum: 0.003},
	})
	ts := series(t, fams, "sluice_config_applied_timestamp_seconds")
	if len(ts) != 2 {
		t.Fatalf("timestamps: %v", ts)
	}
	for k, s := range ts {
		if s.Value < before || s.Value > after {
			t.Errorf("%s: timestamp %f not in [%f, %f]", k, s.Value, before, after)
		}
	}
}

func TestSpanStats(t *testing.T) {
	m := New()
	names := []string{"sluice_telemetry_spans_exported_total", "sluice_telemetry_spans_dropped_total", "sluice_telemetry_spans_failed_total"}
	fams := scrape(t, m)
	for _, n := range names {
		if _, ok := fams[n]; ok {
			t.Errorf("%s exported before RegisterSpanStats", n)
		}
	}

	var mu sync.Mutex
	exported, dropped, failed := uint64(10), uint64(2), uint64(1)
	m.RegisterSpanStats(func() (uint64, uint64, uint64) {
		mu.Lock()
		defer mu.Unlock()
		return exported, dropped, failed
	})
	fams = scrape(t, m)
	for i, want := range []float64{10, 2, 1} {
		checkSeries(t, fams, names[i], map[string]sample{"": {Value: want}})
	}
	mu.Lock()
	exported = 15
	mu.Unlock()
	checkSeries(t, scrape(t, m), names[0], map[string]sample{"": {Value: 15}})

	m.RegisterSpanStats(nil)
	checkSeries(t, scrape(t, m), names[0], nil)
}

func TestRuntimeCollectors(t *testing.T) {
	fams := scrape(t, New())
	for _, n := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if _, ok := fams[n]; !ok {
			t.Errorf("%s missing", n)
		}
	}
}

func TestOpenMetrics(t *testing.T) {
	m := New()
	m.Rejected("messages", "invalid_api_key")
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type = %q", ct)
	}
	body := rec.Body.String()
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics body does not end with # EOF")
	}
	if !strings.Contains(body, `sluice_rejections_total{code="invalid_api_key",route="messages"} 1`) {
		t.Errorf("rejection sample missing from OpenMetrics body")
	}
}

// TestNil calls every method on a nil *Metrics: none may panic.
func TestNil(t *testing.T) {
	var m *Metrics
	m.Request(RequestLabels{Route: "x"}, time.Second, time.Millisecond, time.Second, time.Second)
	m.Tokens(tenantA, "p", "m", 1, 2, 3, 4)
	m.Cost(tenantA, 5)
	m.Fallback("p", "429")
	m.CircuitState("p", CircuitOpen)
	m.BudgetDenied("key", "daily")
	m.BudgetWarning("key")
	m.RateLimited("rpm")
	m.GuardrailVerdict("g", "request", "allow")
	m.ExtProcMessage("request_headers")
	m.ExtProcMessage("other")
	m.Rejected("r", "c")
	m.ConfigApplied("extproc", "v1", time.Second)
	m.CounterStoreError("reserve")
	m.RegisterSpanStats(func() (uint64, uint64, uint64) { return 1, 2, 3 })
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Handler: status %d, want 404", rec.Code)
	}
}

// TestLabelValues checks that label values client_golang would panic on, or that are
// plainly not ids, are repaired rather than crashing the request path.
func TestLabelValues(t *testing.T) {
	m := New()
	long := strings.Repeat("m", 300)
	m.Request(RequestLabels{Route: "chat_completions", Status: "400", Model: "bad\xffmodel"}, time.Millisecond, time.Millisecond, 0, 0)
	m.Rejected("chat_completions", long)
	fams := scrape(t, m)
	checkSeries(t, fams, "sluice_rejections_total", map[string]sample{
		`route="chat_completions",code="` + strings.Repeat("m", maxLabelLen) + `"`: {Value: 1},
	})
	checkSeries(t, fams, "sluice_requests_total", map[string]sample{
		`route="chat_completions",status="400",provider="",model="bad\ufffdmodel",key_id="",organization_id="",team_id="",project_id=""`: {Value: 1},
	})
}

func TestStatus(t *testing.T) {
	for _, c := range []struct {
		code int
		want string
	}{{200, "200"}, {499, "499"}, {599, "599"}, {99, "99"}, {600, "600"}, {0, "0"}} {
		if got := Status(c.code); got != c.want {
			t.Errorf("Status(%d) = %q, want %q", c.code, got, c.want)
		}
	}
}

// TestConcurrent records from many goroutines at once; run with -race.
func TestConcurrent(t *testing.T) {
	m := New()
	const goroutines, perG = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				r := RequestLabels{Route: "chat_completions", Status: "200", Provider: "openai",
					Model: fmt.Sprintf("m%d", i%4), KeyID: "key_01"}
				m.Request(r, time.Second, time.Millisecond, time.Second, time.Millisecond)
				m.Tokens(TenantLabels{KeyID: "key_01"}, "openai", r.Model, 1, 1, 1, 1)
				m.Cost(TenantLabels{KeyID: "key_01"}, 1)
				m.ExtProcMessage("request_body")
				m.ConfigApplied("extproc", fmt.Sprintf("v%d", g), time.Millisecond)
			}
		})
	}
	wg.Wait()
	fams := scrape(t, m)
	var total float64
	for _, s := range series(t, fams, "sluice_requests_total") {
		total += s.Value
	}
	if total != goroutines*perG {
		t.Errorf("requests = %v, want %d", total, goroutines*perG)
	}
	if n := len(series(t, fams, "sluice_config_info")); n != 1 {
		t.Errorf("sluice_config_info has %d series, want 1", n)
	}
	checkSeries(t, fams, "sluice_extproc_messages_total", map[string]sample{
		`phase="request_headers"`: {}, `phase="request_body"`: {Value: goroutines * perG},
		`phase="request_trailers"`: {}, `phase="response_headers"`: {}, `phase="response_body"`: {}, `phase="response_trailers"`: {},
	})
}

// TestHotPathAllocs holds the per-request and per-message methods to zero allocations once
// a label set has been seen.
func TestHotPathAllocs(t *testing.T) {
	m := New()
	r := RequestLabels{Route: "chat_completions", Status: Status(200), Provider: "openai", Model: "gpt-4o", KeyID: "key_01"}
	tl := r.Tenant()
	m.Request(r, time.Second, time.Millisecond, time.Second, time.Millisecond)
	m.Tokens(tl, "openai", "gpt-4o", 1, 1, 1, 1)
	m.Cost(tl, 1)
	for name, f := range map[string]func(){
		"Request":        func() { m.Request(r, time.Second, time.Millisecond, time.Second, time.Millisecond) },
		"Tokens":         func() { m.Tokens(tl, "openai", "gpt-4o", 10, 20, 30, 40) },
		"Cost":           func() { m.Cost(tl, 1000) },
		"ExtProcMessage": func() { m.ExtProcMessage("request_body") },
	} {
		if n := testing.AllocsPerRun(100, f); n != 0 {
			t.Errorf("%s: %v allocs per call, want 0", name, n)
		}
	}
}

func TestFleetStats(t *testing.T) {
	m := New()
	if _, ok := scrape(t, m)["sluice_fleet_pushes_total"]; ok {
		t.Error("fleet counters exported before RegisterFleetStats")
	}
	m.RegisterFleetStats(func() FleetStats {
		return FleetStats{Streams: 3, Pushes: 7, Acks: 6, Nacks: 1, Lookups: 2, PushLagCount: 4, PushLagSum: 2 * time.Second}
	})
	fams := scrape(t, m)
	checkSeries(t, fams, "sluice_fleet_streams", map[string]sample{"": {Value: 3}})
	checkSeries(t, fams, "sluice_fleet_pushes_total", map[string]sample{"": {Value: 7}})
	checkSeries(t, fams, "sluice_fleet_nacks_total", map[string]sample{"": {Value: 1}})
	lag := fams["sluice_fleet_push_lag_seconds"]
	if lag == nil || lag.Metric[0].GetSummary().GetSampleCount() != 4 || lag.Metric[0].GetSummary().GetSampleSum() != 2 {
		t.Errorf("push lag summary = %v, want 4 samples summing to 2 s", lag)
	}
}
