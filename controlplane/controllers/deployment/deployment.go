// Package deployment rolls Deployments out through ReplicaSets as Kubernetes
// does: a ReplicaSet per pod template (named by its pod-template-hash),
// RollingUpdate within maxSurge and maxUnavailable or Recreate, revision
// annotations that `kubectl rollout history` and `undo` read, pause and
// resume, progressDeadlineSeconds, minReadySeconds (through the ReplicaSets'
// available counts), and a revisionHistoryLimit on old ReplicaSets.
package deployment

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// Controller reconciles Deployments.
type Controller struct {
	client      kubernetes.Interface
	loop        *loop.Loop
	deployments appslisters.DeploymentLister
	sets        appslisters.ReplicaSetLister
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs}
	c.loop = loop.New("deployment controller", c.sync)
	dInf, rsInf := factory.Apps().V1().Deployments(), factory.Apps().V1().ReplicaSets()
	c.deployments, c.sets = dInf.Lister(), rsInf.Lister()
	c.loop.Synced(dInf.Informer().HasSynced, rsInf.Informer().HasSynced)
	_, _ = dInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = rsInf.Informer().AddEventHandler(c.loop.OwnerHandlers("Deployment"))
	// An orphan ReplicaSet (made by hand, or released by a deleted
	// Deployment with orphan propagation) goes to the Deployments that
	// select it, which adopt it.
	orphan := func(obj interface{}) {
		rs, ok := obj.(*appsv1.ReplicaSet)
		if !ok || metav1.GetControllerOf(rs) != nil {
			return
		}
		ds, _ := c.deployments.Deployments(rs.Namespace).List(labels.Everything())
		for _, d := range ds {
			if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
				c.loop.Add(d.Namespace + "/" + d.Name)
			}
		}
	}
	_, _ = rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: orphan, UpdateFunc: func(_, cur interface{}) { orphan(cur) }})
	return c
}

