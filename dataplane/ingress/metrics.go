package ingress

import (
	"fmt"
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

// observe counts one request.
func (m *metrics) observe(rt *route, code int, took time.Duration) {
	ns, ing, host, path := "", "", "", ""
	if rt != nil {
		ns, ing, host, path = rt.namespace, rt.ingress, rt.host, rt.metricPath()
		if host == "" {
			host = "*"
		}
	}
	m.requests.WithLabelValues(ns, ing, host, path, fmt.Sprintf("%dxx", code/100)).Inc()
	m.latency.WithLabelValues(ns, ing, host, path).Observe(took.Seconds())
}
