// Package job runs Jobs to completion: pods up to parallelism until
// completions succeed (NonIndexed, or Indexed with one pod per index),
// failures retried with exponential backoff until backoffLimit,
// activeDeadlineSeconds, suspend, and ttlSecondsAfterFinished clean-up;
// the status carries active/ready/succeeded/failed, completedIndexes and the
// Complete or Failed condition that `kubectl wait` reads.
package job

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// BackoffBase is the first retry delay after a failed pod; it doubles per
// failure up to BackoffMax, as Kubernetes' job controller does.
var (
	BackoffBase = 10 * time.Second
	BackoffMax  = 6 * time.Minute
)

// Controller reconciles Jobs.
type Controller struct {
	client kubernetes.Interface
	clock  clock.Clock
	loop   *loop.Loop
	jobs   batchlisters.JobLister
	pods   corelisters.PodLister

	// created holds the pods this controller made that its informer has
	// not shown yet, by Job UID: they count as active, so that a sync
	// running before the informer catches up does not create them again
	// (Kubernetes' controllers keep expectations for the same reason).
	mu      sync.Mutex
	created map[types.UID]map[string]*corev1.Pod
}

// createdWait bounds how long a created pod counts without the informer
// showing it (a pod deleted at once is never seen).
const createdWait = time.Minute

// notedCreate records a pod the controller created.
func (c *Controller) notedCreate(j *batchv1.Job, p *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.created[j.UID] == nil {
		c.created[j.UID] = map[string]*corev1.Pod{}
	}
	c.created[j.UID][p.Name] = p
}

// unseenCreated are the Job's pods created but not in the informer's list
// yet (seen holds the names listed); those listed are forgotten.
func (c *Controller) unseenCreated(j *batchv1.Job, seen map[string]bool) []*corev1.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*corev1.Pod
	for name, p := range c.created[j.UID] {
		if seen[name] || time.Since(p.CreationTimestamp.Time) > createdWait {
			delete(c.created[j.UID], name)
			continue
		}
		out = append(out, p)
	}
	if len(c.created[j.UID]) == 0 {
		delete(c.created, j.UID)
	}
	return out
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs, clock: clock.RealClock{}, created: map[types.UID]map[string]*corev1.Pod{}}
	c.loop = loop.New("job controller", c.sync)
	jInf, pInf := factory.Batch().V1().Jobs(), factory.Core().V1().Pods()
	c.jobs, c.pods = jInf.Lister(), pInf.Lister()
	c.loop.Synced(jInf.Informer().HasSynced, pInf.Informer().HasSynced)
	_, _ = jInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = pInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.enqueuePod(nil, obj) },
		UpdateFunc: c.enqueuePod,
		DeleteFunc: func(obj interface{}) { c.enqueuePod(nil, obj) },
	})
	return c
}

// enqueuePod queues the Job that owns a pod, owned it before this change
// (it may have been orphaned or released), or, for a pod without a
// controller, each Job whose selector picks it (to adopt it).
func (c *Controller) enqueuePod(old, obj interface{}) {
	for _, o := range []interface{}{old, obj} {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		p, ok := o.(*corev1.Pod)
		if !ok {
			continue
		}
		ref := metav1.GetControllerOf(p)
		if ref != nil {
			if ref.Kind == "Job" {
				c.loop.Add(p.Namespace + "/" + ref.Name)
			}
			continue
		}
		jobs, err := c.jobs.Jobs(p.Namespace).List(labels.Everything())
		if err != nil {
			continue
		}
		for _, j := range jobs {
			if sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(p.Labels)) {
				c.loop.Add(p.Namespace + "/" + j.Name)
			}
		}
	}
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

func finished(j *batchv1.Job) (bool, *metav1.Time) {
	for _, cond := range j.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return true, &cond.LastTransitionTime
		}
	}
	return false, nil
}

// counts is what the Job's pods say.
type counts struct {
	active           []*corev1.Pod
	ready            int32
	succeeded        int32
	failed           int32
	lastFailure      time.Time
	succeededIndexes map[int]bool
	activeIndexes    map[int]bool
	// failJob is why a failed pod's FailJob rule of the podFailurePolicy
	// ends the Job, or "".
	failJob string
}

func completionIndex(p *corev1.Pod) (int, bool) {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(v)
	return i, err == nil
}

