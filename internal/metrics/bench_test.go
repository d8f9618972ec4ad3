package metrics

import (
	"testing"
	"time"
)

// Benchmarks for the per-request and per-message methods. Compare runs with benchstat:
//
//	go test -run x -bench . -benchmem -count 10 ./internal/metrics/ > old.txt
//	(change)
//	go test -run x -bench . -benchmem -count 10 ./internal/metrics/ > new.txt
//	benchstat old.txt new.txt
//
// BenchmarkRequest/uncached records the same metrics as Request through WithLabelValues
// on every call: it is the baseline that justifies seriesCache.

var benchLabels = RequestLabels{Route: "chat_completions", Status: "200", Provider: "openai", Model: "gpt-4o",
	KeyID: "01JABCDEFGHJKMNPQRSTVWXYZ0", Org: "01JORG00000000000000000000", Team: "01JTEAM0000000000000000000",
	Project: "01JPROJ0000000000000000000"}

func BenchmarkRequest(b *testing.B) {
	b.Run("cached", func(b *testing.B) {
		m := New()
		b.ReportAllocs()
		for b.Loop() {
			m.Request(benchLabels, 2*time.Second, 150*time.Microsecond, 1800*time.Millisecond, 300*time.Millisecond)
		}
	})
	b.Run("uncached", func(b *testing.B) {
		m := New()
		r := benchLabels
		b.ReportAllocs()
		for b.Loop() {
			m.requests.WithLabelValues(r.Route, r.Status, r.Provider, r.Model, r.KeyID, r.Org, r.Team, r.Project).Inc()
			m.requestDuration.WithLabelValues(r.Route, r.Status, r.Provider).Observe(2)
			m.overhead.WithLabelValues(r.Route, r.Status, r.Provider).Observe(150e-6)
			m.genAIDuration.WithLabelValues(r.Provider, r.Model, errorType(r.Status)).Observe(2)
			m.providerDuration.WithLabelValues(r.Provider, r.Model).Observe(1.8)
			m.genAITTFT.WithLabelValues(r.Provider, r.Model).Observe(.3)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		m := New()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Request(benchLabels, 2*time.Second, 150*time.Microsecond, 1800*time.Millisecond, 300*time.Millisecond)
			}
		})
	})
	b.Run("nil", func(b *testing.B) {
		var m *Metrics
		b.ReportAllocs()
		for b.Loop() {
			m.Request(benchLabels, 2*time.Second, 150*time.Microsecond, 1800*time.Millisecond, 300*time.Millisecond)
		}
	})
}

func BenchmarkTokensCost(b *testing.B) {
	m := New()
	tl := benchLabels.Tenant()
	b.ReportAllocs()
	for b.Loop() {
		m.Tokens(tl, "anthropic", "claude-sonnet-4-5", 1200, 350, 40000, 0)
		m.Cost(tl, 123_456)
	}
}

func BenchmarkExtProcMessage(b *testing.B) {
	b.Run("known", func(b *testing.B) {
		m := New()
		b.ReportAllocs()
		for b.Loop() {
			m.ExtProcMessage("response_body")
		}
	})
	b.Run("known-parallel", func(b *testing.B) {
		m := New()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.ExtProcMessage("request_headers")
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		m := New()
		b.ReportAllocs()
		for b.Loop() {
			m.extprocMsgs.WithLabelValues("response_body").Inc()
		}
	})
}

func BenchmarkScrape(b *testing.B) {
	m := New()
	for i := range 200 {
		r := benchLabels
		r.KeyID = Status(100 + i)
		m.Request(r, time.Second, time.Millisecond, time.Second, time.Millisecond)
		m.Tokens(r.Tenant(), r.Provider, r.Model, 1, 1, 1, 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
