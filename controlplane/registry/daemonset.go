package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// daemonSetResource is the strategy of daemonsets.
func daemonSetResource() *Resource {
	apps := appsv1.SchemeGroupVersion
	ds := func(o runtime.Object) *appsv1.DaemonSet { return o.(*appsv1.DaemonSet) }
	return &Resource{
		GVR: apps.WithResource("daemonsets"), Kind: "DaemonSet", Namespaced: true, ShortNames: []string{"ds"}, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &appsv1.DaemonSet{} }, NewList: func() runtime.Object { return &appsv1.DaemonSetList{} },
		Default: func(obj runtime.Object) {
			d := ds(obj)
			if d.Spec.UpdateStrategy.Type == "" {
				d.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
			}
			if d.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
				if d.Spec.UpdateStrategy.RollingUpdate == nil {
					d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
				}
				if d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
					x := intstr.FromInt32(1)
					d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &x
				}
				if d.Spec.UpdateStrategy.RollingUpdate.MaxSurge == nil {
					x := intstr.FromInt32(0)
					d.Spec.UpdateStrategy.RollingUpdate.MaxSurge = &x
				}
			}
			if d.Spec.RevisionHistoryLimit == nil {
				d.Spec.RevisionHistoryLimit = int32p(10)
			}
			coreapi.DefaultPodSpec(&d.Spec.Template.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			d := ds(obj)
			return validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, field.NewPath("spec"), "daemonset")
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return immutableSelector(ds(obj).Spec.Selector, ds(old).Spec.Selector, field.NewPath("spec", "selector"))
		},
		Columns: []Column{
			printers.Col("Desired", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.DesiredNumberScheduled) }),
			printers.Col("Current", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.CurrentNumberScheduled) }),
			printers.Col("Ready", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.NumberReady) }),
			printers.Col("Up-to-date", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.UpdatedNumberScheduled) }),
			printers.Col("Available", "integer", func(o runtime.Object) interface{} { return int64(ds(o).Status.NumberAvailable) }),
			printers.Col("Node Selector", "string", func(o runtime.Object) interface{} {
				return printers.SelectorString(ds(o).Spec.Template.Spec.NodeSelector)
			}),
			printers.AgeColumn,
		},
	}
}
