package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Config is what the proxy needs to know about its node.
type Config struct {
	// NodeName selects the endpoints that traffic policy Local keeps.
	NodeName string
	// Redirect, when set, sends one Service (kube-dns) to a node-local address.
	Redirect *LocalRedirect
	// NodeAddresses lists the addresses NodePort frontends answer on; nil
	// reads the node's IPv4 addresses (loopback excepted) every 10 seconds.
	NodeAddresses func() ([]netip.Addr, error)
	// LBAlgorithm picks the backends of traffic from other hosts (NodePort,
	// LoadBalancer and external IPs): AlgorithmRandom (the default) or
	// AlgorithmMaglev. A Service's AnnotationLBAlgorithm overrides it.
	LBAlgorithm string
}

// Backend selection algorithms for traffic from other hosts.
const (
	AlgorithmRandom = "random"
	AlgorithmMaglev = "maglev"
	// AnnotationLBAlgorithm on a Service picks its algorithm.
	AnnotationLBAlgorithm = "service.petrel.io/lb-algorithm"
)

// ValidAlgorithm says whether name is a backend selection algorithm.
func ValidAlgorithm(name string) bool { return name == AlgorithmRandom || name == AlgorithmMaglev }

// useMaglev says whether svc's external traffic is balanced by Maglev.
func (p *Proxy) useMaglev(svc *corev1.Service) bool {
	algo := p.cfg.LBAlgorithm
	if a, ok := svc.Annotations[AnnotationLBAlgorithm]; ok {
		if ValidAlgorithm(a) {
			algo = a
		} else {
			slog.Warn("proxy: unknown "+AnnotationLBAlgorithm+"; use random or maglev", "service", svc.Namespace+"/"+svc.Name, "value", a)
		}
	}
	return algo == AlgorithmMaglev
}

// Proxy keeps the BPF maps in line with the cluster's Services.
type Proxy struct {
	cfg     Config
	metrics *Metrics

	mu     sync.Mutex // guards tables: the worker and the node address loop write maps
	tables *tables
	owned  map[string][]FrontendKey // Service namespace/name → its frontends
	seen   map[string]string        // EndpointSlice namespace/name → last trigger time observed

	queue     workqueue.TypedRateLimitingInterface[string]
	svcLister corelisters.ServiceLister
	// slices is the EndpointSlice informer's store, indexed by Service.
	slices    cache.Indexer
	podLister corelisters.PodLister // this node's pods (hostPorts); nil without a node name
}

// New builds a proxy writing into maps. It reads back what the maps already
// hold (from pins of an earlier run) so that it rewrites only what changed.
func New(cfg Config, maps *bpfobj.Maps, metrics *Metrics) (*Proxy, error) {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	p := &Proxy{cfg: cfg, metrics: metrics, tables: newTables(maps),
		owned: map[string][]FrontendKey{}, seen: map[string]string{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "proxy"})}
	if err := p.tables.readBack(); err != nil {
		return nil, err
	}
	metrics.watchMaps(maps)
	if metrics.reg != nil {
		metrics.reg.MustRegister(newTrafficCollector(p))
	}
	return p, nil
}

// Run watches Services and EndpointSlices through cs and programs the maps
// until ctx ends. It returns after the first full sync, or with an error.
func (p *Proxy) Run(ctx context.Context, cs kubernetes.Interface) error {
	return p.RunShared(ctx, cs, informers.NewSharedInformerFactory(cs, 0))
}

