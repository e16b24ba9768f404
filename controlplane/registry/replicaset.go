package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// replicaSetResource is the strategy of replicasets.
func replicaSetResource() *Resource {
	apps := appsv1.SchemeGroupVersion
	rs := func(o runtime.Object) *appsv1.ReplicaSet { return o.(*appsv1.ReplicaSet) }
	return &Resource{
		GVR: apps.WithResource("replicasets"), Kind: "ReplicaSet", Namespaced: true, ShortNames: []string{"rs"}, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &appsv1.ReplicaSet{} }, NewList: func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Default: func(obj runtime.Object) {
			r := rs(obj)
			if r.Spec.Replicas == nil {
				r.Spec.Replicas = int32p(1)
			}
			coreapi.DefaultPodSpec(&r.Spec.Template.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			r := rs(obj)
			sp := field.NewPath("spec")
			return append(validateSelectorAndTemplate(r.Spec.Selector, &r.Spec.Template, sp, "replicaset"), validateReplicas(r.Spec.Replicas, sp.Child("replicas"))...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return immutableSelector(rs(obj).Spec.Selector, rs(old).Spec.Selector, field.NewPath("spec", "selector"))
		},
		Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
			r := rs(o)
			return printers.PtrInt32(r.Spec.Replicas), r.Status.Replicas, r.Spec.Selector
		}, func(o runtime.Object, n int32) { rs(o).Spec.Replicas = &n }),
		Columns: []Column{
			printers.Col("Desired", "integer", func(o runtime.Object) interface{} { return int64(printers.PtrInt32(rs(o).Spec.Replicas)) }),
			printers.Col("Current", "integer", func(o runtime.Object) interface{} { return int64(rs(o).Status.Replicas) }),
			printers.Col("Ready", "integer", func(o runtime.Object) interface{} { return int64(rs(o).Status.ReadyReplicas) }),
			printers.AgeColumn,
			printers.Wide(printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(&rs(o).Spec.Template) })),
			printers.Wide(printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(&rs(o).Spec.Template) })),
			printers.Wide(printers.Col("Selector", "string", func(o runtime.Object) interface{} { return printers.LabelSelectorString(rs(o).Spec.Selector) })),
		},
	}
}
