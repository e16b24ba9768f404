package registry

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Events are one resource served in two groups, as in Kubernetes: an
// event written through events.k8s.io/v1 is stored as a core/v1 Event
// (under /registry/events/) and so shows in `kubectl get events` and
// `kubectl describe`, and a core event reads back through events.k8s.io.
// The two conversions below map the renamed fields (regarding is
// involvedObject, note is message, the deprecated* fields the old
// timestamps, count and source).

// EventToCore converts an events.k8s.io/v1 Event into the stored form.
func EventToCore(in *eventsv1.Event) *corev1.Event {
	out := &corev1.Event{
		TypeMeta:            metaTypeCoreEvent,
		ObjectMeta:          in.ObjectMeta,
		InvolvedObject:      in.Regarding,
		Reason:              in.Reason,
		Message:             in.Note,
		Source:              in.DeprecatedSource,
		FirstTimestamp:      in.DeprecatedFirstTimestamp,
		LastTimestamp:       in.DeprecatedLastTimestamp,
		Count:               in.DeprecatedCount,
		Type:                in.Type,
		EventTime:           in.EventTime,
		Action:              in.Action,
		Related:             in.Related,
		ReportingController: in.ReportingController,
		ReportingInstance:   in.ReportingInstance,
	}
	if in.Series != nil {
		out.Series = &corev1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out
}

// EventFromCore converts a stored core/v1 Event into events.k8s.io/v1.
func EventFromCore(in *corev1.Event) *eventsv1.Event {
	out := &eventsv1.Event{
		TypeMeta:                 metaTypeEventsEvent,
		ObjectMeta:               in.ObjectMeta,
		EventTime:                in.EventTime,
		ReportingController:      in.ReportingController,
		ReportingInstance:        in.ReportingInstance,
		Action:                   in.Action,
		Reason:                   in.Reason,
		Regarding:                in.InvolvedObject,
		Related:                  in.Related,
		Note:                     in.Message,
		Type:                     in.Type,
		DeprecatedSource:         in.Source,
		DeprecatedFirstTimestamp: in.FirstTimestamp,
		DeprecatedLastTimestamp:  in.LastTimestamp,
		DeprecatedCount:          in.Count,
	}
	if in.Series != nil {
		out.Series = &eventsv1.EventSeries{Count: in.Series.Count, LastObservedTime: in.Series.LastObservedTime}
	}
	return out
}

var (
	metaTypeCoreEvent   = metav1.TypeMeta{APIVersion: corev1.SchemeGroupVersion.String(), Kind: "Event"}
	metaTypeEventsEvent = metav1.TypeMeta{APIVersion: eventsv1.SchemeGroupVersion.String(), Kind: "Event"}
)

// eventsStorage keeps events.k8s.io/v1 Events as core/v1 Events.
var eventsStorage = &StorageMapping{
	GVR: corev1.SchemeGroupVersion.WithResource("events"), Kind: "Event",
	NewStored:  func() runtime.Object { return &corev1.Event{} },
	ToStored:   func(o runtime.Object) runtime.Object { return EventToCore(o.(*eventsv1.Event)) },
	FromStored: func(o runtime.Object) runtime.Object { return EventFromCore(o.(*corev1.Event)) },
}
