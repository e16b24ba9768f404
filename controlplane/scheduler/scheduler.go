// Package scheduler places pods on nodes: a queue with backoff for pods that
// fit nowhere, filters (readiness, unschedulable, nodeSelector and required
// node affinity, taints and tolerations, host ports, resource requests
// against allocatable, inter-pod affinity and anti-affinity), scores as
// kube-scheduler's default profile weighs them (least allocated resources
// counting non-zero default requests, balanced allocation, the default
// topology spreading of a controller's pods by hostname and zone,
// PreferNoSchedule taints, preferred node affinity) with ties broken at
// random, and a bind through the binding subresource. A pod that fits
// nowhere gets PodScheduled=False with the reasons and a FailedScheduling
// event. Events are events.k8s.io/v1, as kube-scheduler writes them.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
)

// Name is the schedulerName this scheduler serves.
const Name = corev1.DefaultSchedulerName

// Scheduler binds unscheduled pods to nodes.
type Scheduler struct {
	client kubernetes.Interface
	queue  workqueue.TypedRateLimitingInterface[string]
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	// claims, volumesLister and classes are read for pods with claims.
	claims        corelisters.PersistentVolumeClaimLister
	volumesLister corelisters.PersistentVolumeLister
	classes       storagelisters.StorageClassLister
	synced        []cache.InformerSynced
	recorder      events.EventRecorder
	events        events.EventBroadcaster

	cache *clusterCache
	next  int // where the next decision starts looking, so load spreads
	// feasible and zoneSeen are the worker's buffers for a decision: the
	// nodes that fit and the zones (by number) among them.
	feasible []feasible
	zoneSeen []bool
	binds    chan struct{} // bounds the bindings in flight

	mu      sync.Mutex
	waiting map[string]bool // fit nowhere last time: retried when nodes change
	// retry asks for the waiting pods to be queued again. Requests made
	// while one is being served fold into one: a thousand node updates in a
	// row queue the waiting pods a few times, not a thousand.
	retry chan struct{}
	// moves counts retry requests, so that a decision can tell whether the
	// nodes changed while it was being made.
	moves atomic.Uint64
	// nominated are the pods that preempted others, by key, placed on the
	// node they wait for; guarded by mu.
	nominated map[string]*podInfo
}

// New builds a scheduler on a shared informer factory; start the factory
// before Run.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Scheduler {
	s := &Scheduler{client: cs, cache: newClusterCache(), waiting: map[string]bool{}, binds: make(chan struct{}, 128), retry: make(chan struct{}, 1),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"})}
	podInf, nodeInf := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	s.pods, s.nodes = podInf.Lister(), nodeInf.Lister()
	pvcInf, pvInf, scInf := factory.Core().V1().PersistentVolumeClaims(), factory.Core().V1().PersistentVolumes(), factory.Storage().V1().StorageClasses()
	s.claims, s.volumesLister, s.classes = pvcInf.Lister(), pvInf.Lister(), scInf.Lister()
	s.synced = []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced,
		pvcInf.Informer().HasSynced, pvInf.Informer().HasSynced, scInf.Informer().HasSynced}
	// A claim made, bound or named, or a volume made, may let a waiting
	// pod fit.
	retry := cache.ResourceEventHandlerFuncs{AddFunc: func(interface{}) { s.retryWaiting() }, UpdateFunc: func(interface{}, interface{}) { s.retryWaiting() }}
	_, _ = pvcInf.Informer().AddEventHandler(retry)
	_, _ = pvInf.Informer().AddEventHandler(retry)
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.podChanged,
		UpdateFunc: func(_, obj interface{}) { s.podChanged(obj) },
		DeleteFunc: s.podDeleted,
	})
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) {
			s.cache.setNode(obj.(*corev1.Node))
			s.retryWaiting()
		},
		UpdateFunc: func(old, obj interface{}) {
			n := obj.(*corev1.Node)
			s.cache.setNode(n)
			if mayFitMore(old.(*corev1.Node), n) {
				s.retryWaiting()
			}
		},
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				s.cache.deleteNode(n.Name)
			}
		},
	})
	// events.k8s.io/v1 events, as kube-scheduler writes them: eventTime,
	// reportingController default-scheduler, reportingInstance
	// default-scheduler-<host>, an action. Harnesses read these fields.
	s.events = events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	s.recorder = s.events.NewRecorder(scheme.Scheme, Name)
	return s
}

// mayFitMore says whether a node update can let a pod fit that did not
// before, as kube-scheduler's queueing hints for node updates: readiness,
// unschedulable, taints, labels or allocatable changed. The periodic status
// writes of a node that changed none of these (heartbeats, images) leave the
// waiting pods where they are.
func mayFitMore(old, cur *corev1.Node) bool {
	if nodeReady(old) != nodeReady(cur) || old.Spec.Unschedulable != cur.Spec.Unschedulable {
		return true
	}
	if !equality.Semantic.DeepEqual(old.Spec.Taints, cur.Spec.Taints) || !maps.Equal(old.Labels, cur.Labels) {
		return true
	}
	return !equality.Semantic.DeepEqual(old.Status.Allocatable, cur.Status.Allocatable)
}

