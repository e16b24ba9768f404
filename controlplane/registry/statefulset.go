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

// statefulSetResource is the strategy of statefulsets.
func statefulSetResource() *Resource {
	apps := appsv1.SchemeGroupVersion
	sts := func(o runtime.Object) *appsv1.StatefulSet { return o.(*appsv1.StatefulSet) }
	return &Resource{
		GVR: apps.WithResource("statefulsets"), Kind: "StatefulSet", Namespaced: true, ShortNames: []string{"sts"}, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &appsv1.StatefulSet{} }, NewList: func() runtime.Object { return &appsv1.StatefulSetList{} },
		Default: func(obj runtime.Object) {
			s := sts(obj)
			if s.Spec.Replicas == nil {
				s.Spec.Replicas = int32p(1)
			}
			if s.Spec.PodManagementPolicy == "" {
				s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
			}
			if s.Spec.UpdateStrategy.Type == "" {
				s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
			}
			if s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType && s.Spec.UpdateStrategy.RollingUpdate == nil {
				s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: int32p(0)}
			}
			if s.Spec.RevisionHistoryLimit == nil {
				s.Spec.RevisionHistoryLimit = int32p(10)
			}
			if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
				s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
					WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType, WhenScaled: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				}
			}
			coreapi.DefaultPodSpec(&s.Spec.Template.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			s := sts(obj)
			sp := field.NewPath("spec")
			// The containers may mount the claim templates, which each pod
			// gets as volumes of those names, as Kubernetes validates it.
			tmpl := &s.Spec.Template
			if len(s.Spec.VolumeClaimTemplates) > 0 {
				tmpl = tmpl.DeepCopy()
				for _, c := range s.Spec.VolumeClaimTemplates {
					tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: c.Name,
						VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name}}})
				}
			}
			return append(validateSelectorAndTemplate(s.Spec.Selector, tmpl, sp, "statefulset"), validateReplicas(s.Spec.Replicas, sp.Child("replicas"))...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			a, b := sts(obj), sts(old)
			errs := immutableSelector(a.Spec.Selector, b.Spec.Selector, field.NewPath("spec", "selector"))
			if a.Spec.ServiceName != b.Spec.ServiceName || a.Spec.PodManagementPolicy != b.Spec.PodManagementPolicy || !semanticEqual(a.Spec.VolumeClaimTemplates, b.Spec.VolumeClaimTemplates) {
				errs = append(errs, field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
			}
			return errs
		},
		Scale: scaleOf(func(o runtime.Object) (int32, int32, *metav1.LabelSelector) {
			s := sts(o)
			return printers.PtrInt32(s.Spec.Replicas), s.Status.Replicas, s.Spec.Selector
		}, func(o runtime.Object, n int32) { sts(o).Spec.Replicas = &n }),
		Columns: []Column{
			printers.Col("Ready", "string", func(o runtime.Object) interface{} {
				s := sts(o)
				return printers.Ratio(s.Status.ReadyReplicas, printers.PtrInt32(s.Spec.Replicas))
			}),
			printers.AgeColumn,
			printers.Wide(printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(&sts(o).Spec.Template) })),
			printers.Wide(printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(&sts(o).Spec.Template) })),
		},
	}
}
