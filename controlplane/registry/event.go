package registry

import (
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// eventResource is the strategy of events.
func eventResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("events"), Kind: "Event", Namespaced: true, ShortNames: []string{"ev"},
		New: func() runtime.Object { return &corev1.Event{} }, NewList: func() runtime.Object { return &corev1.EventList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			e := obj.(*corev1.Event)
			var errs field.ErrorList
			if e.InvolvedObject.Namespace != "" && e.InvolvedObject.Namespace != e.Namespace {
				errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), e.InvolvedObject.Namespace, "does not match event.namespace"))
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set {
			e := obj.(*corev1.Event)
			// An event written through events.k8s.io has no source but
			// its reporting controller, which Kubernetes selects on as
			// "source" then.
			source := e.Source.Component
			if source == "" {
				source = e.ReportingController
			}
			return fields.Set{
				"involvedObject.kind": e.InvolvedObject.Kind, "involvedObject.namespace": e.InvolvedObject.Namespace,
				"involvedObject.name": e.InvolvedObject.Name, "involvedObject.uid": string(e.InvolvedObject.UID),
				"involvedObject.apiVersion": e.InvolvedObject.APIVersion, "involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
				"involvedObject.fieldPath": e.InvolvedObject.FieldPath, "reason": e.Reason, "reportingComponent": e.ReportingController,
				"source": source, "type": e.Type,
			}
		},
		Columns: []Column{
			printers.Col("Last Seen", "string", func(o runtime.Object) interface{} {
				e := o.(*corev1.Event)
				if !e.LastTimestamp.IsZero() {
					return printers.Age(e.LastTimestamp)
				}
				return printers.Age(metav1.Time{Time: e.EventTime.Time})
			}),
			printers.Col("Type", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Type }),
			printers.Col("Reason", "string", func(o runtime.Object) interface{} { return o.(*corev1.Event).Reason }),
			printers.Col("Object", "string", func(o runtime.Object) interface{} {
				e := o.(*corev1.Event)
				return strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name
			}),
			printers.Col("Message", "string", func(o runtime.Object) interface{} { return strings.TrimSpace(o.(*corev1.Event).Message) }),
		},
	}
}