// count tallies the Job's pods, adopting first the orphans its selector
// picks and releasing the pods it owns that its selector no longer picks,
// as Kubernetes' controllers do.
func (c *Controller) count(ctx context.Context, j *batchv1.Job) (counts, error) {
	all, err := c.pods.Pods(j.Namespace).List(labels.Everything())
	if err != nil {
		return counts{}, err
	}
	sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil || sel.Empty() {
		return counts{}, nil // validation refuses these; nothing to do
	}
	out := counts{succeededIndexes: map[int]bool{}, activeIndexes: map[int]bool{}}
	seen := make(map[string]bool, len(all))
	for _, p := range all {
		seen[p.Name] = true
	}
	all = append(all, c.unseenCreated(j, seen)...)
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		matches := sel.Matches(labels.Set(p.Labels))
		switch {
		case ref != nil && ref.UID == j.UID && !matches:
			if err := c.setOwner(ctx, j, p, false); err != nil {
				return counts{}, err
			}
			continue
		case ref == nil && matches && p.DeletionTimestamp == nil:
			if err := c.setOwner(ctx, j, p, true); err != nil {
				return counts{}, err
			}
		case ref == nil || ref.UID != j.UID:
			continue
		}
		idx, indexed := completionIndex(p)
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			out.succeeded++
			if indexed {
				out.succeededIndexes[idx] = true
			}
		case p.Status.Phase == corev1.PodFailed:
			action, why := podFailureAction(j.Spec.PodFailurePolicy, p)
			switch action {
			case batchv1.PodFailurePolicyActionIgnore:
				// Neither counted against backoffLimit nor delaying the
				// replacement.
				continue
			case batchv1.PodFailurePolicyActionFailJob:
				if out.failJob == "" {
					out.failJob = why
				}
			}
			out.failed++
			if t := failureTime(p); t.After(out.lastFailure) {
				out.lastFailure = t
			}
		case p.DeletionTimestamp == nil:
			out.active = append(out.active, p)
			if indexed {
				out.activeIndexes[idx] = true
			}
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					out.ready++
				}
			}
			// OnFailure restarts in place; each restart counts as a failure.
			for _, cs := range p.Status.ContainerStatuses {
				out.failed += cs.RestartCount
			}
		}
	}
	if indexed(j) {
		// Several pods may have succeeded for one index: count indexes.
		out.succeeded = int32(len(out.succeededIndexes))
	}
	return out, nil
}

func failureTime(p *corev1.Pod) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	if t.IsZero() && p.Status.StartTime != nil {
		t = p.Status.StartTime.Time
	}
	return t
}

func indexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	j, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if j.DeletionTimestamp != nil {
		return 0, nil
	}
	if done, at := finished(j); done {
		return c.expire(ctx, j, at)
	}
	cnt, err := c.count(ctx, j)
	if err != nil {
		return 0, err
	}
	now := c.clock.Now()
	st := j.Status.DeepCopy()
	suspended := ptr.Deref(j.Spec.Suspend, false)
	if st.StartTime == nil && !suspended {
		st.StartTime = &metav1.Time{Time: now}
	}
	st.Active, st.Ready, st.Succeeded, st.Failed = int32(len(cnt.active)), ptr.To(cnt.ready), cnt.succeeded, cnt.failed
	if indexed(j) {
		st.CompletedIndexes = formatIndexes(cnt.succeededIndexes)
	}
	var after time.Duration

	completions := j.Spec.Completions
	switch {
	case cnt.failJob != "":
		if err := c.deletePods(ctx, cnt.active); err != nil {
			return 0, err
		}
		setFinished(st, batchv1.JobFailed, batchv1.JobReasonPodFailurePolicy, cnt.failJob, now)
	case cnt.failed > ptr.Deref(j.Spec.BackoffLimit, 6):
		if err := c.deletePods(ctx, cnt.active); err != nil {
			return 0, err
		}
		setFinished(st, batchv1.JobFailed, "BackoffLimitExceeded", "Job has reached the specified backoff limit", now)
	case j.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil && now.Sub(st.StartTime.Time) >= time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second:
		if err := c.deletePods(ctx, cnt.active); err != nil {
			return 0, err
		}
		setFinished(st, batchv1.JobFailed, "DeadlineExceeded", "Job was active longer than specified deadline", now)
	case (completions != nil && cnt.succeeded >= *completions) || (completions == nil && cnt.succeeded > 0 && len(cnt.active) == 0):
		if err := c.deletePods(ctx, cnt.active); err != nil {
			return 0, err
		}
		setFinished(st, batchv1.JobComplete, "CompletionsReached", "Reached expected number of succeeded pods", now)
		st.CompletionTime = &metav1.Time{Time: now}
	case suspended:
		if err := c.deletePods(ctx, cnt.active); err != nil {
			return 0, err
		}
		setCondition(st, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now)
	default:
		setCondition(st, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
		// Failed pods hold back replacements: 10 s, 20 s, 40 s, ...
		if cnt.failed > 0 {
			delay := min(BackoffBase<<min(cnt.failed-1, 10), BackoffMax)
			if wait := delay - now.Sub(cnt.lastFailure); wait > 0 {
				after = wait
				break
			}
		}
		if err := c.createPods(ctx, j, cnt); err != nil {
			return 0, err
		}
		if d := j.Spec.ActiveDeadlineSeconds; d != nil && st.StartTime != nil {
			left := time.Duration(*d)*time.Second - now.Sub(st.StartTime.Time)
			if after == 0 || left < after {
				after = max(left, time.Millisecond)
			}
		}
	}
	if err := c.writeStatus(ctx, j, st); err != nil {
		return 0, err
	}
	return after, nil
}

