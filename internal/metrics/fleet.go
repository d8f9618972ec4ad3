package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// FleetStats are the control plane's push counters, as the fleet server keeps them.
type FleetStats struct {
	Streams                                    int64 // open now
	Pushes, Acks, Nacks, Lookups, AuthFailures uint64
	PushLagCount                               uint64
	PushLagSum                                 time.Duration
}

var (
	fleetStreamsDesc = prometheus.NewDesc("sluice_fleet_streams", "Config streams of extproc and dispatcher replicas open now.", nil, nil)
	fleetPushesDesc  = prometheus.NewDesc("sluice_fleet_pushes_total", "Config pushes sent to replicas.", nil, nil)
	fleetAcksDesc    = prometheus.NewDesc("sluice_fleet_acks_total", "Config pushes replicas acknowledged.", nil, nil)
	fleetNacksDesc   = prometheus.NewDesc("sluice_fleet_nacks_total", "Config pushes replicas refused.", nil, nil)
	fleetLookupsDesc = prometheus.NewDesc("sluice_fleet_lookups_total", "On-demand key lookups replicas asked for.", nil, nil)
	fleetAuthDesc    = prometheus.NewDesc("sluice_fleet_auth_failures_total", "Replica connections refused for a bad fleet token.", nil, nil)
	fleetLagDesc     = prometheus.NewDesc("sluice_fleet_push_lag_seconds",
		"Time from the control plane learning of a config change to the push carrying it being sent.", nil, nil)
)

// fleetStats reads the fleet server's counters at scrape time.
type fleetStats struct {
	f atomic.Pointer[func() FleetStats]
}

// Describe implements [prometheus.Collector.Describe].
func (s *fleetStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{fleetStreamsDesc, fleetPushesDesc, fleetAcksDesc, fleetNacksDesc, fleetLookupsDesc, fleetAuthDesc, fleetLagDesc} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector.Collect]; nothing until RegisterFleetStats.
func (s *fleetStats) Collect(ch chan<- prometheus.Metric) {
	f := s.f.Load()
	if f == nil {
		return
	}
	st := (*f)()
	for _, c := range []struct {
		d *prometheus.Desc
		v uint64
	}{{fleetPushesDesc, st.Pushes}, {fleetAcksDesc, st.Acks}, {fleetNacksDesc, st.Nacks},
		{fleetLookupsDesc, st.Lookups}, {fleetAuthDesc, st.AuthFailures}} {
		ch <- prometheus.MustNewConstMetric(c.d, prometheus.CounterValue, float64(c.v))
	}
	ch <- prometheus.MustNewConstMetric(fleetStreamsDesc, prometheus.GaugeValue, float64(st.Streams))
	ch <- prometheus.MustNewConstSummary(fleetLagDesc, st.PushLagCount, st.PushLagSum.Seconds(), nil)
}

// RegisterFleetStats exports the control plane's push counters and push lag. f is called at
// every scrape and must be cheap and safe for concurrent use.
func (m *Metrics) RegisterFleetStats(f func() FleetStats) {
	if m == nil || f == nil {
		return
	}
	m.fleet.f.Store(&f)
}