// claim sorts the namespace's ReplicaSets for d as Kubernetes' controller
// ref manager does: its own that it still selects, orphans it selects
// (adopted: they join the rollout and their revision counts), and its own
// it no longer selects (released).
func (c *Controller) claim(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet) ([]*appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("deployment %s/%s selector: %w", d.Namespace, d.Name, err)
	}
	var owned []*appsv1.ReplicaSet
	for _, rs := range all {
		ref := metav1.GetControllerOf(rs)
		matches := !sel.Empty() && sel.Matches(labels.Set(rs.Labels))
		switch {
		case ref != nil && ref.UID == d.UID && matches:
			owned = append(owned, rs)
		case ref != nil && ref.UID == d.UID:
			patch, _ := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{
				"ownerReferences": []map[string]interface{}{{"$patch": "delete", "uid": d.UID}}, "uid": rs.UID}})
			if _, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("release ReplicaSet %s: %w", rs.Name, err)
			}
		case ref == nil && matches && rs.DeletionTimestamp == nil:
			patch, _ := json.Marshal(map[string]interface{}{"metadata": map[string]interface{}{
				"ownerReferences": []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}, "uid": rs.UID}})
			adopted, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("adopt ReplicaSet %s: %w", rs.Name, err)
			}
			owned = append(owned, adopted)
		}
	}
	return owned, nil
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	d, err := c.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if d.DeletionTimestamp != nil {
		return 0, nil
	}
	all, err := c.sets.ReplicaSets(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	owned, err := c.claim(ctx, d, all)
	if err != nil {
		return 0, err
	}
	var newRS *appsv1.ReplicaSet
	var olds []*appsv1.ReplicaSet
	var maxRev int64
	for _, rs := range owned {
		maxRev = max(maxRev, revision(rs))
		if newRS == nil && sameTemplate(rs, &d.Spec.Template) {
			newRS = rs
		} else {
			olds = append(olds, rs)
		}
	}
	// A changed replica count is followed first, shared out across the
	// active ReplicaSets in proportion (a rollout midway, paused or not,
	// keeps its split); the rollout goes on at the next sync. A paused
	// Deployment does nothing else.
	if scalingEvent(d, owned) {
		if err := c.resizeAll(ctx, d, proportionalStep(d, newRS, olds), newRS, olds); err != nil {
			return 0, err
		}
		return 0, c.updateStatus(ctx, d, newRS, olds)
	}
	if d.Spec.Paused {
		return 0, c.updateStatus(ctx, d, newRS, olds)
	}
	if newRS == nil {
		if newRS, err = c.createNewRS(ctx, d, maxRev+1, olds); err != nil {
			return 0, err
		}
		maxRev++
	} else if revision(newRS) < maxRev {
		// Rolled back to an older template: it becomes the newest revision.
		if newRS, err = c.bumpRevision(ctx, d, newRS, maxRev+1); err != nil {
			return 0, err
		}
		maxRev++
	}

	var p plan
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		p = plan{}
		for _, o := range olds {
			if replicas(o) > 0 {
				p[o.Name] = 0
			}
		}
		oldPods := int32(0)
		for _, o := range olds {
			oldPods += o.Status.Replicas
		}
		if len(p) == 0 && oldPods == 0 && replicas(newRS) != ptr.Deref(d.Spec.Replicas, 1) {
			p[newRS.Name] = ptr.Deref(d.Spec.Replicas, 1)
		}
	} else {
		p = rollingStep(d, newRS, olds)
	}
	if err := c.resizeAll(ctx, d, p, newRS, olds); err != nil {
		return 0, err
	}
	if err := c.cleanup(ctx, d, olds); err != nil {
		return 0, err
	}
	if err := c.updateStatus(ctx, d, newRS, olds); err != nil {
		return 0, err
	}
	if secs := d.Spec.ProgressDeadlineSeconds; secs != nil && !complete(d, newRS, olds) {
		return time.Duration(*secs) * time.Second / 2, nil // look again for the deadline
	}
	return 0, nil
}

func hasActive(sets []*appsv1.ReplicaSet) bool {
	for _, rs := range sets {
		if replicas(rs) > 0 || rs.Status.Replicas > 0 {
			return true
		}
	}
	return false
}

func (c *Controller) createNewRS(ctx context.Context, d *appsv1.Deployment, rev int64, olds []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	hash := templateHash(&d.Spec.Template, d.Status.CollisionCount)
	tmpl := d.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[appsv1.DefaultDeploymentUniqueLabelKey] = hash
	want := ptr.Deref(d.Spec.Replicas, 1)
	start := want
	if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType && hasActive(olds) {
		start = 0 // the rolling step scales it up within maxSurge
	} else if hasActive(olds) {
		start = 0 // Recreate: old pods go first
	}
	surge, _ := surgeAndUnavailable(d)
	annotations := map[string]string{RevisionAnnotation: strconv.FormatInt(rev, 10),
		DesiredAnnotation: strconv.Itoa(int(want)), MaxAnnotation: strconv.Itoa(int(want + surge))}
	if cause := d.Annotations[ChangeCauseAnnotation]; cause != "" {
		annotations[ChangeCauseAnnotation] = cause
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(start), MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *tmpl},
	}
	created, err := c.client.AppsV1().ReplicaSets(d.Namespace).Create(ctx, rs, metav1.CreateOptions{FieldManager: "deployment-controller"})
	if apierrors.IsAlreadyExists(err) {
		// A ReplicaSet of that name with another template: count a
		// collision so that the next hash differs.
		upd := d.DeepCopy()
		upd.Status.CollisionCount = ptr.To(ptr.Deref(d.Status.CollisionCount, 0) + 1)
		if _, uerr := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); uerr != nil {
			return nil, uerr
		}
		return nil, fmt.Errorf("replicaset %s exists with another template; retrying with a new hash", rs.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("create replicaset: %w", err)
	}
	return created, nil
}

