// Package cronjob creates Jobs from CronJobs on their schedule (cron syntax
// with an optional CRON_TZ= or timeZone), honouring startingDeadlineSeconds,
// concurrencyPolicy (Allow, Forbid, Replace), suspend, and the successful
// and failed history limits; status.active and lastScheduleTime are what
// `kubectl get cronjob` shows.
package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// ScheduledTimeAnnotation records which schedule slot a Job ran for.
const ScheduledTimeAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// Controller reconciles CronJobs.
type Controller struct {
	client   kubernetes.Interface
	clock    clock.WithTicker
	loop     *loop.Loop
	cronJobs batchlisters.CronJobLister
	jobs     batchlisters.JobLister
}

// New builds the controller; clk is the clock schedules are read against
// (clock.RealClock{} outside tests).
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, clk clock.WithTicker) *Controller {
	c := &Controller{client: cs, clock: clk}
	// The queue runs on the same clock, so that AddAfter for the next slot
	// follows a fake clock in tests.
	c.loop = loop.NewWithQueue("cronjob controller", workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "cronjob", Clock: clk}), c.sync)
	cjInf, jInf := factory.Batch().V1().CronJobs(), factory.Batch().V1().Jobs()
	c.cronJobs, c.jobs = cjInf.Lister(), jInf.Lister()
	c.loop.Synced(cjInf.Informer().HasSynced, jInf.Informer().HasSynced)
	_, _ = cjInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = jInf.Informer().AddEventHandler(c.loop.OwnerHandlers("CronJob"))
	return c
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 1)
}

func parseSchedule(cj *batchv1.CronJob) (cron.Schedule, error) {
	spec := cj.Spec.Schedule
	if tz := ptr.Deref(cj.Spec.TimeZone, ""); tz != "" {
		spec = "CRON_TZ=" + tz + " " + spec
	}
	return cron.ParseStandard(spec)
}

// dueTime is the latest schedule slot in (since, now], or zero. Only the
// latest missed slot runs, as in Kubernetes; a long outage is walked from a
// day back at most.
func dueTime(s cron.Schedule, since, now time.Time) time.Time {
	if day := now.Add(-24 * time.Hour); since.Before(day) {
		since = day
	}
	var due time.Time
	for t := s.Next(since); !t.IsZero() && !t.After(now); t = s.Next(t) {
		due = t
	}
	return due
}

func jobFinished(j *batchv1.Job) (bool, batchv1.JobConditionType) {
	for _, cond := range j.Status.Conditions {
		if (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) && cond.Status == corev1.ConditionTrue {
			return true, cond.Type
		}
	}
	return false, ""
}