// createPods starts pods up to parallelism for the work left.
func (c *Controller) createPods(ctx context.Context, j *batchv1.Job, cnt counts) error {
	parallelism := ptr.Deref(j.Spec.Parallelism, 1)
	active := int32(len(cnt.active))
	if indexed(j) {
		n := int(ptr.Deref(j.Spec.Completions, 1))
		for i := 0; i < n && active < parallelism; i++ {
			if cnt.succeededIndexes[i] || cnt.activeIndexes[i] {
				continue
			}
			if err := c.createPod(ctx, j, &i); err != nil {
				return err
			}
			active++
		}
		return nil
	}
	want := parallelism
	if comp := j.Spec.Completions; comp != nil {
		want = min(parallelism, *comp-cnt.succeeded)
	} else if cnt.succeeded > 0 {
		want = 0 // a work queue: once one succeeds, no new pods
	}
	for ; active < want; active++ {
		if err := c.createPod(ctx, j, nil); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) createPod(ctx context.Context, j *batchv1.Job, index *int) error {
	t := j.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: j.Name + "-", Namespace: j.Namespace, Labels: t.Labels, Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job"))}},
		Spec: t.Spec,
	}
	if index != nil {
		s := strconv.Itoa(*index)
		pod.GenerateName = j.Name + "-" + s + "-"
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = s
		pod.Labels = copyMap(pod.Labels)
		pod.Labels[batchv1.JobCompletionIndexAnnotation] = s
		pod.Spec.Hostname = j.Name + "-" + s
		for i := range pod.Spec.Containers {
			pod.Spec.Containers[i].Env = append(pod.Spec.Containers[i].Env, corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", Value: s})
		}
	}
	made, err := c.client.CoreV1().Pods(j.Namespace).Create(ctx, pod, metav1.CreateOptions{FieldManager: "job-controller"})
	if err != nil {
		return fmt.Errorf("create pod: %w", err)
	}
	if made.CreationTimestamp.IsZero() {
		made.CreationTimestamp = metav1.Now()
	}
	c.notedCreate(j, made)
	return nil
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (c *Controller) deletePods(ctx context.Context, pods []*corev1.Pod) error {
	for _, p := range pods {
		if err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete pod %s: %w", p.Name, err)
		}
	}
	return nil
}

// expire deletes a finished Job once its ttlSecondsAfterFinished passed.
func (c *Controller) expire(ctx context.Context, j *batchv1.Job, at *metav1.Time) (time.Duration, error) {
	ttl := j.Spec.TTLSecondsAfterFinished
	if ttl == nil {
		return 0, nil
	}
	left := time.Duration(*ttl)*time.Second - c.clock.Since(at.Time)
	if left > 0 {
		return left, nil
	}
	bg := metav1.DeletePropagationBackground
	err := c.client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg,
		Preconditions: &metav1.Preconditions{UID: &j.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	return 0, nil
}

func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, msg string, now time.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != status {
				st.Conditions[i] = batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
					LastProbeTime: metav1.Time{Time: now}, LastTransitionTime: metav1.Time{Time: now}}
			}
			return
		}
	}
	if t == batchv1.JobSuspended && status == corev1.ConditionFalse {
		return // no condition needed for a Job that was never suspended
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: status, Reason: reason, Message: msg,
		LastProbeTime: metav1.Time{Time: now}, LastTransitionTime: metav1.Time{Time: now}})
}

// setFinished adds the terminal condition with the interim one Kubernetes
// 1.31+ writes before it (SuccessCriteriaMet or FailureTarget).
func setFinished(st *batchv1.JobStatus, t batchv1.JobConditionType, reason, msg string, now time.Time) {
	interim := batchv1.JobFailureTarget
	if t == batchv1.JobComplete {
		interim = batchv1.JobSuccessCriteriaMet
	}
	setCondition(st, interim, corev1.ConditionTrue, reason, msg, now)
	setCondition(st, t, corev1.ConditionTrue, reason, msg, now)
}