func responsible(pod *corev1.Pod) bool {
	return pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == Name
}

func (s *Scheduler) podChanged(obj interface{}) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	key := pod.Namespace + "/" + pod.Name
	if pod.Spec.NodeName != "" {
		s.cache.setPod(pod)
		s.mu.Lock()
		delete(s.waiting, key)
		delete(s.nominated, key)
		s.mu.Unlock()
		// A pod placed (or freed) changes what fits: pods waiting may go now.
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			s.retryWaiting()
		}
		return
	}
	if pod.DeletionTimestamp == nil && responsible(pod) {
		s.queue.Add(key)
	}
}

func (s *Scheduler) podDeleted(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if pod, ok := obj.(*corev1.Pod); ok {
		key := pod.Namespace + "/" + pod.Name
		s.cache.removePod(key)
		s.forgetNomination(key)
		s.mu.Lock()
		delete(s.waiting, key)
		s.mu.Unlock()
		if pod.Spec.NodeName != "" {
			s.retryWaiting()
		}
	}
}

// retryWaiting asks for the pods that fit nowhere to be tried again.
func (s *Scheduler) retryWaiting() {
	s.moves.Add(1)
	select {
	case s.retry <- struct{}{}:
	default: // a request is pending already; it will see this change too
	}
}

// requeueWaiting serves retry requests until ctx ends.
func (s *Scheduler) requeueWaiting(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.retry:
			s.requeueWaitingOnce()
		}
	}
}

// requeueWaitingOnce queues every waiting pod once and forgets them: each
// comes back to the waiting set only if it still fits nowhere, so a burst of
// node updates does not queue the same pods over and over.
func (s *Scheduler) requeueWaitingOnce() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.waiting))
	for k := range s.waiting {
		keys = append(keys, k)
	}
	clear(s.waiting)
	s.mu.Unlock()
	for _, k := range keys {
		s.queue.Add(k)
	}
}

// Run schedules until ctx ends. One worker: decisions see each other.
func (s *Scheduler) Run(ctx context.Context) {
	defer s.queue.ShutDown()
	if err := s.events.StartRecordingToSinkWithContext(ctx); err != nil {
		slog.Error("scheduler: cannot record events", "err", err)
	}
	defer s.events.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return
	}
	go s.requeueWaiting(ctx)
	go wait.UntilWithContext(ctx, s.worker, time.Second)
	<-ctx.Done()
}

func (s *Scheduler) worker(ctx context.Context) {
	for {
		key, quit := s.queue.Get()
		if quit {
			return
		}
		err := s.scheduleOne(ctx, key)
		switch {
		case errors.Is(err, errUnschedulable):
			s.queue.AddRateLimited(key)
		case err != nil:
			slog.Warn("scheduler: retrying", "pod", key, "err", err)
			s.queue.AddRateLimited(key)
		default:
			s.queue.Forget(key)
		}
		s.queue.Done(key)
	}
}

var errUnschedulable = errors.New("no node fits")

// feasibleToFind is how many fitting nodes a decision looks for before it
// stops, as kube-scheduler's percentageOfNodesToScore: every node up to
// 100, then a share falling from 50% towards 5% as clusters grow.
func feasibleToFind(nodes int) int {
	if nodes <= 100 {
		return nodes
	}
	pct := max(50-nodes/125, 5)
	return max(nodes*pct/100, 100)
}

func (s *Scheduler) scheduleOne(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || !responsible(pod) || s.cache.has(key) {
		return nil
	}
	cand := newCandidate(pod)
	moves := s.moves.Load()
	vols, why := s.volumes(pod)
	if why != "" {
		s.cache.mu.Lock()
		n := len(s.cache.order)
		s.cache.mu.Unlock()
		return s.unschedulable(ctx, pod, n, map[string]int{why: n}, moves)
	}
	cand.volumeNodes = vols.nodes
	best, nodes, reasons := s.decide(cand)
	if best == "" {
		if s.eligibleToPreempt(pod) {
			if p := s.findPreemption(cand); p != nil {
				nominated, err := s.preempt(ctx, pod, p)
				if err != nil {
					return err
				}
				// The condition below is written over the nomination.
				pod = nominated
			}
		}
		return s.unschedulable(ctx, pod, nodes, reasons, moves)
	}
	s.forgetNomination(key)
	// Assume the pod on the node at once, so the next decision counts it,
	// and bind in the background: the API round trip is not on the
	// scheduling path, as in kube-scheduler's binding cycle.
	placed := pod.DeepCopy()
	placed.Spec.NodeName = best
	s.cache.setPod(placed)
	s.mu.Lock()
	delete(s.waiting, key)
	s.mu.Unlock()
	s.binds <- struct{}{}
	go func() {
		defer func() { <-s.binds }()
		if err := s.selectNode(ctx, vols.delayed, best); err != nil {
			s.cache.removePod(key)
			slog.Warn("scheduler: scheduling again", "pod", key, "err", err)
			s.queue.AddRateLimited(key)
			return
		}
		s.bind(ctx, pod, best)
	}()
	return nil
}

