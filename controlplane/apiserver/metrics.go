package apiserver

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serverMetrics are the API server's Prometheus metrics, named as
// Kubernetes' apiserver names them where one exists.
type serverMetrics struct {
	requests       *prometheus.CounterVec
	latency        *prometheus.HistogramVec
	watchers       prometheus.Gauge
	watchEvents    prometheus.Counter
	objectsCreated prometheus.Counter
}

func newServerMetrics(reg *prometheus.Registry) *serverMetrics {
	m := &serverMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "apiserver_request_total", Help: "API requests by verb, group, resource, subresource and HTTP code.",
		}, []string{"verb", "group", "resource", "subresource", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "apiserver_request_duration_seconds", Help: "API request latency by verb and resource (watches excluded).",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"verb", "group", "resource", "subresource"}),
		watchers:       prometheus.NewGauge(prometheus.GaugeOpts{Name: "apiserver_longrunning_requests", Help: "Open watch requests."}),
		watchEvents:    prometheus.NewCounter(prometheus.CounterOpts{Name: "apiserver_watch_events_total", Help: "Watch events sent to clients."}),
		objectsCreated: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_apiserver_objects_created_total", Help: "Objects created through the API."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.watchers, m.watchEvents, m.objectsCreated)
	}
	return m
}

func (m *serverMetrics) observe(req *request, code int, d time.Duration) {
	gr := req.ep.res.GVR
	m.requests.WithLabelValues(req.verb, gr.Group, gr.Resource, req.subresource, strconv.Itoa(code)).Inc()
	m.latency.WithLabelValues(req.verb, gr.Group, gr.Resource, req.subresource).Observe(d.Seconds())
}

func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
