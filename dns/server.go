package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Metrics are the DNS server's Prometheus metrics.
type Metrics struct {
	countersOnce sync.Once
	counters     [8][7]prometheus.Counter
	requests     *prometheus.CounterVec
	latency      prometheus.Histogram
	cacheHits    prometheus.Counter
	cacheMisses  prometheus.Counter
	rebuilds     prometheus.Counter
}

// NewMetrics registers the DNS metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_dns_requests_total", Help: "DNS requests by query type and response code."}, []string{"type", "rcode"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "petrel_dns_request_duration_seconds", Help: "Time to answer a DNS request.",
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 2.5}}),
		cacheHits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_cache_hits_total", Help: "Forwarded names answered from the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_cache_misses_total", Help: "Forwarded names sent upstream."}),
		rebuilds:    prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_snapshot_rebuilds_total", Help: "Times the record snapshot was rebuilt."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.cacheHits, m.cacheMisses, m.rebuilds)
	}
	return m
}

func (m *Metrics) observe(qtype, rcode string, d time.Duration) {
	m.requests.WithLabelValues(qtype, rcode).Inc()
	m.latency.Observe(d.Seconds())
}

// Server serves a Handler over UDP and TCP on one address.
type Server struct {
	udp *udpServer
	tcp *mdns.Server
	// Addr is the address served (with the port picked when it was 0).
	Addr string
}

// Listen binds UDP and TCP on addr and serves h until Shutdown: UDP on the
// batched fast path, TCP through miekg/dns.
func Listen(addr string, h *Handler) (*Server, error) {
	u, err := listenUDP(addr, h)
	if err != nil {
		return nil, fmt.Errorf("listening on udp %s: %w", addr, err)
	}
	// TCP on the same port as UDP (which may have been picked by the kernel).
	ln, err := net.Listen("tcp", u.addr())
	if err != nil {
		u.close()
		return nil, fmt.Errorf("listening on tcp %s: %w", u.addr(), err)
	}
	s := &Server{Addr: u.addr(), udp: u,
		tcp: &mdns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}}
	started := make(chan struct{}, 1)
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	go func() {
		if err := s.tcp.ActivateAndServe(); err != nil {
			slog.Error("dns: tcp server stopped", "err", err)
		}
	}()
	<-started
	return s, nil
}

// Shutdown stops both listeners.
func (s *Server) Shutdown() {
	s.udp.close()
	_ = s.tcp.Shutdown()
}

// Watch keeps h's snapshot in line with the cluster's Services and
// EndpointSlices until ctx ends. It returns once the first snapshot is in.
func Watch(ctx context.Context, cs kubernetes.Interface, zone string, h *Handler, m *Metrics) error {
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(shrink))
	svcInf := factory.Core().V1().Services().Informer()
	epInf := factory.Discovery().V1().EndpointSlices().Informer()
	kick := make(chan struct{}, 1)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { notify(kick) },
		UpdateFunc: func(interface{}, interface{}) { notify(kick) },
		DeleteFunc: func(interface{}) { notify(kick) },
	}
	_, _ = svcInf.AddEventHandler(handler)
	_, _ = epInf.AddEventHandler(handler)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, epInf.HasSynced) {
		return fmt.Errorf("dns: informers did not sync")
	}
	svcLister := factory.Core().V1().Services().Lister()
	epLister := factory.Discovery().V1().EndpointSlices().Lister()
	var lastCost time.Duration
	rebuild := func() {
		start := time.Now()
		defer func() { lastCost = time.Since(start) }()
		svcs, _ := svcLister.List(labels.Everything())
		slices, _ := epLister.List(labels.Everything())
		var si []*ServiceInfo
		for _, s := range svcs {
			si = append(si, &ServiceInfo{Name: s.Name, Namespace: s.Namespace, Type: s.Spec.Type, ClusterIPs: s.Spec.ClusterIPs, ExternalName: s.Spec.ExternalName, Ports: s.Spec.Ports})
		}
		var ei []*EndpointInfo
		for _, es := range slices {
			svc := es.Labels[discoveryv1.LabelServiceName]
			if svc == "" {
				continue
			}
			ei = append(ei, &EndpointInfo{Service: svc, Namespace: es.Namespace, AddressType: es.AddressType, Endpoints: es.Endpoints, Ports: es.Ports})
		}
		h.Swap(BuildSnapshot(zone, si, ei))
		if m != nil {
			m.rebuilds.Inc()
		}
	}
	rebuild()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
				// Coalesce a burst of events into one rebuild, but never wait
				// long: a change must show within 100 ms.
				time.Sleep(rebuildPause(lastCost))
				select {
				case <-kick:
				default:
				}
				rebuild()
			}
		}
	}()
	return nil
}

// rebuildPause is how long to gather events before the next rebuild, given
// what the last one cost. A rebuild walks every Service and slice, so under a
// stream of changes (a bulk load of 10,000 Services) rebuilding every 5 ms
// kept a core busy; pausing four times the rebuild's cost bounds the DNS to a
// fifth of a core, and capping the pause keeps a change visible within about
// 100 ms.
func rebuildPause(lastCost time.Duration) time.Duration {
	return min(max(5*time.Millisecond, 4*lastCost), 80*time.Millisecond)
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// shrink keeps only what the DNS serves in the informers' caches.
func shrink(obj interface{}) (interface{}, error) {
	switch o := obj.(type) {
	case *corev1.Service:
		return &corev1.Service{ObjectMeta: slimMeta(o.ObjectMeta), Spec: corev1.ServiceSpec{Type: o.Spec.Type, ClusterIP: o.Spec.ClusterIP,
			ClusterIPs: o.Spec.ClusterIPs, ExternalName: o.Spec.ExternalName, Ports: o.Spec.Ports}}, nil
	case *discoveryv1.EndpointSlice:
		return &discoveryv1.EndpointSlice{ObjectMeta: slimMeta(o.ObjectMeta), AddressType: o.AddressType, Endpoints: o.Endpoints, Ports: o.Ports}, nil
	}
	return obj, nil
}
