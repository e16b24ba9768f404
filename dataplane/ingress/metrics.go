package ingress

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ingress's, on the node's /metrics.
type metrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	upstreamErrors *prometheus.CounterVec
	routes         prometheus.Gauge
	rebuilds       prometheus.Histogram
	// unmatched are the series of requests no rule matched.
	unmatched atomic.Pointer[routeMetrics]
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_ingress_requests_total",
			Help: "Requests through the node's ingress by Ingress, rule host, path and status class (unmatched requests have empty labels)."},
			[]string{"namespace", "ingress", "host", "path", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "petrel_ingress_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response (or of its WebSocket), by Ingress, rule host and path.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
			[]string{"namespace", "ingress", "host", "path"}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_ingress_upstream_errors_total",
			Help: "Requests no endpoint of the backend Service took (refused, timed out, none ready), by Service."},
			[]string{"namespace", "service"}),
		routes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "petrel_ingress_routes",
			Help: "Paths of the Ingresses this node serves."}),
		rebuilds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "petrel_ingress_table_build_seconds",
			Help: "Time to compile the routing table after a change of an Ingress, Service, EndpointSlice or Secret.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 8)}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.upstreamErrors, m.routes, m.rebuilds)
	}
	return m
}

// statusClasses are the status label's values by code/100.
var statusClasses = [...]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// routeMetrics are one route's series, looked up once: a lookup by label
// values hashes them and allocates on every request.
type routeMetrics struct {
	requests [len(statusClasses)]prometheus.Counter
	latency  prometheus.Observer
}

func (m *metrics) series(ns, ing, host, path string) *routeMetrics {
	rm := &routeMetrics{latency: m.latency.WithLabelValues(ns, ing, host, path)}
	for i, class := range statusClasses {
		rm.requests[i] = m.requests.WithLabelValues(ns, ing, host, path, class)
	}
	return rm
}

// observe counts one request; rt is nil for a request no rule matched.
func (m *metrics) observe(rt *route, code int, took time.Duration) {
	var rm *routeMetrics
	if rt == nil {
		rm = m.unmatched.Load()
		if rm == nil {
			rm = m.series("", "", "", "")
			m.unmatched.Store(rm)
		}
	} else if rm = rt.metrics.Load(); rm == nil {
		host := rt.host
		if host == "" {
			host = "*"
		}
		rm = m.series(rt.namespace, rt.ingress, host, rt.metricPath())
		rt.metrics.Store(rm)
	}
	class := code / 100
	if class < 1 || class >= len(statusClasses) {
		class = 0
	}
	rm.requests[class].Inc()
	rm.latency.Observe(took.Seconds())
}
