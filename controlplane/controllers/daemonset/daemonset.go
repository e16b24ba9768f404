// Package daemonset runs one pod of each DaemonSet on every eligible node:
// nodes matching the template's node selector and affinity whose NoSchedule
// and NoExecute taints the pod tolerates (with the tolerations Kubernetes
// adds to daemon pods). Pods are pinned with node affinity on metadata.name
// and placed by the scheduler; they follow nodes added and removed, and a
// template change rolls out node by node within maxUnavailable.
package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/controllers/revision"
)

var kind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// Controller reconciles DaemonSets.
type Controller struct {
	client  kubernetes.Interface
	loop    *loop.Loop
	history *revision.History
	sets    appslisters.DaemonSetLister
	pods    corelisters.PodLister
	nodes   corelisters.NodeLister
	// failedBackoff spaces out the deletion of failed daemon pods per
	// DaemonSet and node, so that a node that keeps rejecting a pod does
	// not make the controller create and delete pods in a hot loop.
	failedBackoff *flowcontrol.Backoff
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs, failedBackoff: flowcontrol.NewBackOff(time.Second, 15*time.Minute)}
	c.loop = loop.New("daemonset controller", c.sync)
	c.history = revision.NewHistory(cs, factory)
	dInf, pInf, nInf := factory.Apps().V1().DaemonSets(), factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	c.sets, c.pods, c.nodes = dInf.Lister(), pInf.Lister(), nInf.Lister()
	c.loop.Synced(c.history.Synced, dInf.Informer().HasSynced, pInf.Informer().HasSynced, nInf.Informer().HasSynced)
	_, _ = dInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = pInf.Informer().AddEventHandler(c.loop.OwnerHandlers("DaemonSet"))
	all := func(interface{}) {
		sets, _ := c.sets.List(labels.Everything())
		for _, ds := range sets {
			c.loop.Add(ds.Namespace + "/" + ds.Name)
		}
	}
	_, _ = nInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all, UpdateFunc: func(_, n interface{}) { all(n) }, DeleteFunc: all})
	return c
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

// daemonTolerations are what Kubernetes adds to every daemon pod, so that
// daemons stay on nodes that are unhealthy or cordoned.
var daemonTolerations = []corev1.Toleration{
	{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
}

func withDaemonTolerations(spec *corev1.PodSpec) {
	for _, t := range daemonTolerations {
		has := false
		for _, e := range spec.Tolerations {
			if e.Key == t.Key && e.Effect == t.Effect {
				has = true
			}
		}
		if !has {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
}

// placement is what decides where a DaemonSet's pods go, built once per sync.
type placement struct {
	affinity    nodeaffinity.RequiredNodeAffinity
	tolerations []corev1.Toleration
}

func placementOf(ds *appsv1.DaemonSet) placement {
	probe := &corev1.Pod{Spec: *ds.Spec.Template.Spec.DeepCopy()}
	withDaemonTolerations(&probe.Spec)
	return placement{affinity: nodeaffinity.GetRequiredNodeAffinity(probe), tolerations: probe.Spec.Tolerations}
}

// eligible says whether the DaemonSet should run on node.
func (pl placement) eligible(node *corev1.Node) bool {
	if ok, _ := pl.affinity.Match(node); !ok {
		return false
	}
	filter := func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pl.tolerations, filter, false)
	return !untolerated
}

func available(p *corev1.Pod, minReady int32) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return minReady == 0 || time.Since(c.LastTransitionTime.Time) >= time.Duration(minReady)*time.Second
		}
	}
	return false
}

// targetNode reads the node a daemon pod is pinned to.
func targetNode(p *corev1.Pod) string {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName
	}
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			for _, f := range term.MatchFields {
				if f.Key == "metadata.name" && len(f.Values) == 1 {
					return f.Values[0]
				}
			}
		}
	}
	return ""
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	ds, err := c.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil || ds.DeletionTimestamp != nil {
		return 0, err
	}
	return c.syncSet(ctx, ds)
}

