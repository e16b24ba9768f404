// Package replicaset keeps each ReplicaSet's number of pods at its replicas:
// it creates pods from the template with a controller ownerReference, adopts
// matching orphans, deletes the least useful pods first (unscheduled, then
// pending, then not ready, then the newest), and reports replicas, ready and
// available counts in the status. Expectations keep a burst of its own
// writes from being counted twice before the informer sees them. The same
// controller runs core/v1 ReplicationControllers, seen as ReplicaSets
// through a Kind (see package replication), as Kubernetes' does.
package replicaset

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// burst bounds the pods created or deleted in one sync.
const burst = 500

// Kind is what the controller needs of a kind it keeps at its replicas:
// ReplicaSets, or another kind seen as ReplicaSets (ReplicationControllers).
type Kind struct {
	// Name names the control loop and is the field manager of its writes.
	Name string
	// GVK is the kind the pods' controller references name.
	GVK schema.GroupVersionKind
	// Informer watches the kind's objects.
	Informer cache.SharedIndexInformer
	// Get is a cached object as a ReplicaSet (not to be changed).
	Get func(namespace, name string) (*appsv1.ReplicaSet, error)
	// List is every cached object of a namespace as ReplicaSets.
	List func(namespace string) ([]*appsv1.ReplicaSet, error)
	// UpdateStatus writes rs.Status to the object rs stands for.
	UpdateStatus func(ctx context.Context, rs *appsv1.ReplicaSet) error
}

// Controller reconciles ReplicaSets (or the kind it was made for).
type Controller struct {
	client kubernetes.Interface
	loop   *loop.Loop
	kind   Kind
	pods   corelisters.PodLister

	mu     sync.Mutex
	expect map[string]*expectation
}

// expectation counts the creates and deletes a sync issued and the
// informer has not shown yet.
type expectation struct {
	adds, dels int
	at         time.Time
}

// New builds the ReplicaSet controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	inf := factory.Apps().V1().ReplicaSets()
	lister := inf.Lister()
	return NewForKind(cs, factory, Kind{
		Name:     "replicaset-controller",
		GVK:      appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Informer: inf.Informer(),
		Get:      func(ns, name string) (*appsv1.ReplicaSet, error) { return lister.ReplicaSets(ns).Get(name) },
		List:     func(ns string) ([]*appsv1.ReplicaSet, error) { return lister.ReplicaSets(ns).List(labels.Everything()) },
		UpdateStatus: func(ctx context.Context, rs *appsv1.ReplicaSet) error {
			_, err := cs.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
			return err
		},
	})
}

// NewForKind builds the controller for a kind seen as ReplicaSets; its pods
// come from the factory.
func NewForKind(cs kubernetes.Interface, factory informers.SharedInformerFactory, kind Kind) *Controller {
	c := &Controller{client: cs, kind: kind, expect: map[string]*expectation{}}
	c.loop = loop.New(kind.Name, c.sync)
	podInf := factory.Core().V1().Pods()
	c.pods = podInf.Lister()
	c.loop.Synced(kind.Informer.HasSynced, podInf.Informer().HasSynced)
	enqueueRS := func(obj interface{}) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.loop.Add(key)
		}
	}
	_, _ = kind.Informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueRS,
		UpdateFunc: func(_, obj interface{}) { enqueueRS(obj) },
		DeleteFunc: func(obj interface{}) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.mu.Lock()
				delete(c.expect, key)
				c.mu.Unlock()
			}
		},
	})
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { c.podEvent(obj, +1) },
		UpdateFunc: func(old, obj interface{}) {
			c.podEvent(obj, 0)
			if o, n := old.(*corev1.Pod), obj.(*corev1.Pod); o.DeletionTimestamp == nil && n.DeletionTimestamp != nil {
				c.podEvent(obj, -1)
			}
		},
		DeleteFunc: func(obj interface{}) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			seen := -1
			if p, ok := obj.(*corev1.Pod); ok && p.DeletionTimestamp != nil {
				seen = 0 // counted when the deletion began
			}
			c.podEvent(obj, seen)
		},
	})
	return c
}

