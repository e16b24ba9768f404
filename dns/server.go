package dns

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
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

	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
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
	// serviceUpdates counts the Services whose records were rebuilt.
	serviceUpdates prometheus.Counter
}

// NewMetrics registers the DNS metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "petrel_dns_requests_total", Help: "DNS requests by query type and response code."}, []string{"type", "rcode"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "petrel_dns_request_duration_seconds", Help: "Time to answer a DNS request.",
			Buckets: []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 2.5}}),
		cacheHits:   prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_cache_hits_total", Help: "Forwarded names answered from the cache."}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_cache_misses_total", Help: "Forwarded names sent upstream."}),
		rebuilds: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_snapshot_rebuilds_total",
			Help: "Times the record snapshot was built whole (at start; changes rebuild only their Service's records)."}),
		serviceUpdates: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_dns_service_updates_total",
			Help: "Times one Service's records were rebuilt after a change to it or its EndpointSlices."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.latency, m.cacheHits, m.cacheMisses, m.rebuilds, m.serviceUpdates)
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
	// With port 0 the kernel picks the UDP port, and TCP must take the same
	// number, which another program may hold on TCP alone: pick again.
	_, port, _ := net.SplitHostPort(addr)
	attempts := 1
	if port == "0" {
		attempts = 20
	}
	var u *udpServer
	var ln net.Listener
	for i := 0; ; i++ {
		var err error
		if u, err = listenUDP(addr, h); err != nil {
			return nil, fmt.Errorf("listening on udp %s: %w", addr, err)
		}
		if ln, err = net.Listen("tcp", u.addr()); err == nil {
			break
		}
		u.close()
		if i+1 >= attempts {
			return nil, fmt.Errorf("listening on tcp %s: %w", u.addr(), err)
		}
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

// coalesce is how long changes are gathered before the Services they touch
// are rebuilt: a Service and its slice, created one after the other, are
// then rebuilt once.
const coalesce = 5 * time.Millisecond

// Watch keeps h's snapshot in line with the cluster's Services and
// EndpointSlices until ctx ends. It returns once the first snapshot is in.
// After that, an event marks its Service, and only the marked Services'
// records are rebuilt. Its informers keep only what the DNS serves.
func Watch(ctx context.Context, cs kubernetes.Interface, zone string, h *Handler, m *Metrics) error {
	return WatchShared(ctx, informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTransform(shrink)), zone, h, m)
}