func (c *Controller) bumpRevision(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, rev int64) (*appsv1.ReplicaSet, error) {
	upd := rs.DeepCopy()
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[RevisionAnnotation] = strconv.FormatInt(rev, 10)
	if cause := d.Annotations[ChangeCauseAnnotation]; cause != "" {
		upd.Annotations[ChangeCauseAnnotation] = cause
	}
	return c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "deployment-controller"})
}

// resizeAll gives each ReplicaSet of the plan its count.
func (c *Controller) resizeAll(ctx context.Context, d *appsv1.Deployment, p plan, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) error {
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, olds...) {
		if rs == nil {
			continue
		}
		if n, ok := p[rs.Name]; ok {
			if err := c.scale(ctx, d, rs, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// scale sets rs to n replicas and records the Deployment count it was
// sized for (desired-replicas, max-replicas), which the next scaling event
// shares out against; nothing is written when both already hold.
func (c *Controller) scale(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, n int32) error {
	want := ptr.Deref(d.Spec.Replicas, 1)
	surge, _ := surgeAndUnavailable(d)
	desired, maxReplicas := strconv.Itoa(int(want)), strconv.Itoa(int(want+surge))
	if replicas(rs) == n && rs.Annotations[DesiredAnnotation] == desired && rs.Annotations[MaxAnnotation] == maxReplicas {
		return nil
	}
	upd := rs.DeepCopy()
	upd.Spec.Replicas = ptr.To(n)
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[DesiredAnnotation], upd.Annotations[MaxAnnotation] = desired, maxReplicas
	if _, err := c.client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "deployment-controller"}); err != nil {
		return fmt.Errorf("scale replicaset %s to %d: %w", rs.Name, n, err)
	}
	return nil
}

// cleanup deletes the oldest empty old ReplicaSets beyond revisionHistoryLimit.
func (c *Controller) cleanup(ctx context.Context, d *appsv1.Deployment, olds []*appsv1.ReplicaSet) error {
	limit := int(ptr.Deref(d.Spec.RevisionHistoryLimit, 10))
	var empty []*appsv1.ReplicaSet
	for _, o := range olds {
		if replicas(o) == 0 && o.Status.Replicas == 0 && o.DeletionTimestamp == nil {
			empty = append(empty, o)
		}
	}
	oldestFirst(empty)
	for i := 0; i < len(empty)-limit; i++ {
		if err := c.client.AppsV1().ReplicaSets(d.Namespace).Delete(ctx, empty[i].Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func complete(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	return newRS != nil && newRS.Status.Replicas == want && newRS.Status.AvailableReplicas == want && replicas(newRS) == want && !hasActive(olds)
}

func condition(d *appsv1.Deployment, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range d.Status.Conditions {
		if d.Status.Conditions[i].Type == t {
			return &d.Status.Conditions[i]
		}
	}
	return nil
}

// setCondition keeps LastTransitionTime when the status does not change and
// LastUpdateTime when nothing changes at all.
func setCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	now := metav1.Now()
	for i := range st.Conditions {
		cur := &st.Conditions[i]
		if cur.Type != c.Type {
			continue
		}
		if cur.Status == c.Status && cur.Reason == c.Reason && cur.Message == c.Message {
			return
		}
		c.LastUpdateTime = now
		c.LastTransitionTime = cur.LastTransitionTime
		if cur.Status != c.Status {
			c.LastTransitionTime = now
		}
		*cur = c
		return
	}
	c.LastUpdateTime, c.LastTransitionTime = now, now
	st.Conditions = append(st.Conditions, c)
}

func (c *Controller) updateStatus(ctx context.Context, d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) error {
	st := d.Status.DeepCopy()
	st.ObservedGeneration = d.Generation
	st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.UpdatedReplicas = 0, 0, 0, 0
	sets := olds
	if newRS != nil {
		sets = append([]*appsv1.ReplicaSet{newRS}, olds...)
		st.UpdatedReplicas = newRS.Status.Replicas
	}
	for _, rs := range sets {
		st.Replicas += rs.Status.Replicas
		st.ReadyReplicas += rs.Status.ReadyReplicas
		st.AvailableReplicas += rs.Status.AvailableReplicas
	}
	want := ptr.Deref(d.Spec.Replicas, 1)
	st.UnavailableReplicas = max(want-st.AvailableReplicas, 0)
	_, unavailable := surgeAndUnavailable(d)
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		unavailable = want
	}
	if st.AvailableReplicas >= want-unavailable {
		setCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			Reason: "MinimumReplicasAvailable", Message: "Deployment has minimum availability."})
	} else {
		setCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionFalse,
			Reason: "MinimumReplicasUnavailable", Message: "Deployment does not have minimum availability."})
	}
	rsName := ""
	if newRS != nil {
		rsName = newRS.Name
	}
	switch {
	case d.Spec.Paused:
		setCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionUnknown,
			Reason: "DeploymentPaused", Message: "Deployment is paused"})
	case complete(d, newRS, olds):
		setCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
			Reason: "NewReplicaSetAvailable", Message: fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName)})
	default:
		progressed := d.Status.UpdatedReplicas != st.UpdatedReplicas || d.Status.AvailableReplicas != st.AvailableReplicas ||
			d.Status.ObservedGeneration != st.ObservedGeneration
		cur := condition(d, appsv1.DeploymentProgressing)
		deadline := d.Spec.ProgressDeadlineSeconds
		switch {
		case progressed || cur == nil || cur.Reason == "NewReplicaSetAvailable" || cur.Reason == "DeploymentPaused":
			// Progress: the deadline counts from now.
			c := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue,
				Reason: "ReplicaSetUpdated", Message: fmt.Sprintf("ReplicaSet %q is progressing.", rsName)}
			now := metav1.Now()
			c.LastUpdateTime, c.LastTransitionTime = now, now
			replaced := false
			for i := range st.Conditions {
				if st.Conditions[i].Type == c.Type {
					if st.Conditions[i].Status == c.Status {
						c.LastTransitionTime = st.Conditions[i].LastTransitionTime
					}
					st.Conditions[i], replaced = c, true
				}
			}
			if !replaced {
				st.Conditions = append(st.Conditions, c)
			}
		case deadline != nil && cur.Reason == "ReplicaSetUpdated" && time.Since(cur.LastUpdateTime.Time) > time.Duration(*deadline)*time.Second:
			setCondition(st, appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
				Reason: "ProgressDeadlineExceeded", Message: fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName)})
		}
	}
	revChanged := false
	if newRS != nil && d.Annotations[RevisionAnnotation] != newRS.Annotations[RevisionAnnotation] {
		upd := d.DeepCopy()
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[RevisionAnnotation] = newRS.Annotations[RevisionAnnotation]
		fresh, err := c.client.AppsV1().Deployments(d.Namespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: "deployment-controller"})
		if err != nil {
			return fmt.Errorf("annotate revision: %w", err)
		}
		d, revChanged = fresh, true
	}
	if !revChanged && equalStatus(&d.Status, st) {
		return nil
	}
	upd := d.DeepCopy()
	upd.Status = *st
	if _, err := c.client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			c.loop.Add(d.Namespace + "/" + d.Name)
			return nil
		}
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

func equalStatus(a, b *appsv1.DeploymentStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.Replicas != b.Replicas || a.UpdatedReplicas != b.UpdatedReplicas ||
		a.ReadyReplicas != b.ReadyReplicas || a.AvailableReplicas != b.AvailableReplicas || a.UnavailableReplicas != b.UnavailableReplicas ||
		len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message || !x.LastUpdateTime.Equal(&y.LastUpdateTime) {
			return false
		}
	}
	return true
}