// podEvent queues the pod's ReplicaSet (or, for an orphan, every set that
// selects it) and settles expectations: +1 an add seen, -1 a delete seen.
func (c *Controller) podEvent(obj interface{}, seen int) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		if gv, err := schema.ParseGroupVersion(ref.APIVersion); err != nil || ref.Kind != c.kind.GVK.Kind || gv.Group != c.kind.GVK.Group {
			return
		}
		key := pod.Namespace + "/" + ref.Name
		c.mu.Lock()
		if e := c.expect[key]; e != nil {
			if seen > 0 {
				e.adds--
			} else if seen < 0 {
				e.dels--
			}
		}
		c.mu.Unlock()
		c.loop.Add(key)
		return
	}
	sets, _ := c.kind.List(pod.Namespace)
	for _, rs := range sets {
		if sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			c.loop.Add(rs.Namespace + "/" + rs.Name)
		}
	}
}

func (c *Controller) satisfied(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.expect[key]
	return e == nil || (e.adds <= 0 && e.dels <= 0) || time.Since(e.at) > 5*time.Minute
}

func (c *Controller) setExpect(key string, adds, dels int) {
	c.mu.Lock()
	c.expect[key] = &expectation{adds: adds, dels: dels, at: time.Now()}
	c.mu.Unlock()
}

func (c *Controller) lowerExpect(key string, adds, dels int) {
	c.mu.Lock()
	if e := c.expect[key]; e != nil {
		e.adds -= adds
		e.dels -= dels
	}
	c.mu.Unlock()
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

func isActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func isReady(p *corev1.Pod) (bool, time.Time) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true, c.LastTransitionTime.Time
		}
	}
	return false, time.Time{}
}

// sync reconciles one ReplicaSet; it returns when to look again (for
// minReadySeconds) or an error.
func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	rs, err := c.kind.Get(ns, name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		return 0, nil // validation refuses these; nothing to do
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var owned []*corev1.Pod
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		switch {
		case ref != nil && ref.UID == rs.UID && rs.DeletionTimestamp == nil && !sel.Matches(labels.Set(p.Labels)):
			// Its labels changed: the set lets it go, as Kubernetes'
			// controller releases a pod it no longer selects.
			if err := c.release(ctx, rs, p); err != nil && !apierrors.IsNotFound(err) {
				return 0, err
			}
		case ref != nil && ref.UID == rs.UID:
			owned = append(owned, p)
		case ref == nil && rs.DeletionTimestamp == nil && p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels)):
			if err := c.adopt(ctx, rs, p); err == nil {
				owned = append(owned, p)
			} else if !apierrors.IsNotFound(err) {
				return 0, err
			}
		}
	}
	var active []*corev1.Pod
	for _, p := range owned {
		if isActive(p) {
			active = append(active, p)
		}
	}
	conds := rs.Status.Conditions
	var manageErr error
	if c.satisfied(key) && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, active)
		conds = replicaFailure(conds, manageErr, int(ptr.Deref(rs.Spec.Replicas, 1))-len(active))
	}
	// The status (with the failure, if any) is written before a failed
	// sync is retried, so that clients see why pods are missing.
	recheck, err := c.updateStatus(ctx, rs, active, conds)
	if manageErr != nil {
		return 0, manageErr
	}
	return recheck, err
}

// replicaFailure sets the ReplicaFailure condition when creating or
// deleting pods failed (a quota refused them, say) and drops it once a
// sync succeeds, as Kubernetes' controller reports it. A condition already
// set stays as it is: the error names the pod that was refused, a new name
// each sync, and rewriting it made a status write on every retry.
func replicaFailure(conds []appsv1.ReplicaSetCondition, err error, diff int) []appsv1.ReplicaSetCondition {
	var out []appsv1.ReplicaSetCondition
	var prev *appsv1.ReplicaSetCondition
	for i := range conds {
		if conds[i].Type == appsv1.ReplicaSetReplicaFailure {
			prev = &conds[i]
			continue
		}
		out = append(out, conds[i])
	}
	if err == nil {
		return out
	}
	if prev != nil && prev.Status == corev1.ConditionTrue {
		return conds
	}
	reason := "FailedCreate"
	if diff < 0 {
		reason = "FailedDelete"
	}
	c := appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue, Reason: reason, Message: err.Error(), LastTransitionTime: metav1.Now()}
	if prev != nil && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	return append(out, c)
}

func (c *Controller) adopt(ctx context.Context, rs *appsv1.ReplicaSet, p *corev1.Pod) error {
	patch, _ := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{
		"ownerReferences": []metav1.OwnerReference{*metav1.NewControllerRef(rs, c.kind.GVK)},
		"uid":             p.UID,
	}})
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: c.kind.Name})
	return err
}

