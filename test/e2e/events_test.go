package e2e

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestEventsShareOneStore: core/v1 and events.k8s.io/v1 events are the
// same objects, as in Kubernetes, so what a controller records with the
// new events API shows in `kubectl describe` and `kubectl get events`.
func TestEventsShareOneStore(t *testing.T) {
	s := cluster.StartServer(t)
	cs := s.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	w, err := cs.CoreV1().Events("default").Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("involvedObject.name", "web-1").String()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	created, err := cs.EventsV1().Events("default").Create(ctx, &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1.synced"}, EventTime: metav1.NowMicro(),
		ReportingController: "example.com/widgets", ReportingInstance: "widgets-0", Action: "Reconcile",
		Reason: "Synced", Note: "the widget is in sync", Type: corev1.EventTypeNormal,
		Regarding: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		e, ok := ev.Object.(*corev1.Event)
		if ev.Type != watch.Added || !ok || e.Message != "the widget is in sync" || e.ReportingController != "example.com/widgets" {
			t.Fatalf("core watch saw %s %+v", ev.Type, ev.Object)
		}
		if e.ResourceVersion != created.ResourceVersion {
			t.Fatalf("one object, one resourceVersion: core %s, events.k8s.io %s", e.ResourceVersion, created.ResourceVersion)
		}
	case <-ctx.Done():
		t.Fatal("the core watch did not see the events.k8s.io event")
	}

	// Listed through core/v1 by "source", which for an events.k8s.io event
	// is its reporting controller, as in Kubernetes.
	bySource, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "source=example.com/widgets"})
	if err != nil || len(bySource.Items) != 1 || bySource.Items[0].Name != "web-1.synced" {
		t.Fatalf("core list by source: %v %+v", err, bySource)
	}
	byController, err := cs.EventsV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reportingController=example.com/widgets"})
	if err != nil || len(byController.Items) != 1 {
		t.Fatalf("events.k8s.io list by reportingController: %v %+v", err, byController)
	}

	// A core write, read back through events.k8s.io.
	core, err := cs.CoreV1().Events("default").Get(ctx, "web-1.synced", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	core.Message, core.Count = "changed through core/v1", 2
	if _, err := cs.CoreV1().Events("default").Update(ctx, core, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev, err := cs.EventsV1().Events("default").Get(ctx, "web-1.synced", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Note != "changed through core/v1" || ev.DeprecatedCount != 2 || ev.Regarding.Name != "web-1" {
		t.Fatalf("events.k8s.io reads %+v", ev)
	}
	l, err := cs.EventsV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=web-1"})
	if err != nil || len(l.Items) != 1 {
		t.Fatalf("events.k8s.io list by regarding.name: %v %d", err, len(l.Items))
	}
	// Deleting through one group deletes it for both.
	if err := cs.EventsV1().Events("default").Delete(ctx, "web-1.synced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		_, err := cs.CoreV1().Events("default").Get(ctx, "web-1.synced", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	// events.k8s.io validation still applies to its writes.
	_, err = cs.EventsV1().Events("default").Create(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "no-time"}, Reason: "x"}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("an events.k8s.io event without eventTime: %v", err)
	}
}
