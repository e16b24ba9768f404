package cronjob

import (
	"context"
	"fmt"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

func TestDueTime(t *testing.T) {
	s, err := parseSchedule(&batchv1.CronJob{Spec: batchv1.CronJobSpec{Schedule: "*/5 * * * *"}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	if d := dueTime(s, base, base.Add(4*time.Minute)); !d.IsZero() {
		t.Errorf("nothing due in the first 4 minutes, got %v", d)
	}
	if d := dueTime(s, base, base.Add(12*time.Minute)); !d.Equal(base.Add(10 * time.Minute)) {
		t.Errorf("latest missed slot = %v, want 10:10", d)
	}
	tz, err := parseSchedule(&batchv1.CronJob{Spec: batchv1.CronJobSpec{Schedule: "0 9 * * *", TimeZone: ptr.To("Europe/Paris")}})
	if err != nil {
		t.Fatal(err)
	}
	if next := tz.Next(base); next.UTC().Hour() != 8 { // 09:00 in Paris is 08:00 UTC in November
		t.Errorf("time zone ignored: next = %v", next.UTC())
	}
	if _, err := parseSchedule(&batchv1.CronJob{Spec: batchv1.CronJobSpec{Schedule: "every minute"}}); err == nil {
		t.Error("a bad schedule parsed")
	}
}

// TestCreatesJobsOnSchedule drives the controller with a fake clock: a Job
// per slot, none before, Forbid holds a slot while one runs, and history is
// trimmed.
func TestCreatesJobsOnSchedule(t *testing.T) {
	start := time.Date(2026, 11, 23, 10, 0, 30, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: "default", UID: "cj-uid", CreationTimestamp: metav1.Time{Time: start}},
		Spec: batchv1.CronJobSpec{Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent,
			SuccessfulJobsHistoryLimit: ptr.To(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "i"}}}}}}},
	}
	cs := fake.NewClientset(cj)
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory, clk)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	jobs := func() []batchv1.Job {
		l, err := cs.BatchV1().Jobs("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	syncNow := func() {
		t.Helper()
		// The informers see the fake client's writes shortly after.
		time.Sleep(50 * time.Millisecond)
		if _, err := c.sync(ctx, "default/tick"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	syncNow()
	if n := len(jobs()); n != 0 {
		t.Fatalf("%d jobs before the first slot", n)
	}
	clk.SetTime(start.Add(40 * time.Second)) // 10:01:10
	syncNow()
	got := jobs()
	if len(got) != 1 || got[0].Annotations[ScheduledTimeAnnotation] != "2026-11-23T10:01:00Z" {
		t.Fatalf("after 10:01: %d jobs %v", len(got), got)
	}
	if want := fmt.Sprintf("tick-%d", start.Add(30*time.Second).Unix()/60); got[0].Name != want {
		t.Errorf("job name = %s, want %s", got[0].Name, want)
	}

	clk.SetTime(start.Add(100 * time.Second)) // 10:02:10, the first Job still runs
	syncNow()
	if n := len(jobs()); n != 1 {
		t.Fatalf("Forbid: %d jobs while one runs", n)
	}

	first := got[0]
	first.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	first.Status.CompletionTime = &metav1.Time{Time: clk.Now()}
	if _, err := cs.BatchV1().Jobs("default").UpdateStatus(ctx, &first, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	syncNow()
	if n := len(jobs()); n != 2 {
		t.Fatalf("after the first finished: %d jobs, want 2", n)
	}
	second := jobs()
	for i := range second {
		second[i].Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		if _, err := cs.BatchV1().Jobs("default").UpdateStatus(ctx, &second[i], metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	syncNow()
	if n := len(jobs()); n != 1 {
		t.Errorf("history limit 1: %d finished jobs kept", n)
	}
}