// release removes the set's controller reference from a pod it no longer
// selects (a patch that names the pod's UID, so a new pod of the same name
// is left alone).
func (c *Controller) release(ctx context.Context, rs *appsv1.ReplicaSet, p *corev1.Pod) error {
	patch, _ := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{
		"ownerReferences": []map[string]interface{}{{"$patch": "delete", "uid": rs.UID}},
		"uid":             p.UID,
	}})
	_, err := c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{FieldManager: c.kind.Name})
	return err
}

func (c *Controller) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, active []*corev1.Pod) error {
	want := int(ptr.Deref(rs.Spec.Replicas, 1))
	diff := want - len(active)
	switch {
	case diff > 0:
		n := min(diff, burst)
		c.setExpect(key, n, 0)
		// Slow start: 1, 2, 4, ... so that a template the API refuses fails
		// once, not n times.
		created := 0
		for batch := 1; created < n; batch *= 2 {
			size := min(batch, n-created)
			errs := make(chan error, size)
			for range size {
				go func() { errs <- c.createPod(ctx, rs) }()
			}
			var first error
			for range size {
				if err := <-errs; err != nil {
					c.lowerExpect(key, 1, 0)
					if first == nil {
						first = err
					}
				}
			}
			created += size
			if first != nil {
				c.lowerExpect(key, n-created, 0)
				return fmt.Errorf("create pods: %w", first)
			}
		}
	case diff < 0:
		victims := rank(active)[:min(-diff, burst)]
		c.setExpect(key, 0, len(victims))
		for _, p := range victims {
			err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil {
				c.lowerExpect(key, 0, 1)
				if !apierrors.IsNotFound(err) {
					return fmt.Errorf("delete pod %s: %w", p.Name, err)
				}
			}
		}
	}
	return nil
}

func (c *Controller) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	t := rs.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: rs.Name + "-", Namespace: rs.Namespace, Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(rs, c.kind.GVK)}},
		Spec: *t.Spec.DeepCopy(),
	}
	_, err := c.client.CoreV1().Pods(rs.Namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: c.kind.Name})
	return err
}

// rank orders pods from the first to delete to the last.
func rank(pods []*corev1.Pod) []*corev1.Pod {
	out := append([]*corev1.Pod(nil), pods...)
	phase := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
			return a.Spec.NodeName == ""
		}
		if phase[a.Status.Phase] != phase[b.Status.Phase] {
			return phase[a.Status.Phase] < phase[b.Status.Phase]
		}
		ra, _ := isReady(a)
		rb, _ := isReady(b)
		if ra != rb {
			return !ra
		}
		return a.CreationTimestamp.After(b.CreationTimestamp.Time)
	})
	return out
}

func (c *Controller) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, active []*corev1.Pod, conds []appsv1.ReplicaSetCondition) (time.Duration, error) {
	st := appsv1.ReplicaSetStatus{Replicas: int32(len(active)), ObservedGeneration: rs.Generation, Conditions: conds}
	tmplLabels := labels.Set(rs.Spec.Template.Labels)
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	var recheck time.Duration
	for _, p := range active {
		if labels.SelectorFromSet(tmplLabels).Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		ready, since := isReady(p)
		if !ready {
			continue
		}
		st.ReadyReplicas++
		if left := minReady - time.Since(since); minReady == 0 || left <= 0 {
			st.AvailableReplicas++
		} else if recheck == 0 || left < recheck {
			recheck = left
		}
	}
	if rs.Status.Replicas == st.Replicas && rs.Status.ReadyReplicas == st.ReadyReplicas && rs.Status.AvailableReplicas == st.AvailableReplicas &&
		rs.Status.FullyLabeledReplicas == st.FullyLabeledReplicas && rs.Status.ObservedGeneration == st.ObservedGeneration &&
		apiequality.Semantic.DeepEqual(rs.Status.Conditions, st.Conditions) {
		return recheck, nil
	}
	upd := rs.DeepCopy()
	upd.Status = st
	if err := c.kind.UpdateStatus(ctx, upd); err != nil && !apierrors.IsNotFound(err) {
		if apierrors.IsConflict(err) {
			return time.Millisecond, nil // the newer object is queued already
		}
		return 0, fmt.Errorf("update status: %w", err)
	}
	return recheck, nil
}
