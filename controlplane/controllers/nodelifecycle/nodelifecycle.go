// Package nodelifecycle watches that nodes stay alive. A node whose Lease
// (and Ready heartbeat) is older than the grace period gets Ready=Unknown and
// the node.kubernetes.io/unreachable taints; a node reporting Ready=False gets
// the not-ready ones. Pods on such a node are marked not ready (so Services
// stop sending to them), and pods that do not tolerate a NoExecute taint are
// evicted: at once, or after their tolerationSeconds. Taints go when the node
// is Ready again.
package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
)

// Controller monitors node health.
type Controller struct {
	client kubernetes.Interface
	grace  time.Duration
	period time.Duration
	nodes  corelisters.NodeLister
	leases coordinationlisters.LeaseLister
	pods   corelisters.PodLister
	synced []cache.InformerSynced
	// taintedSince records when a NoExecute taint was first seen on a node,
	// for tolerationSeconds.
	taintedSince map[string]time.Time
}

// New builds the controller; grace is how long a silent node stays Ready.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, grace time.Duration) *Controller {
	nodeInf, podInf := factory.Core().V1().Nodes(), factory.Core().V1().Pods()
	leaseInf := factory.Coordination().V1().Leases()
	period := min(5*time.Second, max(grace/4, 500*time.Millisecond))
	return &Controller{client: cs, grace: grace, period: period, nodes: nodeInf.Lister(), leases: leaseInf.Lister(), pods: podInf.Lister(),
		synced:       []cache.InformerSynced{nodeInf.Informer().HasSynced, leaseInf.Informer().HasSynced, podInf.Informer().HasSynced},
		taintedSince: map[string]time.Time{}}
}

// Run monitors until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	// Give nodes a full grace period after a (re)start before judging them:
	// the leader may be new and its informers young.
	started := time.Now()
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if time.Since(started) < c.grace {
			continue
		}
		nodes, _ := c.nodes.List(labels.Everything())
		for _, n := range nodes {
			if err := c.monitor(ctx, n); err != nil && ctx.Err() == nil {
				slog.Warn("node lifecycle", "node", n.Name, "err", err)
			}
		}
	}
}

var (
	unreachableNoExecute  = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	unreachableNoSchedule = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}
	notReadyNoExecute     = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}
	notReadyNoSchedule    = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
)

func readyCondition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// lastHeard is the newer of the node's Lease renewal and Ready heartbeat.
func (c *Controller) lastHeard(n *corev1.Node) time.Time {
	var t time.Time
	if cond := readyCondition(n); cond != nil {
		t = cond.LastHeartbeatTime.Time
	}
	if l, err := c.leases.Leases(corev1.NamespaceNodeLease).Get(n.Name); err == nil {
		if r := renewTime(l); r.After(t) {
			t = r
		}
	}
	if t.IsZero() {
		t = n.CreationTimestamp.Time
	}
	return t
}

func renewTime(l *coordinationv1.Lease) time.Time {
	if l.Spec.RenewTime != nil {
		return l.Spec.RenewTime.Time
	}
	return time.Time{}
}

func (c *Controller) monitor(ctx context.Context, n *corev1.Node) error {
	cond := readyCondition(n)
	silent := time.Since(c.lastHeard(n)) > c.grace
	if silent && (cond == nil || cond.Status != corev1.ConditionUnknown) {
		if err := c.markUnknown(ctx, n.Name); err != nil {
			return err
		}
		slog.Warn("node lifecycle: node stopped reporting; marked Unknown", "node", n.Name, "grace", c.grace)
		if err := c.markPodsNotReady(ctx, n.Name); err != nil {
			return err
		}
		return nil // the informer brings the updated node next round
	}
	var want []corev1.Taint
	switch {
	case cond != nil && cond.Status == corev1.ConditionUnknown:
		want = []corev1.Taint{unreachableNoSchedule, unreachableNoExecute}
	case cond == nil || cond.Status == corev1.ConditionFalse:
		want = []corev1.Taint{notReadyNoSchedule, notReadyNoExecute}
	}
	if err := c.setTaints(ctx, n, want); err != nil {
		return err
	}
	if len(want) == 0 {
		delete(c.taintedSince, n.Name)
		return nil
	}
	since, ok := c.taintedSince[n.Name]
	if !ok {
		since = time.Now()
		c.taintedSince[n.Name] = since
	}
	return c.evict(ctx, n.Name, want[1], since)
}

