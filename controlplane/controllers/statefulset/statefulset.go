// Package statefulset runs StatefulSets: pods <name>-0..N-1 with stable
// names and hostnames under the governing Service, started in order and
// removed in reverse (OrderedReady) or all at once (Parallel), one
// PersistentVolumeClaim per volumeClaimTemplate and ordinal (kept when pods
// go), rolling updates from the highest ordinal down to the partition, and
// ControllerRevisions for `kubectl rollout history/undo`.
package statefulset

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/controllers/revision"
)

var kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Controller reconciles StatefulSets.
type Controller struct {
	client  kubernetes.Interface
	loop    *loop.Loop
	history *revision.History
	sets    appslisters.StatefulSetLister
	pods    corelisters.PodLister
	pvcs    corelisters.PersistentVolumeClaimLister
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs}
	c.loop = loop.New("statefulset controller", loop.Simple(c.sync))
	c.history = revision.NewHistory(cs, factory)
	sInf, pInf, cInf := factory.Apps().V1().StatefulSets(), factory.Core().V1().Pods(), factory.Core().V1().PersistentVolumeClaims()
	c.sets, c.pods, c.pvcs = sInf.Lister(), pInf.Lister(), cInf.Lister()
	c.loop.Synced(c.history.Synced, sInf.Informer().HasSynced, pInf.Informer().HasSynced, cInf.Informer().HasSynced)
	_, _ = sInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = pInf.Informer().AddEventHandler(c.loop.OwnerHandlers("StatefulSet"))
	return c
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

func ordinal(set *appsv1.StatefulSet, p *corev1.Pod) (int, bool) {
	rest, ok := strings.CutPrefix(p.Name, set.Name+"-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i >= 0
}

// partitionOf is the rolling update's partition: ordinals below it keep
// the current revision.
func partitionOf(set *appsv1.StatefulSet) int {
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			return int(*ru.Partition)
		}
	}
	return 0
}

func runningAndReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	set, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || set.DeletionTimestamp != nil {
		return err
	}
	updateRev, err := c.history.Ensure(ctx, set, kind, &set.Spec.Template, revision.StatefulSetHashLabel)
	if err != nil {
		return err
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	replicas := int(ptr.Deref(set.Spec.Replicas, 1))
	byOrdinal := map[int]*corev1.Pod{}
	var extra []*corev1.Pod
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		if ref == nil || ref.UID != set.UID {
			continue
		}
		i, ok := ordinal(set, p)
		switch {
		case !ok:
			continue
		case i >= replicas:
			extra = append(extra, p)
		default:
			byOrdinal[i] = p
		}
	}
	parallel := set.Spec.PodManagementPolicy == appsv1.ParallelPodManagement

	// Failed pods are replaced, as Kubernetes does.
	for i, p := range byOrdinal {
		if p.Status.Phase == corev1.PodFailed && p.DeletionTimestamp == nil {
			if err := c.deletePod(ctx, p); err != nil {
				return err
			}
			delete(byOrdinal, i)
		}
	}
	// Create missing pods, in order unless Parallel. Below a rolling
	// update's partition a pod is made again at the current revision, as
	// Kubernetes does: the partition holds those ordinals back.
	for i := 0; i < replicas; i++ {
		p := byOrdinal[i]
		if p == nil {
			rev, tmpl := updateRev, &set.Spec.Template
			if cur := set.Status.CurrentRevision; cur != "" && cur != updateRev && i < partitionOf(set) {
				if t, err := c.history.Template(set, cur); err == nil {
					rev, tmpl = cur, t
				}
			}
			if err := c.createPod(ctx, set, i, rev, tmpl); err != nil {
				return err
			}
			if !parallel {
				break
			}
			continue
		}
		if !parallel && !runningAndReady(p) {
			break // OrderedReady: wait for this one
		}
	}
	// Scale down from the highest ordinal. OrderedReady removes an
	// unhealthy pod only when it is the lowest unhealthy one, as Kubernetes
	// does: with a broken pod below, scaling down halts.
	sortDesc(extra, set)
	var firstUnhealthy *corev1.Pod
	if !parallel {
		for i := 0; i < replicas && firstUnhealthy == nil; i++ {
			if p := byOrdinal[i]; p != nil && !healthy(p) {
				firstUnhealthy = p
			}
		}
		for i := len(extra) - 1; i >= 0 && firstUnhealthy == nil; i-- {
			if !healthy(extra[i]) {
				firstUnhealthy = extra[i]
			}
		}
	}
	for _, p := range extra {
		if p.DeletionTimestamp != nil {
			if !parallel {
				break
			}
			continue
		}
		if !parallel && !healthy(p) && p != firstUnhealthy {
			break
		}
		if err := c.deletePod(ctx, p); err != nil {
			return err
		}
		if !parallel {
			break
		}
	}
	// Rolling update from the highest ordinal down to the partition, one
	// pod at a time, each only when the others are ready.
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && len(extra) == 0 {
		partition := partitionOf(set)
		allReady := len(byOrdinal) == replicas
		for _, p := range byOrdinal {
			allReady = allReady && runningAndReady(p)
		}
		if allReady {
			for i := replicas - 1; i >= partition; i-- {
				if p := byOrdinal[i]; p.Labels[revision.HashLabel] != updateRev {
					if err := c.deletePod(ctx, p); err != nil {
						return err
					}
					break
				}
			}
		}
	}
	inUse := map[string]bool{updateRev: true, set.Status.CurrentRevision: true}
	for _, p := range byOrdinal {
		inUse[p.Labels[revision.HashLabel]] = true
	}
	if err := c.history.Trim(ctx, set, int(ptr.Deref(set.Spec.RevisionHistoryLimit, 10)), inUse); err != nil {
		return err
	}
	return c.updateStatus(ctx, set, byOrdinal, updateRev)
}

