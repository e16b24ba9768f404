package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEventConversionRoundTrips(t *testing.T) {
	now := metav1.NewMicroTime(time.Unix(1700000000, 123000))
	then := metav1.NewTime(time.Unix(1600000000, 0))
	in := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: "e", Namespace: "ns", Labels: map[string]string{"a": "b"}},
		EventTime:  now, Series: &eventsv1.EventSeries{Count: 4, LastObservedTime: now},
		ReportingController: "ctl", ReportingInstance: "ctl-1", Action: "Act", Reason: "Why",
		Regarding: corev1.ObjectReference{Kind: "Pod", Name: "p", Namespace: "ns", UID: "u1"},
		Related:   &corev1.ObjectReference{Kind: "Node", Name: "n"},
		Note:      "note", Type: "Warning",
		DeprecatedSource:         corev1.EventSource{Component: "kubelet", Host: "h"},
		DeprecatedFirstTimestamp: then, DeprecatedLastTimestamp: then, DeprecatedCount: 7,
	}
	core := EventToCore(in)
	if core.Message != "note" || core.InvolvedObject.UID != "u1" || core.Count != 7 || core.Source.Host != "h" || core.Series.Count != 4 {
		t.Fatalf("renamed fields not carried: %+v", core)
	}
	back := EventFromCore(core)
	back.TypeMeta = in.TypeMeta
	if !apiequality.Semantic.DeepEqual(in, back) {
		t.Fatalf("round trip changed the event:\n%+v\n%+v", in, back)
	}
}