// RunShared is Run on the Service and EndpointSlice informers of factory,
// which other watchers of the node (its DNS) share: each event is then
// received and decoded once for all of them.
func (p *Proxy) RunShared(ctx context.Context, cs kubernetes.Interface, factory informers.SharedInformerFactory) error {
	svcInf := factory.Core().V1().Services()
	epInf := factory.Discovery().V1().EndpointSlices()
	if err := sliceindex.Add(epInf.Informer()); err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	p.svcLister, p.slices = svcInf.Lister(), epInf.Informer().GetIndexer()
	_, _ = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    p.enqueueService,
		UpdateFunc: func(_, obj interface{}) { p.enqueueService(obj) },
		DeleteFunc: p.enqueueService,
	})
	_, _ = epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    p.enqueueSlice,
		UpdateFunc: func(_, obj interface{}) { p.enqueueSlice(obj) },
		DeleteFunc: func(obj interface{}) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				p.mu.Lock()
				delete(p.seen, key) // its trigger time is of no more use
				p.mu.Unlock()
			}
			p.enqueueSlice(obj)
		},
	})
	synced := []cache.InformerSynced{svcInf.Informer().HasSynced, epInf.Informer().HasSynced}
	if p.cfg.NodeName != "" {
		// The pods of this node, for their hostPorts.
		pods := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + p.cfg.NodeName
		}))
		podInf := pods.Core().V1().Pods()
		p.podLister = podInf.Lister()
		_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    p.enqueuePod,
			UpdateFunc: func(_, obj interface{}) { p.enqueuePod(obj) },
			DeleteFunc: p.enqueuePod,
		})
		pods.Start(ctx.Done())
		synced = append(synced, podInf.Informer().HasSynced)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("proxy: informers did not sync")
	}
	if err := p.syncNodeAddresses(); err != nil {
		slog.Warn("proxy: node addresses", "err", err)
	}
	if err := p.fullSync(); err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		p.queue.ShutDown()
	}()
	go p.work()
	go p.nodeAddressLoop(ctx)
	return nil
}

func (p *Proxy) enqueueService(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		p.queue.Add(key)
	}
}

func (p *Proxy) enqueueSlice(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
		p.queue.Add(s.Namespace + "/" + svc)
	}
}

func (p *Proxy) work() {
	for {
		key, quit := p.queue.Get()
		if quit {
			return
		}
		if err := p.syncService(key); err != nil {
			slog.Error("proxy: sync failed; retrying", "service", key, "err", err)
			p.queue.AddRateLimited(key)
		} else {
			p.queue.Forget(key)
		}
		p.queue.Done(key)
	}
}

// fullSync programs every Service in one batch, then deletes what the maps
// hold that no Service claims (left by an earlier run).
func (p *Proxy) fullSync() error {
	start := time.Now()
	svcs, err := p.svcLister.List(labels.Everything())
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	err = p.batched(func() error {
		for _, s := range svcs {
			key := s.Namespace + "/" + s.Name
			want, slices := p.desired(key)
			if err := p.applyLocked(key, want, slices, start); err != nil {
				return err
			}
		}
		if p.podLister != nil {
			pods, err := p.podLister.List(labels.Everything())
			if err != nil {
				return err
			}
			for _, pod := range pods {
				if want := desiredHostPorts(pod); len(want) > 0 {
					if err := p.applyLocked(hostPortPrefix+pod.Namespace+"/"+pod.Name, want, nil, start); err != nil {
						return err
					}
				}
			}
		}
		for key, f := range p.tables.frontends {
			if f.owner == "" {
				if err := p.tables.remove(key); err != nil {
					return err
				}
			}
		}
		return nil
	})
	p.metrics.frontends.Set(float64(len(p.tables.frontends)))
	return err
}

// batched runs f with the tables' writes batched (p.mu held). When a batch
// fails, the tables are read back from the maps so that nothing is taken
// as written that is not.
func (p *Proxy) batched(f func() error) error {
	p.tables.begin()
	err := f()
	if ferr := p.tables.flush(); err == nil {
		err = ferr
	}
	if err != nil {
		if rerr := p.tables.resync(); rerr != nil {
			slog.Error("proxy: reading the maps back after a failed batch", "err", rerr)
		}
	}
	return err
}

// ApplyAll programs many Services at once, in one batch of map writes: for
// benchmarks and tools that drive the maps themselves.
func (p *Proxy) ApplyAll(services map[string][]Frontend) error {
	start := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.batched(func() error {
		for key, want := range services {
			if err := p.applyLocked(key, want, nil, start); err != nil {
				return err
			}
		}
		return nil
	})
}

