package policy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Config is what the policy controller needs to know about its node.
type Config struct {
	NodeName string
	// PinDir holds the pinned policy maps (bpfobj.LoadPodProgram made them).
	PinDir string
	// HostAddrs lists the node's own addresses; nil reads the addresses of
	// the node's interfaces at every sync.
	HostAddrs func() ([]netip.Addr, error)
	// MinInterval bounds how often the maps are written: a burst of changes
	// costs one sync, a single change is written at once. A sync costs well
	// under a millisecond for one change at 1,000 policies, so the default
	// is short: 2 ms.
	MinInterval time.Duration
	// Trace has the BPF programs report every allowed new connection on
	// the ring buffer too (`petrelctl monitor --type trace`), not only drops.
	Trace bool
}

// Controller keeps the policy maps in step with the API.
type Controller struct {
	cfg     Config
	writer  *Writer
	maps    *bpfobj.PolicyMaps
	kick    chan struct{}
	metrics *metrics
	engine  *Engine

	// pending names the objects changed since the last sync, by kind; the
	// informers' handlers only add to it (the sync reads the objects from
	// the caches).
	mu      sync.Mutex
	pending map[string]map[string]struct{}
}

// The kinds of pending keys.
const (
	kindPod       = "pod"
	kindNamespace = "namespace"
	kindPolicy    = "policy"
)

type metrics struct {
	syncs    prometheus.Histogram
	errors   prometheus.Counter
	entries  *prometheus.GaugeVec
	verdicts *prometheus.Desc
	maps     *bpfobj.PolicyMaps
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.verdicts }

// verdictLabels are the verdict and reason labels of each BPF verdict slot.
var verdictLabels = [bpfobj.PolicyStatsPerDir][2]string{
	bpfobj.PolicyVerdictAllowed:    {"allowed", "policy"},
	bpfobj.PolicyVerdictDenied:     {"denied", "policy"},
	bpfobj.PolicyVerdictUnisolated: {"allowed", "not-isolated"},
	bpfobj.PolicyVerdictHost:       {"allowed", "node"},
}

// Collect reads the verdict counters from BPF at scrape time.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	stats, err := bpfobj.PolicyStats(m.maps.Stats)
	if err != nil {
		return
	}
	for d, dir := range []string{"ingress", "egress"} {
		for v, l := range verdictLabels {
			ch <- prometheus.MustNewConstMetric(m.verdicts, prometheus.CounterValue, float64(stats[d][v]), dir, l[0], l[1])
		}
	}
}

// New opens the pinned policy maps and reads back what they hold.
func New(cfg Config, reg prometheus.Registerer) (*Controller, error) {
	if cfg.MinInterval == 0 {
		cfg.MinInterval = 2 * time.Millisecond
	}
	if cfg.HostAddrs == nil {
		cfg.HostAddrs = interfaceAddrs
	}
	maps, err := bpfobj.OpenPolicyMaps(cfg.PinDir, false)
	if err != nil {
		return nil, err
	}
	if err := maps.SetPolicyTrace(cfg.Trace); err != nil {
		maps.Close()
		return nil, fmt.Errorf("policy: %w", err)
	}
	w, err := NewWriter(maps)
	if err != nil {
		maps.Close()
		return nil, err
	}
	m := &metrics{maps: maps,
		syncs: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "petrel_policy_sync_duration_seconds",
			Help:    "Time to compute the NetworkPolicy state of the node and write its difference to the BPF maps.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "petrel_policy_sync_errors_total",
			Help: "NetworkPolicy syncs that failed to write some map entry (retried)."}),
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "petrel_policy_map_entries",
			Help: "Entries the NetworkPolicy maps hold, by map."}, []string{"map"}),
		verdicts: prometheus.NewDesc("petrel_policy_verdicts_total",
			"New connections judged by NetworkPolicy in BPF, by direction, verdict (allowed, denied) and reason (policy: a policy entry allowed it or none did; not-isolated: no policy selects the pod in that direction; node: the node's own address).",
			[]string{"direction", "verdict", "reason"}, nil)}
	if reg != nil {
		reg.MustRegister(m.syncs, m.errors, m.entries, m)
	}
	return &Controller{cfg: cfg, writer: w, maps: maps, kick: make(chan struct{}, 1), metrics: m, engine: NewEngine(cfg.NodeName),
		pending: map[string]map[string]struct{}{}}, nil
}

// stripPod keeps what policy reads of a Pod: the cache of every pod of the
// cluster is this controller's largest memory.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{ObjectMeta: p.ObjectMeta, Spec: corev1.PodSpec{NodeName: p.Spec.NodeName, HostNetwork: p.Spec.HostNetwork},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs}}
	out.ManagedFields, out.Annotations, out.OwnerReferences = nil, nil, nil
	for _, c := range p.Spec.Containers {
		if len(c.Ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: c.Ports})
		}
	}
	return out, nil
}