// healthy is a pod running, ready and not on its way out.
func healthy(p *corev1.Pod) bool { return p.DeletionTimestamp == nil && runningAndReady(p) }

func sortDesc(pods []*corev1.Pod, set *appsv1.StatefulSet) {
	for i := 1; i < len(pods); i++ {
		for j := i; j > 0; j-- {
			a, _ := ordinal(set, pods[j-1])
			b, _ := ordinal(set, pods[j])
			if a < b {
				pods[j-1], pods[j] = pods[j], pods[j-1]
			}
		}
	}
}

func (c *Controller) createPod(ctx context.Context, set *appsv1.StatefulSet, i int, rev string, template *corev1.PodTemplateSpec) error {
	t := template.DeepCopy()
	name := fmt.Sprintf("%s-%d", set.Name, i)
	lbls := map[string]string{}
	for k, v := range t.Labels {
		lbls[k] = v
	}
	lbls[appsv1.StatefulSetPodNameLabel] = name
	lbls[appsv1.PodIndexLabel] = strconv.Itoa(i)
	lbls[revision.HashLabel] = rev
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace, Labels: lbls, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)}},
		Spec: t.Spec,
	}
	pod.Spec.Hostname, pod.Spec.Subdomain = name, set.Spec.ServiceName
	for _, tmpl := range set.Spec.VolumeClaimTemplates {
		claim := fmt.Sprintf("%s-%s", tmpl.Name, name)
		if err := c.ensureClaim(ctx, set, tmpl, claim); err != nil {
			return err
		}
		replaced := false
		for k := range pod.Spec.Volumes {
			if pod.Spec.Volumes[k].Name == tmpl.Name {
				pod.Spec.Volumes[k].VolumeSource = corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}
				replaced = true
			}
		}
		if !replaced {
			pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: tmpl.Name,
				VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}})
		}
	}
	if _, err := c.client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: "statefulset-controller"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create pod %s: %w", name, err)
	}
	return nil
}

// ensureClaim creates the ordinal's PVC once; it outlives its pods.
func (c *Controller) ensureClaim(ctx context.Context, set *appsv1.StatefulSet, tmpl corev1.PersistentVolumeClaim, name string) error {
	if _, err := c.pvcs.PersistentVolumeClaims(set.Namespace).Get(name); err == nil {
		return nil
	}
	lbls := map[string]string{}
	for k, v := range set.Spec.Selector.MatchLabels {
		lbls[k] = v
	}
	for k, v := range tmpl.Labels {
		lbls[k] = v
	}
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace, Labels: lbls, Annotations: tmpl.Annotations},
		Spec: *tmpl.Spec.DeepCopy()}
	if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil && p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		claim.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)}
	}
	if _, err := c.client.CoreV1().PersistentVolumeClaims(set.Namespace).Create(ctx, claim, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create claim %s: %w", name, err)
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

func (c *Controller) updateStatus(ctx context.Context, set *appsv1.StatefulSet, pods map[int]*corev1.Pod, updateRev string) error {
	st := appsv1.StatefulSetStatus{ObservedGeneration: set.Generation, UpdateRevision: updateRev, CollisionCount: set.Status.CollisionCount,
		CurrentRevision: set.Status.CurrentRevision}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if runningAndReady(p) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
		if p.Labels[revision.HashLabel] == updateRev {
			st.UpdatedReplicas++
		}
	}
	want := ptr.Deref(set.Spec.Replicas, 1)
	if st.UpdatedReplicas == want && st.ReadyReplicas == want || st.CurrentRevision == "" {
		st.CurrentRevision = updateRev
	}
	st.CurrentReplicas = 0
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Labels[revision.HashLabel] == st.CurrentRevision {
			st.CurrentReplicas++
		}
	}
	old := set.Status
	if old.ObservedGeneration == st.ObservedGeneration && old.Replicas == st.Replicas && old.ReadyReplicas == st.ReadyReplicas &&
		old.AvailableReplicas == st.AvailableReplicas && old.UpdatedReplicas == st.UpdatedReplicas && old.CurrentReplicas == st.CurrentReplicas &&
		old.CurrentRevision == st.CurrentRevision && old.UpdateRevision == st.UpdateRevision {
		return nil
	}
	upd := set.DeepCopy()
	upd.Status = st
	if _, err := c.client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}