// syncService makes the maps hold the frontends of one Service.
func (p *Proxy) syncService(key string) error {
	start := time.Now()
	if strings.HasPrefix(key, hostPortPrefix) {
		return p.apply(key, p.desiredForPod(key), nil, start)
	}
	want, slices := p.desired(key)
	return p.apply(key, want, slices, start)
}

// desired is what the maps should hold for the Service key, and the
// EndpointSlices it was computed from; nothing once the Service is gone.
func (p *Proxy) desired(key string) ([]Frontend, []*discoveryv1.EndpointSlice) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil, nil
	}
	svc, err := p.svcLister.Services(ns).Get(name)
	var want []Frontend
	var slices []*discoveryv1.EndpointSlice
	if err == nil {
		// The index spares a walk over every slice of the namespace (11 ms
		// a sync at 10,000 Services).
		slices, _ = sliceindex.All(p.slices, ns, name)
		want = desiredFrontends(svc, slices, p.cfg.NodeName, p.cfg.Redirect)
		if p.useMaglev(svc) {
			for i := range want {
				if want[i].Flags&(bpfobj.FlagNodePort|bpfobj.FlagExternal) != 0 {
					want[i].Flags |= bpfobj.FlagMaglev
				}
			}
		}
	}
	return want, slices
}

// apply writes want for the Service key and deletes its frontends not in it.
func (p *Proxy) apply(key string, want []Frontend, slices []*discoveryv1.EndpointSlice, start time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applyLocked(key, want, slices, start)
}

func (p *Proxy) applyLocked(key string, want []Frontend, slices []*discoveryv1.EndpointSlice, start time.Time) error {
	before := p.tables.writes
	keep := make(map[FrontendKey]bool, len(want))
	keys := make([]FrontendKey, 0, len(want))
	for _, f := range want {
		if owner := p.tables.frontends[f.Key]; owner != nil && owner.owner != "" && owner.owner != key {
			slog.Warn("proxy: two services claim one frontend; the first keeps it", "frontend", f.Key, "owner", owner.owner, "service", key)
			continue
		}
		if err := p.tables.apply(key, f); err != nil {
			return err
		}
		keep[f.Key] = true
		keys = append(keys, f.Key)
	}
	for _, k := range p.owned[key] {
		if !keep[k] {
			if err := p.tables.remove(k); err != nil {
				return err
			}
		}
	}
	if len(keys) == 0 {
		delete(p.owned, key)
	} else {
		p.owned[key] = keys
	}
	now := time.Now()
	if p.tables.writes != before {
		p.metrics.syncDuration.Observe(now.Sub(start).Seconds())
		p.metrics.writes.Add(float64(p.tables.writes - before))
	}
	p.observeProgramming(slices, now)
	p.metrics.frontends.Set(float64(len(p.tables.frontends)))
	return nil
}

// observeProgramming reports, once per change of each EndpointSlice, the time
// from the change the endpoints controller recorded to the maps holding it.
func (p *Proxy) observeProgramming(slices []*discoveryv1.EndpointSlice, now time.Time) {
	for _, s := range slices {
		v := s.Annotations[corev1.EndpointsLastChangeTriggerTime]
		if v == "" {
			continue
		}
		id := s.Namespace + "/" + s.Name
		if p.seen[id] == v {
			continue
		}
		p.seen[id] = v
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil && now.After(t) {
			p.metrics.programming.Observe(now.Sub(t).Seconds())
		}
	}
}

// Writes is the number of map updates and deletes so far.
func (p *Proxy) Writes() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tables.writes
}

// Apply programs the given frontends for one Service key (namespace/name)
// directly, without informers, and deletes its frontends not listed: for
// benchmarks and tools that drive the maps themselves.
func (p *Proxy) Apply(service string, want []Frontend) error {
	return p.apply(service, want, nil, time.Now())
}