// Run starts the informers, writes the first state and keeps the maps in
// step until ctx ends.
func (c *Controller) Run(ctx context.Context, cs kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(cs, 0)
	pods := factory.Core().V1().Pods()
	if err := pods.Informer().SetTransform(stripPod); err != nil {
		return fmt.Errorf("policy: pod transform: %w", err)
	}
	stores := map[string]cache.Store{kindPod: pods.Informer().GetStore(),
		kindNamespace: factory.Core().V1().Namespaces().Informer().GetStore(),
		kindPolicy:    factory.Networking().V1().NetworkPolicies().Informer().GetStore()}
	for kind, inf := range map[string]cache.SharedIndexInformer{kindPod: pods.Informer(),
		kindNamespace: factory.Core().V1().Namespaces().Informer(), kindPolicy: factory.Networking().V1().NetworkPolicies().Informer()} {
		note := func(obj any) {
			key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
			if err != nil {
				slog.Warn("policy: object without a key", "kind", kind, "err", err)
				return
			}
			c.enqueue(kind, key)
		}
		h := cache.ResourceEventHandlerFuncs{AddFunc: note, UpdateFunc: func(_, obj any) { note(obj) }, DeleteFunc: note}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("policy: event handler: %w", err)
		}
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("policy: %v cache did not sync", typ)
		}
	}
	if err := c.sync(stores, true); err != nil {
		return err
	}
	go c.loop(ctx, stores)
	return nil
}

// enqueue notes that the object of kind named key changed, and asks for a
// sync.
func (c *Controller) enqueue(kind, key string) {
	c.mu.Lock()
	set := c.pending[kind]
	if set == nil {
		set = map[string]struct{}{}
		c.pending[kind] = set
	}
	set[key] = struct{}{}
	c.mu.Unlock()
	c.Kick()
}

// Kick asks for a sync.
func (c *Controller) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// readHostAddrs tells the engine the node's addresses.
func (c *Controller) readHostAddrs() error {
	addrs, err := c.cfg.HostAddrs()
	if err != nil {
		return fmt.Errorf("policy: the node's addresses: %w", err)
	}
	c.engine.SetHostAddrs(addrs)
	return nil
}

func (c *Controller) loop(ctx context.Context, stores map[string]cache.Store) {
	defer c.maps.Close()
	// The node's addresses have no informer: look again now and then.
	addrs := time.NewTicker(30 * time.Second)
	defer addrs.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-addrs.C:
		case <-retry.C:
		}
		if err := c.sync(stores, false); err != nil {
			slog.Warn("policy: sync failed; retrying", "err", err)
			c.metrics.errors.Inc()
			retry.Reset(time.Second)
		}
		// Bounded frequency: what arrives meanwhile waits for the next sync.
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.cfg.MinInterval):
		}
	}
}

// sync tells the engine the objects changed since the last sync, and
// writes what that changed. The first sync compares every key with what
// the pinned maps hold.
func (c *Controller) sync(stores map[string]cache.Store, first bool) error {
	start := time.Now()
	// The node's addresses have no informer and may appear after the
	// controller starts (a node's uplink, the node-local DNS address): look
	// at every sync, as a reply to the node must never wait for a timer.
	if err := c.readHostAddrs(); err != nil {
		return err
	}
	c.mu.Lock()
	pending := c.pending
	c.pending = map[string]map[string]struct{}{}
	c.mu.Unlock()
	if first {
		// Everything in the caches, whatever the handlers noted so far.
		for kind, st := range stores {
			set := map[string]struct{}{}
			for _, key := range st.ListKeys() {
				set[key] = struct{}{}
			}
			pending[kind] = set
		}
	}
	for kind, keys := range pending {
		for key := range keys {
			obj, ok, err := stores[kind].GetByKey(key)
			if err != nil {
				return fmt.Errorf("policy: read %s %s: %w", kind, key, err)
			}
			switch kind {
			case kindPod:
				p, _ := obj.(*corev1.Pod)
				if !ok {
					p = nil
				}
				c.engine.SetPod(key, p)
			case kindNamespace:
				ns, _ := obj.(*corev1.Namespace)
				if !ok {
					ns = nil
				}
				c.engine.SetNamespace(key, ns)
			case kindPolicy:
				np, _ := obj.(*networkingv1.NetworkPolicy)
				if !ok {
					np = nil
				}
				c.engine.SetPolicy(key, np)
			}
		}
	}
	delta := c.engine.Flush()
	var ch Changes
	var err error
	if first {
		ch, err = c.writer.Apply(c.engine.Desired())
	} else {
		ch, err = c.writer.ApplyDelta(c.engine.Desired(), delta)
	}
	c.metrics.syncs.Observe(time.Since(start).Seconds())
	for name, n := range c.writer.Counts() {
		c.metrics.entries.WithLabelValues(name).Set(float64(n))
	}
	if ch.Upserts+ch.Deletes > 0 {
		slog.Debug("policy: maps written", "upserts", ch.Upserts, "deletes", ch.Deletes, "took", time.Since(start))
	}
	return err
}

// interfaceAddrs are the IPv4 addresses of the node's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}
