// Package filters holds the API server's load shedding: API Priority and
// Fairness (Fairness), and before its configuration can be read, the plain
// limits on the number of requests in flight (InflightLimit).
package filters

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/petrel-project/petrel/controlplane/admission"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/rbac"
)

// Kubernetes' defaults for --max-requests-inflight and
// --max-mutating-requests-inflight.
const (
	DefaultMaxReadOnlyInflight = 400
	DefaultMaxMutatingInflight = 200
)

// InflightLimit sheds load as Kubernetes' max-in-flight filter does: past a
// number of requests being served at once (reads and writes counted apart),
// a new one is answered 429 with Retry-After, which client-go honours by
// waiting and retrying. Long-running requests (watches, logs, exec, attach,
// port-forward) are not counted, and neither is system:masters, so that the
// cluster's own components and its administrator are never shed.
type InflightLimit struct {
	readOnly, mutating chan struct{}
	dropped            *prometheus.CounterVec
}

// NewInflightLimit sheds past readOnly reads and mutating writes at once;
// reg, when set, gets its metrics.
func NewInflightLimit(readOnly, mutating int, reg prometheus.Registerer) *InflightLimit {
	l := &InflightLimit{
		readOnly: make(chan struct{}, readOnly),
		mutating: make(chan struct{}, mutating),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "apiserver_dropped_requests_total",
			Help: "Requests answered 429 because too many were in flight."}, []string{"request_kind"}),
	}
	if reg != nil {
		gauge := func(kind string, slots chan struct{}) prometheus.Collector {
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "apiserver_current_inflight_requests",
				Help:        "Requests being served, by kind (long-running ones and system:masters' are not counted).",
				ConstLabels: prometheus.Labels{"request_kind": kind}}, func() float64 { return float64(len(slots)) })
		}
		reg.MustRegister(l.dropped, gauge("readOnly", l.readOnly), gauge("mutating", l.mutating))
	}
	return l
}

// Admit takes a place for r and returns the func that gives it back, or
// returns the 429 error to answer.
func (l *InflightLimit) Admit(r *http.Request) (done func(), err error) {
	if longRunning(r) {
		return func() {}, nil
	}
	if u, ok := admission.UserFrom(r.Context()); ok && rbac.IsMaster(u.Groups) {
		return func() {}, nil
	}
	slots, kind := l.readOnly, "readOnly"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		slots, kind = l.mutating, "mutating"
	}
	select {
	case slots <- struct{}{}:
		return func() { <-slots }, nil
	default:
		l.dropped.WithLabelValues(kind).Inc()
		return nil, apierrors.NewTooManyRequests("Too many requests, please try again later.", 1)
	}
}

// longRunning reports the requests that stay open for as long as the client
// wants: watches and the streaming subresources.
func longRunning(r *http.Request) bool {
	if isTrue(r.URL.Query().Get("watch")) || strings.Contains(r.URL.Path, "/watch/") {
		return true
	}
	i := strings.LastIndexByte(r.URL.Path, '/')
	switch r.URL.Path[i+1:] {
	case "log", "exec", "attach", "portforward", "proxy":
		return true
	}
	return false
}

// isTrue parses a boolean query parameter as Kubernetes does (strconv.ParseBool).
func isTrue(v string) bool {
	b, err := strconv.ParseBool(v)
	return err == nil && b
}
