package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Metrics are the proxy's Prometheus metrics.
type Metrics struct {
	reg          prometheus.Registerer
	programming  prometheus.Histogram
	syncDuration prometheus.Histogram
	writes       prometheus.Counter
	frontends    prometheus.Gauge
}

// NewMetrics registers the proxy's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	buckets := []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	m := &Metrics{reg: reg,
		// The name kube-proxy uses, so clusterloader2's measurement reads it.
		programming: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "network_programming_duration_seconds",
			Help: "From an EndpointSlice change (its last-change-trigger-time) to the BPF maps holding it.", Buckets: buckets}),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "petrel_proxy_sync_duration_seconds",
			Help: "Time to write one Service's changes into the BPF maps.", Buckets: buckets}),
		writes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_proxy_map_writes_total", Help: "BPF map updates and deletes."}),
		frontends: prometheus.NewGauge(prometheus.GaugeOpts{Name: "petrel_proxy_frontends", Help: "Service frontends programmed."}),
	}
	if reg != nil {
		reg.MustRegister(m.programming, m.syncDuration, m.writes, m.frontends)
	}
	return m
}

// watchMaps exports each map's entry count and capacity, read when scraped.
func (m *Metrics) watchMaps(maps *bpfobj.Maps) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(&mapCollector{maps: maps,
		entries:  prometheus.NewDesc("petrel_bpf_map_entries", "Entries in a BPF map.", []string{"map"}, nil),
		capacity: prometheus.NewDesc("petrel_bpf_map_capacity", "Maximum entries of a BPF map.", []string{"map"}, nil),
	})
}

type mapCollector struct {
	maps              *bpfobj.Maps
	entries, capacity *prometheus.Desc
}

func (c *mapCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.entries; ch <- c.capacity }

func (c *mapCollector) Collect(ch chan<- prometheus.Metric) {
	for _, name := range bpfobj.MapNames {
		mp := c.maps.ByName(name)
		if mp == nil {
			continue
		}
		n, err := bpfobj.CountEntries(mp)
		if err == nil {
			ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(n), name)
		}
		ch <- prometheus.MustNewConstMetric(c.capacity, prometheus.GaugeValue, float64(mp.MaxEntries()), name)
	}
}
