package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	spansExportedDesc = prometheus.NewDesc("sluice_telemetry_spans_exported_total",
		"Trace spans exported successfully.", nil, nil)
	spansDroppedDesc = prometheus.NewDesc("sluice_telemetry_spans_dropped_total",
		"Trace spans dropped before export because the export queue was full.", nil, nil)
	spansFailedDesc = prometheus.NewDesc("sluice_telemetry_spans_failed_total",
		"Trace spans whose export failed.", nil, nil)
)

// spanStats is a collector that reads the tracer's own counters at scrape time, so the
// tracer keeps plain atomics and needs no dependency on this package.
type spanStats struct {
	f atomic.Pointer[func() (exported, dropped, failed uint64)]
}

// Describe implements [prometheus.Collector.Describe].
func (s *spanStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- spansExportedDesc
	ch <- spansDroppedDesc
	ch <- spansFailedDesc
}

// Collect implements [prometheus.Collector.Collect]. It exports nothing until
// [Metrics.RegisterSpanStats] is called.
func (s *spanStats) Collect(ch chan<- prometheus.Metric) {
	f := s.f.Load()
	if f == nil {
		return
	}
	exported, dropped, failed := (*f)()
	ch <- prometheus.MustNewConstMetric(spansExportedDesc, prometheus.CounterValue, float64(exported))
	ch <- prometheus.MustNewConstMetric(spansDroppedDesc, prometheus.CounterValue, float64(dropped))
	ch <- prometheus.MustNewConstMetric(spansFailedDesc, prometheus.CounterValue, float64(failed))
}

// RegisterSpanStats exports the tracer's span counters as
// sluice_telemetry_spans_{exported,dropped,failed}_total. f is called at every scrape, from
// the scraping goroutine: it must be cheap, safe for concurrent use and return
// monotonically non-decreasing totals. A later call replaces f; a nil f stops the export.
func (m *Metrics) RegisterSpanStats(f func() (exported, dropped, failed uint64)) {
	if m == nil {
		return
	}
	if f == nil {
		m.spans.f.Store(nil)
		return
	}
	m.spans.f.Store(&f)
}
