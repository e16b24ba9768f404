// Package scheduler places pods on nodes: a queue with backoff for pods that
// fit nowhere, filters (readiness, unschedulable, nodeSelector and required
// node affinity, taints and tolerations, host ports, resource requests
// against allocatable, inter-pod affinity and anti-affinity), scores (least
// allocated and balanced resources, spreading the replicas of one owner) and
// a bind through the binding subresource. A pod that fits nowhere gets
// PodScheduled=False with the reasons and a FailedScheduling event.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// Name is the schedulerName this scheduler serves.
const Name = corev1.DefaultSchedulerName

// Scheduler binds unscheduled pods to nodes.
type Scheduler struct {
	client   kubernetes.Interface
	queue    workqueue.TypedRateLimitingInterface[string]
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	recorder record.EventRecorder
	events   record.EventBroadcaster

	mu      sync.Mutex
	assumed map[string]*corev1.Pod // bound by us, not yet seen bound by the informer
	waiting map[string]bool        // fit nowhere last time: retried when nodes change
}

// New builds a scheduler on a shared informer factory; start the factory
// before Run.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Scheduler {
	s := &Scheduler{client: cs, assumed: map[string]*corev1.Pod{}, waiting: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"})}
	podInf, nodeInf := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	s.pods, s.nodes = podInf.Lister(), nodeInf.Lister()
	s.synced = []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced}
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.podChanged,
		UpdateFunc: func(_, obj interface{}) { s.podChanged(obj) },
		DeleteFunc: s.podDeleted,
	})
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(interface{}) { s.retryWaiting() },
		UpdateFunc: func(interface{}, interface{}) { s.retryWaiting() },
	})
	s.events = record.NewBroadcaster()
	s.recorder = s.events.NewRecorder(scheme.Scheme, corev1.EventSource{Component: Name})
	return s
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
		s.mu.Lock()
		delete(s.assumed, key)
		delete(s.waiting, key)
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
		s.mu.Lock()
		delete(s.assumed, key)
		delete(s.waiting, key)
		s.mu.Unlock()
		if pod.Spec.NodeName != "" {
			s.retryWaiting()
		}
	}
}

func (s *Scheduler) retryWaiting() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.waiting))
	for k := range s.waiting {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.queue.Add(k)
	}
}

// Run schedules until ctx ends. One worker: decisions see each other.
func (s *Scheduler) Run(ctx context.Context) {
	defer s.queue.ShutDown()
	stop := s.events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.client.CoreV1().Events("")})
	defer stop.Stop()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return
	}
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

// snapshot is every node with the pods bound or assumed on it.
func (s *Scheduler) snapshot() (map[string]*nodeState, error) {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	states := make(map[string]*nodeState, len(nodes))
	for _, n := range nodes {
		states[n.Name] = newNodeState(n)
	}
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if st := states[p.Spec.NodeName]; st != nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			st.add(p)
		}
	}
	s.mu.Lock()
	for _, p := range s.assumed {
		if st := states[p.Spec.NodeName]; st != nil {
			st.add(p)
		}
	}
	s.mu.Unlock()
	return states, nil
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
	s.mu.Lock()
	_, isAssumed := s.assumed[key]
	s.mu.Unlock()
	if pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || !responsible(pod) || isAssumed {
		return nil
	}
	states, err := s.snapshot()
	if err != nil {
		return err
	}
	best, bestScore := "", -1.0
	reasons := map[string]int{}
	names := make([]string, 0, len(states))
	for n := range states {
		names = append(names, n)
	}
	sort.Strings(names) // ties go to the first name: decisions are repeatable
	for _, n := range names {
		st := states[n]
		ok, why := fits(pod, st, states)
		if !ok {
			reasons[why]++
			continue
		}
		if sc := score(pod, st); sc > bestScore {
			best, bestScore = n, sc
		}
	}
	if best == "" {
		return s.unschedulable(ctx, pod, len(states), reasons)
	}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target: corev1.ObjectReference{Kind: "Node", Name: best}}
	if err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // bound or deleted meanwhile
		}
		return fmt.Errorf("bind to %s: %w", best, err)
	}
	placed := pod.DeepCopy()
	placed.Spec.NodeName = best
	s.mu.Lock()
	s.assumed[key] = placed
	delete(s.waiting, key)
	s.mu.Unlock()
	s.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, best)
	return nil
}

// unschedulable records why the pod fits nowhere, as Kubernetes words it:
// "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had untolerated taint ...".
func (s *Scheduler) unschedulable(ctx context.Context, pod *corev1.Pod, nodes int, reasons map[string]int) error {
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
	s.mu.Lock()
	s.waiting[pod.Namespace+"/"+pod.Name] = true
	s.mu.Unlock()

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
		s.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	}
	return errUnschedulable
}