// decide picks the node for the candidate from the cache, or says why none
// fits: the number of nodes and how many failed for each reason. Only the
// worker calls it: it reuses the scheduler's buffers.
func (s *Scheduler) decide(cand *candidate) (best string, nodes int, reasons map[string]int) {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	defer s.reserveNominated(cand)()
	states := s.cache.nodes
	order := s.cache.order
	reasons = map[string]int{}
	want := feasibleToFind(len(order))
	start := 0
	if len(order) > 0 {
		start = s.next % len(order)
	}
	found := s.feasible[:0]
	var zoneCounts []int
	zones := 0
	if cand.group != "" {
		zoneCounts = s.cache.groupZones[cand.group]
		if n := len(s.cache.zoneIDs) + 1; cap(s.zoneSeen) < n {
			s.zoneSeen = make([]bool, n)
		}
		s.zoneSeen = s.zoneSeen[:len(s.cache.zoneIDs)+1]
		clear(s.zoneSeen)
	}
	for k := range order {
		st := order[(start+k)%len(order)]
		ok, why := fits(cand, st, states)
		if !ok {
			reasons[why]++
			continue
		}
		f := feasible{st: st, resources: resourceScore(cand, st), zoneCount: -1}
		preferences(cand, st, &f)
		if cand.group != "" {
			f.hostCount = int32(st.groups[cand.group])
			if id := st.zoneID; id != 0 {
				f.zoneCount = 0
				if id < len(zoneCounts) {
					f.zoneCount = int32(zoneCounts[id])
				}
				if !s.zoneSeen[id] {
					s.zoneSeen[id] = true
					zones++
				}
			}
		}
		if found = append(found, f); len(found) >= want {
			s.next = start + k + 1
			break
		}
	}
	s.feasible = found
	if st := pickBest(cand, found, zones); st != nil {
		best = st.node.Name
	}
	return best, len(order), reasons
}

// bind writes the binding; on failure the assumption is dropped and the
// pod scheduled again.
func (s *Scheduler) bind(ctx context.Context, pod *corev1.Pod, node string) {
	key := pod.Namespace + "/" + pod.Name
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target: corev1.ObjectReference{Kind: "Node", Name: node}}
	if err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return // bound or deleted meanwhile; the informer tells the cache
		}
		s.cache.removePod(key)
		if ctx.Err() == nil {
			slog.Warn("scheduler: bind failed; scheduling again", "pod", key, "node", node, "err", err)
			s.queue.AddRateLimited(key)
		}
		return
	}
	s.recorder.Eventf(pod, nil, corev1.EventTypeNormal, "Scheduled", "Binding", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
}

// unschedulable records why the pod fits nowhere, as Kubernetes words it:
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint ...".
// moves is the retry count seen before the decision: when nodes changed
// since, the pod goes straight back to the queue, as the change may have
// come after the decision read the node and its retry before the pod was
// waiting.
func (s *Scheduler) unschedulable(ctx context.Context, pod *corev1.Pod, nodes int, reasons map[string]int, moves uint64) error {
	parts := make([]string, 0, len(reasons))
	for why, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	msg := fmt.Sprintf("0/%d nodes are available", nodes)
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	msg += "."
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	s.waiting[key] = true
	moved := s.moves.Load() != moves
	s.mu.Unlock()
	if moved {
		s.queue.Add(key)
	}

	var cur *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			cur = &pod.Status.Conditions[i]
		}
	}
	if cur == nil || cur.Status != corev1.ConditionFalse || cur.Message != msg {
		upd := pod.DeepCopy()
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: msg, LastTransitionTime: metav1.Now()}
		replaced := false
		for i := range upd.Status.Conditions {
			if upd.Status.Conditions[i].Type == corev1.PodScheduled {
				upd.Status.Conditions[i], replaced = cond, true
			}
		}
		if !replaced {
			upd.Status.Conditions = append(upd.Status.Conditions, cond)
		}
		if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("record PodScheduled=False: %w", err)
		}
		s.recorder.Eventf(pod, nil, corev1.EventTypeWarning, "FailedScheduling", "Scheduling", "%s", msg)
	}
	return errUnschedulable
}
