package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// deploymentResource is the strategy of deployments.
func deploymentResource() *Resource {
	apps := appsv1.SchemeGroupVersion
	deploy := func(o runtime.Object) *appsv1.Deployment { return o.(*appsv1.Deployment) }
	return &Resource{
		GVR: apps.WithResource("deployments"), Kind: "Deployment", Namespaced: true, ShortNames: []string{"deploy"}, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &appsv1.Deployment{} }, NewList: func() runtime.Object { return &appsv1.DeploymentList{} },
		// A status write may not change the labels, as Kubernetes' status
		// strategy for Deployments keeps them (a controller's status patch
		// that carried labels overwrote the user's).
		PrepareForUpdate: func(sub string, obj, old runtime.Object) {
			if sub == "status" {
				deploy(obj).Labels = deploy(old).Labels
			}
		},
		Default: func(obj runtime.Object) {
			d := deploy(obj)
			if d.Spec.Replicas == nil {
				d.Spec.Replicas = int32p(1)
			}
			if d.Spec.Strategy.Type == "" {
				d.Spec.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
			}
			if d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
				if d.Spec.Strategy.RollingUpdate == nil {
					d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
				}
				defaultIntOrPercent(&d.Spec.Strategy.RollingUpdate.MaxUnavailable, "25%")
				defaultIntOrPercent(&d.Spec.Strategy.RollingUpdate.MaxSurge, "25%")
			}
			if d.Spec.RevisionHistoryLimit == nil {
				d.Spec.RevisionHistoryLimit = int32p(10)
			}
			if d.Spec.ProgressDeadlineSeconds == nil {
				d.Spec.ProgressDeadlineSeconds = int32p(600)
			}
			coreapi.DefaultPodSpec(&d.Spec.Template.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			d := deploy(obj)
			sp := field.NewPath("spec")
			errs := validateSelectorAndTemplate(d.Spec.Selector, &d.Spec.Template, sp, "deployment")
			errs = append(errs, validateReplicas(d.Spec.Replicas, sp.Child("replicas"))...)
			if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType && d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				errs = append(errs, field.NotSupported(sp.Child("strategy", "type"), d.Spec.Strategy.Type, []string{"Recreate", "RollingUpdate"}))
			}
			if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType && d.Spec.Strategy.RollingUpdate != nil {
				errs = append(errs, field.Forbidden(sp.Child("strategy", "rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
			}
			if d.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
				errs = append(errs, field.NotSupported(sp.Child("template", "spec", "restartPolicy"), d.Spec.Template.Spec.RestartPolicy, []string{"Always"}))
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return immutableSelector(deploy(obj).Spec.Selector, deploy(old).Spec.Selector, field.NewPath("spec", "selector"))
		},
		Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
			d := deploy(o)
			return printers.PtrInt32(d.Spec.Replicas), d.Status.Replicas, d.Spec.Selector
		}, func(o runtime.Object, n int32) { deploy(o).Spec.Replicas = &n }),
		Columns: []Column{
			printers.Col("Ready", "string", func(o runtime.Object) interface{} {
				d := deploy(o)
				return printers.Ratio(d.Status.ReadyReplicas, printers.PtrInt32(d.Spec.Replicas))
			}),
			printers.Col("Up-to-date", "integer", func(o runtime.Object) interface{} { return int64(deploy(o).Status.UpdatedReplicas) }),
			printers.Col("Available", "integer", func(o runtime.Object) interface{} { return int64(deploy(o).Status.AvailableReplicas) }),
			printers.AgeColumn,
			printers.Wide(printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(&deploy(o).Spec.Template) })),
			printers.Wide(printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(&deploy(o).Spec.Template) })),
			printers.Wide(printers.Col("Selector", "string", func(o runtime.Object) interface{} { return printers.LabelSelectorString(deploy(o).Spec.Selector) })),
		},
	}
}
