// Package disruption keeps each PodDisruptionBudget's status — how many of
// its pods are expected, healthy and needed, and so how many may be
// disrupted now — as Kubernetes' disruption controller does. The API
// server's eviction subresource reads and spends that allowance, so
// `kubectl drain` never takes more pods than a budget allows.
package disruption

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// DeletionTimeout is how long an evicted pod counts as disrupted while its
// deletion has not shown yet, as in Kubernetes.
const DeletionTimeout = 2 * time.Minute

// Controller computes PodDisruptionBudget status.
type Controller struct {
	client kubernetes.Interface
	pdbs   policylisters.PodDisruptionBudgetLister
	pods   corelisters.PodLister
	rss    appslisters.ReplicaSetLister
	deps   appslisters.DeploymentLister
	sets   appslisters.StatefulSetLister
	loop   *loop.Loop
	now    func() time.Time
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	pdbInf, podInf := factory.Policy().V1().PodDisruptionBudgets(), factory.Core().V1().Pods()
	rsInf, depInf, setInf := factory.Apps().V1().ReplicaSets(), factory.Apps().V1().Deployments(), factory.Apps().V1().StatefulSets()
	c := &Controller{client: cs, pdbs: pdbInf.Lister(), pods: podInf.Lister(), rss: rsInf.Lister(),
		deps: depInf.Lister(), sets: setInf.Lister(), now: time.Now}
	c.loop = loop.New("disruption controller", c.sync)
	c.loop.Synced(pdbInf.Informer().HasSynced, podInf.Informer().HasSynced, rsInf.Informer().HasSynced,
		depInf.Informer().HasSynced, setInf.Informer().HasSynced)
	_, _ = pdbInf.Informer().AddEventHandler(c.loop.Handlers())
	// Anything that changes a namespace's pods or their controllers' scale
	// may change its budgets.
	handlers := c.loop.NamespaceHandlers(func(namespace string) []interface{} {
		pdbs, _ := c.pdbs.PodDisruptionBudgets(namespace).List(labels.Everything())
		return loop.Objects(pdbs)
	})
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), rsInf.Informer(), depInf.Informer(), setInf.Informer()} {
		_, _ = inf.AddEventHandler(handlers)
	}
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 2)
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	pdb, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var pods []*corev1.Pod
	if pdb.Spec.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			return 0, nil // validation keeps these out
		}
		if pods, err = c.pods.Pods(ns).List(sel); err != nil {
			return 0, err
		}
	}
	status, recheck := Compute(pdb, pods, c.scaleOf, c.now())
	if apiequality.Semantic.DeepEqual(status, pdb.Status) {
		return recheck, nil
	}
	next := pdb.DeepCopy()
	next.Status = status
	_, err = c.client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: "disruption-controller"})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		// The eviction subresource or a user changed it meanwhile: the
		// informer brings the new one.
		return time.Second, nil
	}
	return recheck, err
}

// scaleOf returns how many pods the controller behind ref wants: a
// ReplicaSet's replicas (its Deployment's when it has one), a
// StatefulSet's; ok is false for other owners.
func (c *Controller) scaleOf(namespace string, ref *metav1.OwnerReference) (int32, types.UID, bool) {
	replicas := func(r *int32) int32 {
		if r == nil {
			return 1
		}
		return *r
	}
	switch ref.Kind {
	case "ReplicaSet":
		rs, err := c.rss.ReplicaSets(namespace).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return 0, "", false
		}
		if owner := metav1.GetControllerOf(rs); owner != nil && owner.Kind == "Deployment" {
			if d, err := c.deps.Deployments(namespace).Get(owner.Name); err == nil && d.UID == owner.UID {
				return replicas(d.Spec.Replicas), d.UID, true
			}
		}
		return replicas(rs.Spec.Replicas), rs.UID, true
	case "StatefulSet":
		set, err := c.sets.StatefulSets(namespace).Get(ref.Name)
		if err != nil || set.UID != ref.UID {
			return 0, "", false
		}
		return replicas(set.Spec.Replicas), set.UID, true
	}
	return 0, "", false
}

// ScaleFunc finds how many pods a pod's controller wants, and which
// controller that is (so that each one counts once).
type ScaleFunc func(namespace string, ref *metav1.OwnerReference) (int32, types.UID, bool)

// Compute returns a budget's status for the pods its selector picks, and
// when to look again (an eviction's record expiring).
func Compute(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, scale ScaleFunc, now time.Time) (policyv1.PodDisruptionBudgetStatus, time.Duration) {
	var recheck time.Duration
	// Pods recently evicted still count as disrupted until their deletion
	// shows or the record expires.
	disrupted := map[string]metav1.Time{}
	for name, at := range pdb.Status.DisruptedPods {
		expires := at.Add(DeletionTimeout)
		if !now.Before(expires) {
			continue
		}
		for _, p := range pods {
			if p.Name == name && p.DeletionTimestamp == nil {
				disrupted[name] = at
				if d := expires.Sub(now); recheck == 0 || d < recheck {
					recheck = d
				}
			}
		}
	}
	healthy := int32(0)
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if _, gone := disrupted[p.Name]; gone {
			continue
		}
		if podutils.IsPodReady(p) {
			healthy++
		}
	}
	expected, desired := expectations(pdb, pods, scale)
	allowed := healthy - desired
	if allowed < 0 || expected <= 0 {
		allowed = 0
	}
	st := policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation, DisruptedPods: disrupted, DisruptionsAllowed: allowed,
		CurrentHealthy: healthy, DesiredHealthy: desired, ExpectedPods: expected,
		Conditions: append([]metav1.Condition(nil), pdb.Status.Conditions...),
	}
	if len(st.DisruptedPods) == 0 {
		st.DisruptedPods = nil
	}
	cond := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionTrue, Reason: policyv1.SufficientPodsReason,
		ObservedGeneration: pdb.Generation}
	if allowed == 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, policyv1.InsufficientPodsReason
	}
	if old := meta.FindStatusCondition(st.Conditions, cond.Type); old != nil && old.Status == cond.Status {
		cond.LastTransitionTime = old.LastTransitionTime
	} else {
		cond.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st, recheck
}

// expectations returns the number of pods the budget expects and how many
// of them must stay healthy. A plain minAvailable count needs only the pods
// that exist; percentages and maxUnavailable are taken of what the pods'
// controllers want (a pod without a known controller counts as one).
func expectations(pdb *policyv1.PodDisruptionBudget, pods []*corev1.Pod, scale ScaleFunc) (expected, desired int32) {
	if m := pdb.Spec.MinAvailable; m != nil && m.Type == intstr.Int {
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				expected++
			}
		}
		return expected, m.IntVal
	}
	seen := map[types.UID]bool{}
	for _, p := range pods {
		ref := metav1.GetControllerOf(p)
		if ref == nil {
			expected++
			continue
		}
		n, uid, ok := scale(p.Namespace, ref)
		if !ok {
			expected++
			continue
		}
		if !seen[uid] {
			seen[uid] = true
			expected += n
		}
	}
	switch {
	case pdb.Spec.MaxUnavailable != nil:
		unavailable, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, int(expected), true)
		desired = expected - int32(unavailable)
		if desired < 0 {
			desired = 0
		}
	case pdb.Spec.MinAvailable != nil:
		v, _ := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, int(expected), true)
		desired = int32(v)
	}
	return expected, desired
}