// WatchShared is Watch on the Service and EndpointSlice informers of
// factory, which the node's proxy shares: each event is received and
// decoded once for both. The slice informer gets sliceindex's index, unless
// it has it: give it to the factory's first user before the factory starts.
func WatchShared(ctx context.Context, factory informers.SharedInformerFactory, zone string, h *Handler, m *Metrics) error {
	svcInf := factory.Core().V1().Services().Informer()
	epInf := factory.Discovery().V1().EndpointSlices().Informer()
	if err := sliceindex.Add(epInf); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	d := &dirtySet{keys: map[string]bool{}, kick: make(chan struct{}, 1)}
	svcReg, err := svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    d.markObject,
		UpdateFunc: func(_, obj interface{}) { d.markObject(obj) },
		DeleteFunc: d.markObject,
	})
	if err != nil {
		return fmt.Errorf("dns: watching Services: %w", err)
	}
	epReg, err := epInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: d.markSlice,
		// A slice moved to another Service changes both.
		UpdateFunc: func(old, obj interface{}) { d.markSlice(old); d.markSlice(obj) },
		DeleteFunc: d.markSlice,
	})
	if err != nil {
		return fmt.Errorf("dns: watching EndpointSlices: %w", err)
	}
	factory.Start(ctx.Done())
	// The handlers' own sync: on informers a proxy started, every object
	// already cached is replayed to them as an add, which the full build
	// below covers.
	if !cache.WaitForCacheSync(ctx.Done(), svcReg.HasSynced, epReg.HasSynced) {
		return fmt.Errorf("dns: informers did not sync")
	}
	svcLister := factory.Core().V1().Services().Lister()
	slices := epInf.GetIndexer()
	snap := NewSnapshot(zone)
	// built is, for each Service in the snapshot, the versions of the
	// objects its records were built from: a change that leaves them (a
	// slice of a Service with a cluster IP, whose records do not read
	// slices) rebuilds nothing and keeps its packed answers. Only the
	// goroutine below uses it, after the first build.
	built := map[string]string{}
	initialized := false // the first build is not counted as updates
	syncService := func(key string) {
		ns, name, err := cache.SplitMetaNamespaceKey(key)
		if err != nil {
			return
		}
		s, err := svcLister.Services(ns).Get(name)
		if err != nil {
			delete(built, key)
			snap.DeleteService(ns, name)
			return
		}
		var ess []*discoveryv1.EndpointSlice
		if readsSlices(s) {
			ess, _ = sliceindex.All(slices, ns, name)
		}
		v, ok := inputVersions(s, ess)
		if last, seen := built[key]; ok && seen && last == v {
			return
		}
		built[key] = v
		ei := make([]*EndpointInfo, 0, len(ess))
		for _, es := range ess {
			ei = append(ei, &EndpointInfo{Service: name, Namespace: ns, AddressType: es.AddressType, Endpoints: es.Endpoints, Ports: es.Ports})
		}
		snap.SetService(&ServiceInfo{Name: s.Name, Namespace: s.Namespace, Type: s.Spec.Type, ClusterIPs: s.Spec.ClusterIPs,
			ExternalName: s.Spec.ExternalName, Ports: s.Spec.Ports}, ei)
		if m != nil && initialized {
			m.serviceUpdates.Inc()
		}
	}
	// Events from now on mark what the full build below may miss.
	d.take()
	svcs, err := svcLister.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("dns: listing Services: %w", err)
	}
	for _, s := range svcs {
		syncService(s.Namespace + "/" + s.Name)
	}
	h.Swap(snap)
	initialized = true
	if m != nil {
		m.rebuilds.Inc()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
				time.Sleep(coalesce)
				for _, key := range d.take() {
					syncService(key)
				}
			}
		}
	}()
	return nil
}

// readsSlices says whether a Service's records come from its
// EndpointSlices: a headless Service's do; one with a cluster IP answers its
// cluster IP and an ExternalName its alias.
func readsSlices(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && (len(s.Spec.ClusterIPs) == 0 || s.Spec.ClusterIPs[0] == corev1.ClusterIPNone)
}

// inputVersions names the versions of a Service and of the slices its
// records are built from (sorted: the index gives them in no fixed order);
// ok is false when an object has no version to go by (a fake clientset's).
func inputVersions(s *corev1.Service, slices []*discoveryv1.EndpointSlice) (v string, ok bool) {
	if s.ResourceVersion == "" {
		return "", false
	}
	if len(slices) == 0 {
		return s.ResourceVersion, true
	}
	vs := make([]string, 0, len(slices)+1)
	for _, es := range slices {
		if es.ResourceVersion == "" {
			return "", false
		}
		vs = append(vs, es.Name+"@"+es.ResourceVersion)
	}
	sort.Strings(vs)
	return s.ResourceVersion + " " + strings.Join(vs, " "), true
}

// dirtySet is the Services changed since the last take.
type dirtySet struct {
	mu   sync.Mutex
	keys map[string]bool
	kick chan struct{}
}

func (d *dirtySet) mark(key string) {
	d.mu.Lock()
	d.keys[key] = true
	d.mu.Unlock()
	notify(d.kick)
}

func (d *dirtySet) markObject(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		d.mark(key)
	}
}

func (d *dirtySet) markSlice(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if es, ok := obj.(*discoveryv1.EndpointSlice); ok {
		if svc := es.Labels[discoveryv1.LabelServiceName]; svc != "" {
			d.mark(es.Namespace + "/" + svc)
		}
	}
}

// take empties the set and returns what it held.
func (d *dirtySet) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	keys := make([]string, 0, len(d.keys))
	for k := range d.keys {
		keys = append(keys, k)
	}
	clear(d.keys)
	return keys
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