func (c *Controller) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	cj, err := c.cronJobs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil || cj.DeletionTimestamp != nil {
		return 0, err
	}
	sched, err := parseSchedule(cj)
	if err != nil {
		slog.Warn("cronjob: unparseable schedule", "cronjob", key, "schedule", cj.Spec.Schedule, "err", err)
		return 0, nil
	}
	all, err := c.jobs.Jobs(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var active, succeeded, failed []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOf(j); ref == nil || ref.UID != cj.UID {
			continue
		}
		switch done, how := jobFinished(j); {
		case !done:
			active = append(active, j)
		case how == batchv1.JobComplete:
			succeeded = append(succeeded, j)
		default:
			failed = append(failed, j)
		}
	}
	st := cj.Status.DeepCopy()
	now := c.clock.Now()
	since := cj.CreationTimestamp.Time
	if st.LastScheduleTime != nil {
		since = st.LastScheduleTime.Time
	}
	due := time.Time{}
	if !ptr.Deref(cj.Spec.Suspend, false) {
		due = dueTime(sched, since, now)
	}
	if !due.IsZero() {
		missedDeadline := cj.Spec.StartingDeadlineSeconds != nil && now.Sub(due) > time.Duration(*cj.Spec.StartingDeadlineSeconds)*time.Second
		switch {
		case missedDeadline:
			st.LastScheduleTime = &metav1.Time{Time: due} // too late: skip this slot
		case cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent && len(active) > 0:
			// Wait for the running Job; the slot is retried until its deadline.
		default:
			if cj.Spec.ConcurrencyPolicy == batchv1.ReplaceConcurrent {
				bg := metav1.DeletePropagationBackground
				for _, j := range active {
					if err := c.client.BatchV1().Jobs(ns).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
						return 0, err
					}
				}
				active = nil
			}
			j, err := c.createJob(ctx, cj, due)
			if err != nil {
				return 0, err
			}
			active = append(active, j)
			st.LastScheduleTime = &metav1.Time{Time: due}
		}
	}
	st.Active = nil
	for _, j := range active {
		st.Active = append(st.Active, corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID})
	}
	for _, j := range succeeded {
		if st.LastSuccessfulTime == nil || j.Status.CompletionTime != nil && j.Status.CompletionTime.After(st.LastSuccessfulTime.Time) {
			st.LastSuccessfulTime = j.Status.CompletionTime
		}
	}
	if err := c.trim(ctx, succeeded, int(ptr.Deref(cj.Spec.SuccessfulJobsHistoryLimit, 3))); err != nil {
		return 0, err
	}
	if err := c.trim(ctx, failed, int(ptr.Deref(cj.Spec.FailedJobsHistoryLimit, 1))); err != nil {
		return 0, err
	}
	if !statusEqual(&cj.Status, st) {
		upd := cj.DeepCopy()
		upd.Status = *st
		if _, err := c.client.BatchV1().CronJobs(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return 0, fmt.Errorf("update status: %w", err)
		}
	}
	next := sched.Next(now)
	return max(next.Sub(now), 100*time.Millisecond), nil
}

func (c *Controller) createJob(ctx context.Context, cj *batchv1.CronJob, due time.Time) (*batchv1.Job, error) {
	// The name carries the slot in minutes, so a retried sync cannot run a
	// slot twice: the second create fails with AlreadyExists.
	name := fmt.Sprintf("%s-%d", cj.Name, due.Unix()/60)
	t := cj.Spec.JobTemplate
	annotations := map[string]string{ScheduledTimeAnnotation: due.UTC().Format(time.RFC3339)}
	for k, v := range t.Annotations {
		annotations[k] = v
	}
	j := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cj.Namespace, Labels: t.Labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, batchv1.SchemeGroupVersion.WithKind("CronJob"))}},
		Spec: *t.Spec.DeepCopy(),
	}
	created, err := c.client.BatchV1().Jobs(cj.Namespace).Create(ctx, j, metav1.CreateOptions{FieldManager: "cronjob-controller"})
	if apierrors.IsAlreadyExists(err) {
		return c.client.BatchV1().Jobs(cj.Namespace).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create job %s: %w", name, err)
	}
	return created, nil
}

// trim deletes the oldest finished Jobs beyond limit.
func (c *Controller) trim(ctx context.Context, jobs []*batchv1.Job, limit int) error {
	sort.Slice(jobs, func(i, k int) bool { return jobs[i].CreationTimestamp.Before(&jobs[k].CreationTimestamp) })
	bg := metav1.DeletePropagationBackground
	for i := 0; i < len(jobs)-limit; i++ {
		if err := c.client.BatchV1().Jobs(jobs[i].Namespace).Delete(ctx, jobs[i].Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

func statusEqual(a, b *batchv1.CronJobStatus) bool {
	if len(a.Active) != len(b.Active) || !a.LastScheduleTime.Equal(b.LastScheduleTime) || !a.LastSuccessfulTime.Equal(b.LastSuccessfulTime) {
		return false
	}
	for i := range a.Active {
		if a.Active[i].UID != b.Active[i].UID {
			return false
		}
	}
	return true
}
