package registry

import (
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// eventsV1EventResource is the strategy of event.
func eventsV1EventResource() *Resource {
	return &Resource{
		GVR: eventsv1.SchemeGroupVersion.WithResource("events"), Kind: "Event", Namespaced: true, ShortNames: []string{"ev"},
		Storage: eventsStorage,
		New:     func() runtime.Object { return &eventsv1.Event{} }, NewList: func() runtime.Object { return &eventsv1.EventList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			e := obj.(*eventsv1.Event)
			var errs field.ErrorList
			if e.EventTime.IsZero() {
				errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
			}
			if e.Type != "" && e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
				errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{"Normal", "Warning"}))
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set {
			e := obj.(*eventsv1.Event)
			return fields.Set{"regarding.kind": e.Regarding.Kind, "regarding.name": e.Regarding.Name, "regarding.namespace": e.Regarding.Namespace,
				"reason": e.Reason, "type": e.Type, "reportingController": e.ReportingController}
		},
		Columns: []Column{
			printers.Col("Type", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Type }),
			printers.Col("Reason", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Reason }),
			printers.Col("Object", "string", func(o runtime.Object) interface{} {
				r := o.(*eventsv1.Event).Regarding
				return strings.ToLower(r.Kind) + "/" + r.Name
			}),
			printers.Col("Message", "string", func(o runtime.Object) interface{} { return o.(*eventsv1.Event).Note }),
			printers.AgeColumn,
		},
	}
}
