package scheduler

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// startFake runs a scheduler on a fake clientset holding objs; bindings
// are recorded by pod key and applied to the fake's pods, as the API
// server's binding subresource does.
func startFake(t *testing.T, objs ...runtime.Object) (*fake.Clientset, func() map[string]string) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	bound := map[string]string{}
	var mu = make(chan struct{}, 1)
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := a.(k8stesting.CreateAction).GetObject().(*corev1.Binding)
		mu <- struct{}{}
		bound[b.Namespace+"/"+b.Name] = b.Target.Name
		<-mu
		return true, b, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory := informers.NewSharedInformerFactory(cs, 0)
	s := New(cs, factory)
	factory.Start(ctx.Done())
	go s.Run(ctx)
	return cs, func() map[string]string {
		mu <- struct{}{}
		defer func() { <-mu }()
		out := map[string]string{}
		for k, v := range bound {
			out[k] = v
		}
		return out
	}
}

func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// schedEvent is what a test reads of an event through either API.
type schedEvent struct {
	eventTime                     metav1.MicroTime
	controller, instance, action  string
	reason, note, kind, name, typ string
}

// eventsFor lists the events about pods in default through both APIs: the
// old recorder wrote core/v1 events.
func eventsFor(cs *fake.Clientset, reason string) []schedEvent {
	ctx := context.Background()
	var found []schedEvent
	if l, err := cs.EventsV1().Events("default").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range l.Items {
			found = append(found, schedEvent{e.EventTime, e.ReportingController, e.ReportingInstance, e.Action, e.Reason, e.Note, e.Regarding.Kind, e.Regarding.Name, e.Type})
		}
	}
	if l, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{}); err == nil {
		for _, e := range l.Items {
			found = append(found, schedEvent{e.EventTime, e.ReportingController, e.ReportingInstance, e.Action, e.Reason, e.Message, e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Type})
		}
	}
	var out []schedEvent
	for _, e := range found {
		if e.reason == reason {
			out = append(out, e)
		}
	}
	return out
}

// TestSchedulerEvents: Scheduled and FailedScheduling are events.k8s.io/v1
// events as kube-scheduler writes them: eventTime, reportingController
// default-scheduler, a reportingInstance, action Binding or Scheduling.
func TestSchedulerEvents(t *testing.T) {
	cs, _ := startFake(t, node("a", "4", nil), podReq("p", "", nil), podReq("big", "64", nil))
	for _, want := range []schedEvent{
		{reason: "Scheduled", action: "Binding", note: "Successfully assigned default/p to a", name: "p", typ: corev1.EventTypeNormal},
		{reason: "FailedScheduling", action: "Scheduling", note: "0/1 nodes are available: 1 Insufficient cpu.", name: "big", typ: corev1.EventTypeWarning},
	} {
		waitFor(t, "a "+want.reason+" event", func() error {
			found := eventsFor(cs, want.reason)
			if len(found) == 0 {
				return fmt.Errorf("none yet")
			}
			e := found[0]
			var bad []string
			if e.eventTime.IsZero() {
				bad = append(bad, "no eventTime")
			}
			if e.controller != Name || !strings.HasPrefix(e.instance, Name) || e.action != want.action {
				bad = append(bad, fmt.Sprintf("reportingController %q, reportingInstance %q, action %q", e.controller, e.instance, e.action))
			}
			if e.note != want.note || e.kind != "Pod" || e.name != want.name || e.typ != want.typ {
				bad = append(bad, fmt.Sprintf("note %q about %s %s, type %s", e.note, e.kind, e.name, e.typ))
			}
			if len(bad) > 0 {
				t.Fatalf("%s event: %s", want.reason, strings.Join(bad, "; "))
			}
			return nil
		})
	}
}