func (c *Controller) syncSet(ctx context.Context, ds *appsv1.DaemonSet) (time.Duration, error) {
	ns := ds.Namespace
	// A DaemonSet's pods carry the bare hash of their template, and its
	// revisions the same label, as Kubernetes writes them (kubectl and
	// the conformance suite match pods to revisions by it).
	hash := revision.Hash(&ds.Spec.Template)
	rev, err := c.history.Ensure(ctx, ds, kind, &ds.Spec.Template, revision.HashLabel)
	if err != nil {
		return 0, err
	}
	current := func(p *corev1.Pod) bool {
		// Pods made before the label held the bare hash carry the
		// revision's name: still current, not rolled for a label.
		v := p.Labels[revision.HashLabel]
		return v == hash || v == rev
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	byNode := map[string][]*corev1.Pod{}
	var retryAfter time.Duration
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != ds.UID || p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			// A daemon pod that ended is deleted and replaced, as
			// Kubernetes does, within a back-off per node.
			if wait := c.endedPodWait(ds, targetNode(p)); wait > 0 {
				retryAfter = soonest(retryAfter, wait)
				continue
			}
			slog.Info("daemonset controller: deleting a daemon pod that ended", "daemonset", ns+"/"+ds.Name, "pod", p.Name, "phase", p.Status.Phase)
			if err := c.deletePod(ctx, p); err != nil {
				return 0, err
			}
			continue
		}
		byNode[targetNode(p)] = append(byNode[targetNode(p)], p)
	}
	want := map[string]bool{}
	pl := placementOf(ds)
	for _, n := range nodes {
		if pl.eligible(n) {
			want[n.Name] = true
		}
	}
	var st appsv1.DaemonSetStatus
	var outdated []*corev1.Pod
	unavailable := 0
	for _, n := range nodes {
		pods := byNode[n.Name]
		if !want[n.Name] {
			st.NumberMisscheduled += int32(len(pods))
			for _, p := range pods {
				if err := c.deletePod(ctx, p); err != nil {
					return 0, err
				}
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(pods) == 0 {
			if err := c.createPod(ctx, ds, n.Name, hash); err != nil {
				return 0, err
			}
			unavailable++
			continue
		}
		sort.Slice(pods, func(i, j int) bool { return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp) })
		for _, extra := range pods[1:] {
			if err := c.deletePod(ctx, extra); err != nil {
				return 0, err
			}
		}
		p := pods[0]
		st.CurrentNumberScheduled++
		if current(p) {
			st.UpdatedNumberScheduled++
		} else {
			outdated = append(outdated, p)
		}
		if available(p, ds.Spec.MinReadySeconds) {
			st.NumberAvailable++
		} else {
			unavailable++
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				st.NumberReady++
			}
		}
	}
	// Pods on nodes that are gone.
	for nodeName, pods := range byNode {
		if _, err := c.nodes.Get(nodeName); apierrors.IsNotFound(err) {
			for _, p := range pods {
				if err := c.deletePod(ctx, p); err != nil {
					return 0, err
				}
			}
		}
	}
	if ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType {
		maxUnavailable := intstr.FromInt32(1)
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			maxUnavailable = *ru.MaxUnavailable
		}
		budget, _ := intstr.GetScaledValueFromIntOrPercent(&maxUnavailable, int(st.DesiredNumberScheduled), true)
		budget = max(budget, 1) - unavailable
		// Unavailable outdated pods go first: replacing them costs nothing.
		sort.SliceStable(outdated, func(i, j int) bool {
			return !available(outdated[i], ds.Spec.MinReadySeconds) && available(outdated[j], ds.Spec.MinReadySeconds)
		})
		for _, p := range outdated {
			if available(p, ds.Spec.MinReadySeconds) {
				if budget <= 0 {
					break
				}
				budget--
			}
			if err := c.deletePod(ctx, p); err != nil {
				return 0, err
			}
		}
	}
	inUse := map[string]bool{rev: true}
	for _, pods := range byNode {
		for _, p := range pods {
			// Older pods carry the revision's name, newer ones its hash.
			inUse[revision.Name(ds, p.Labels[revision.HashLabel])] = true
			inUse[p.Labels[revision.HashLabel]] = true
		}
	}
	if err := c.history.Trim(ctx, ds, int(ptr.Deref(ds.Spec.RevisionHistoryLimit, 10)), inUse); err != nil {
		return 0, err
	}
	st.NumberUnavailable = max(st.DesiredNumberScheduled-st.NumberAvailable, 0)
	st.ObservedGeneration = ds.Generation
	old := ds.Status
	if old.ObservedGeneration == st.ObservedGeneration && old.DesiredNumberScheduled == st.DesiredNumberScheduled &&
		old.CurrentNumberScheduled == st.CurrentNumberScheduled && old.NumberMisscheduled == st.NumberMisscheduled &&
		old.NumberReady == st.NumberReady && old.UpdatedNumberScheduled == st.UpdatedNumberScheduled &&
		old.NumberAvailable == st.NumberAvailable && old.NumberUnavailable == st.NumberUnavailable {
		return retryAfter, nil
	}
	upd := ds.DeepCopy()
	st.CollisionCount, st.Conditions = ds.Status.CollisionCount, ds.Status.Conditions
	upd.Status = st
	if _, err := c.client.AppsV1().DaemonSets(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return 0, fmt.Errorf("update status: %w", err)
	}
	return retryAfter, nil
}

// endedPodWait says how long to wait before deleting another ended daemon
// pod of ds on node: zero the first time, then doubling from a second up
// to 15 minutes while pods keep ending there.
func (c *Controller) endedPodWait(ds *appsv1.DaemonSet, node string) time.Duration {
	key := string(ds.UID) + "/" + node
	now := c.failedBackoff.Clock.Now()
	if c.failedBackoff.IsInBackOffSinceUpdate(key, now) {
		return c.failedBackoff.Get(key)
	}
	c.failedBackoff.Next(key, now)
	return 0
}

func soonest(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

func (c *Controller) createPod(ctx context.Context, ds *appsv1.DaemonSet, node, hash string) error {
	t := ds.Spec.Template.DeepCopy()
	lbls := map[string]string{}
	for k, v := range t.Labels {
		lbls[k] = v
	}
	lbls[revision.HashLabel] = hash
	spec := t.Spec
	withDaemonTolerations(&spec)
	// Pinned to the node by affinity on its name; the scheduler binds it.
	pin := corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}}}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	req := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if req == nil || len(req.NodeSelectorTerms) == 0 {
		spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{pin}}
	} else {
		for i := range req.NodeSelectorTerms {
			req.NodeSelectorTerms[i].MatchFields = pin.MatchFields
		}
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ds.Name + "-", Namespace: ds.Namespace, Labels: lbls, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ds, kind)}},
		Spec: spec,
	}
	if _, err := c.client.CoreV1().Pods(ds.Namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: "daemonset-controller"}); err != nil {
		return fmt.Errorf("create daemon pod for node %s: %w", node, err)
	}
	return nil
}

func (c *Controller) deletePod(ctx context.Context, p *corev1.Pod) error {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete pod %s: %w", p.Name, err)
	}
	return nil
}