func (c *Controller) writeStatus(ctx context.Context, j *batchv1.Job, st *batchv1.JobStatus) error {
	if equalStatus(&j.Status, st) {
		return nil
	}
	upd := j.DeepCopy()
	upd.Status = *st
	if _, err := c.client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			c.loop.Add(j.Namespace + "/" + j.Name)
			return nil
		}
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

func equalStatus(a, b *batchv1.JobStatus) bool {
	if a.Active != b.Active || ptr.Deref(a.Ready, -1) != ptr.Deref(b.Ready, -1) || a.Succeeded != b.Succeeded || a.Failed != b.Failed ||
		a.CompletedIndexes != b.CompletedIndexes || (a.StartTime == nil) != (b.StartTime == nil) ||
		(a.CompletionTime == nil) != (b.CompletionTime == nil) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i].Type != b.Conditions[i].Type || a.Conditions[i].Status != b.Conditions[i].Status {
			return false
		}
	}
	return true
}

// formatIndexes writes "0-2,4" as Kubernetes' completedIndexes does.
func formatIndexes(set map[int]bool) string {
	idx := make([]int, 0, len(set))
	for i := range set {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	var parts []string
	for k := 0; k < len(idx); {
		start := idx[k]
		for k+1 < len(idx) && idx[k+1] == idx[k]+1 {
			k++
		}
		if idx[k] == start {
			parts = append(parts, strconv.Itoa(start))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", start, idx[k]))
		}
		k++
	}
	return strings.Join(parts, ",")
}

// podFailureAction is what the Job's podFailurePolicy says of a failed pod:
// the action of the first rule that matches (Count when none does, or there
// is no policy) and, for FailJob, the message the Job's Failed condition
// carries. FailIndex counts as Count: per-index back-off limits are not
// supported.
func podFailureAction(policy *batchv1.PodFailurePolicy, p *corev1.Pod) (batchv1.PodFailurePolicyAction, string) {
	if policy == nil {
		return batchv1.PodFailurePolicyActionCount, ""
	}
	for i, rule := range policy.Rules {
		if req := rule.OnExitCodes; req != nil {
			if ctr, code, ok := matchExitCodes(req, p); ok {
				return rule.Action, fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d", ctr, p.Namespace, p.Name, code, rule.Action, i)
			}
			continue
		}
		for _, pattern := range rule.OnPodConditions {
			for _, cond := range p.Status.Conditions {
				if cond.Type == pattern.Type && cond.Status == pattern.Status {
					return rule.Action, fmt.Sprintf("Pod %s/%s has condition %s matching %s rule at index %d", p.Namespace, p.Name, cond.Type, rule.Action, i)
				}
			}
		}
	}
	return batchv1.PodFailurePolicyActionCount, ""
}

// matchExitCodes finds a container of the pod that ended with a non-zero
// exit code the requirement selects (zero never matches, as in Kubernetes).
func matchExitCodes(req *batchv1.PodFailurePolicyOnExitCodesRequirement, p *corev1.Pod) (string, int32, bool) {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, cs := range list {
			t := cs.State.Terminated
			if t == nil || t.ExitCode == 0 || (req.ContainerName != nil && *req.ContainerName != cs.Name) {
				continue
			}
			in := slices.Contains(req.Values, t.ExitCode)
			if (req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn) == in {
				return cs.Name, t.ExitCode, true
			}
		}
	}
	return "", 0, false
}

// setOwner adopts a pod (makes the Job its controller) or releases it
// (drops the Job's reference), guarded by the pod's UID so that a pod
// replaced under the same name is left alone. A pod gone meanwhile is no
// error.
func (c *Controller) setOwner(ctx context.Context, j *batchv1.Job, p *corev1.Pod, adopt bool) error {
	var refs []metav1.OwnerReference
	if adopt {
		refs = append(refs, p.OwnerReferences...)
		refs = append(refs, *metav1.NewControllerRef(j, batchv1.SchemeGroupVersion.WithKind("Job")))
	} else {
		for _, r := range p.OwnerReferences {
			if r.UID != j.UID {
				refs = append(refs, r)
			}
		}
	}
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": p.UID, "ownerReferences": refs}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "job-controller"})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		what := "release"
		if adopt {
			what = "adopt"
		}
		return fmt.Errorf("%s pod %s/%s: %w", what, p.Namespace, p.Name, err)
	}
	return nil
}