func (c *Controller) markUnknown(ctx context.Context, name string) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		found := false
		for i := range n.Status.Conditions {
			cond := &n.Status.Conditions[i]
			if cond.Type == corev1.NodeReady {
				found = true
				cond.Status, cond.Reason, cond.Message, cond.LastTransitionTime = corev1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status.", now
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
				Reason: "NodeStatusUnknown", Message: "Kubelet never posted node status.", LastTransitionTime: now})
		}
		_, err = c.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// setTaints makes the node's node.kubernetes.io/{unreachable,not-ready}
// taints exactly want, leaving other taints alone.
func (c *Controller) setTaints(ctx context.Context, n *corev1.Node, want []corev1.Taint) error {
	managed := func(t corev1.Taint) bool {
		return t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady
	}
	var next []corev1.Taint
	for _, t := range n.Spec.Taints {
		if !managed(t) {
			next = append(next, t)
		}
	}
	now := metav1.Now()
	for _, w := range want {
		kept := false
		for _, t := range n.Spec.Taints {
			if t.Key == w.Key && t.Effect == w.Effect {
				next, kept = append(next, t), true
			}
		}
		if !kept {
			w.TimeAdded = &now
			next = append(next, w)
		}
	}
	same := len(next) == len(n.Spec.Taints)
	for i := 0; same && i < len(next); i++ {
		same = next[i].Key == n.Spec.Taints[i].Key && next[i].Effect == n.Spec.Taints[i].Effect
	}
	if same {
		return nil
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh, err := c.client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var taints []corev1.Taint
		for _, t := range fresh.Spec.Taints {
			if !managed(t) {
				taints = append(taints, t)
			}
		}
		for _, t := range next {
			if managed(t) {
				taints = append(taints, t)
			}
		}
		fresh.Spec.Taints = taints
		_, err = c.client.CoreV1().Nodes().Update(ctx, fresh, metav1.UpdateOptions{FieldManager: "node-lifecycle-controller"})
		return err
	})
}

func (c *Controller) podsOn(node string) ([]*corev1.Pod, error) {
	all, err := c.pods.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out, nil
}

// markPodsNotReady takes the pods of a silent node out of Services.
func (c *Controller) markPodsNotReady(ctx context.Context, node string) error {
	pods, err := c.podsOn(node)
	if err != nil {
		return err
	}
	for _, p := range pods {
		upd := p.DeepCopy()
		changed := false
		for i := range upd.Status.Conditions {
			cond := &upd.Status.Conditions[i]
			if cond.Type == corev1.PodReady && cond.Status != corev1.ConditionFalse {
				cond.Status, cond.Reason, cond.LastTransitionTime = corev1.ConditionFalse, "NodeNotReady", metav1.Now()
				changed = true
			}
		}
		if !changed {
			continue
		}
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("mark pod %s/%s not ready: %w", p.Namespace, p.Name, err)
		}
	}
	return nil
}

// evict deletes the node's pods that do not tolerate taint, or whose
// tolerationSeconds have passed since the taint came.
func (c *Controller) evict(ctx context.Context, node string, taint corev1.Taint, since time.Time) error {
	pods, err := c.podsOn(node)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		var tol *corev1.Toleration
		for i := range p.Spec.Tolerations {
			if p.Spec.Tolerations[i].ToleratesTaint(klog.Background(), &taint, false) {
				tol = &p.Spec.Tolerations[i]
				break
			}
		}
		if tol != nil && (tol.TolerationSeconds == nil || time.Since(since) < time.Duration(*tol.TolerationSeconds)*time.Second) {
			continue
		}
		err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		slog.Info("node lifecycle: evicted pod from tainted node", "pod", p.Namespace+"/"+p.Name, "node", node, "taint", taint.Key)
	}
	return nil
}
