package registry

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// replicationControllerResource is the strategy of core/v1
// replicationcontrollers: the ReplicaSet's predecessor, with a map
// selector, defaulted from the template's labels as Kubernetes does.
func replicationControllerResource() *Resource {
	rc := func(o runtime.Object) *corev1.ReplicationController { return o.(*corev1.ReplicationController) }
	return &Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("replicationcontrollers"), Kind: "ReplicationController", Namespaced: true,
		ShortNames: []string{"rc"}, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &corev1.ReplicationController{} },
		NewList: func() runtime.Object { return &corev1.ReplicationControllerList{} },
		Default: func(obj runtime.Object) { defaultReplicationController(rc(obj)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateReplicationControllerSpec(&rc(obj).Spec, field.NewPath("spec"))
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": strconv.Itoa(int(rc(obj).Status.Replicas))}
		},
		Scale: &ScaleAccess{
			Get: func(o runtime.Object) (int32, int32, string) {
				r := rc(o)
				return printers.PtrInt32(r.Spec.Replicas), r.Status.Replicas, labels.SelectorFromSet(r.Spec.Selector).String()
			},
			Set: func(o runtime.Object, n int32) { rc(o).Spec.Replicas = &n },
		},
		Columns: []Column{
			printers.Col("Desired", "integer", func(o runtime.Object) interface{} { return int64(printers.PtrInt32(rc(o).Spec.Replicas)) }),
			printers.Col("Current", "integer", func(o runtime.Object) interface{} { return int64(rc(o).Status.Replicas) }),
			printers.Col("Ready", "integer", func(o runtime.Object) interface{} { return int64(rc(o).Status.ReadyReplicas) }),
			printers.AgeColumn,
			printers.Wide(printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(rc(o).Spec.Template) })),
			printers.Wide(printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(rc(o).Spec.Template) })),
			printers.Wide(printers.Col("Selector", "string", func(o runtime.Object) interface{} { return printers.SelectorString(rc(o).Spec.Selector) })),
		},
	}
}

// defaultReplicationController fills what Kubernetes' defaulting does: an
// empty selector and empty labels are taken from the template's labels,
// and one replica.
func defaultReplicationController(r *corev1.ReplicationController) {
	if t := r.Spec.Template; t != nil && len(t.Labels) > 0 {
		if len(r.Spec.Selector) == 0 {
			r.Spec.Selector = copyLabels(t.Labels)
		}
		if len(r.Labels) == 0 {
			r.Labels = copyLabels(t.Labels)
		}
	}
	if r.Spec.Replicas == nil {
		r.Spec.Replicas = int32p(1)
	}
	if r.Spec.Template != nil {
		coreapi.DefaultPodSpec(&r.Spec.Template.Spec)
	}
}

func copyLabels(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// validateReplicationControllerSpec checks an RC's spec as Kubernetes'
// ValidateReplicationControllerSpec: a non-empty selector that selects the
// template, a template whose pods restart Always, replicas not negative.
func validateReplicationControllerSpec(s *corev1.ReplicationControllerSpec, sp *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateReplicas(s.Replicas, sp.Child("replicas"))...)
	if s.MinReadySeconds < 0 {
		errs = append(errs, field.Invalid(sp.Child("minReadySeconds"), s.MinReadySeconds, "must be greater than or equal to 0"))
	}
	if len(s.Selector) == 0 {
		errs = append(errs, field.Required(sp.Child("selector"), ""))
	} else {
		errs = append(errs, metavalidation.ValidateLabels(s.Selector, sp.Child("selector"))...)
	}
	if s.Template == nil {
		return append(errs, field.Required(sp.Child("template"), ""))
	}
	tp := sp.Child("template")
	if len(s.Selector) > 0 && !labels.SelectorFromSet(s.Selector).Matches(labels.Set(s.Template.Labels)) {
		errs = append(errs, field.Invalid(tp.Child("metadata", "labels"), s.Template.Labels, "`selector` does not match template `labels`"))
	}
	errs = append(errs, metavalidation.ValidateLabels(s.Template.Labels, tp.Child("metadata", "labels"))...)
	errs = append(errs, coreapi.ValidatePodSpec(&s.Template.Spec, tp.Child("spec"))...)
	if rp := s.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), rp, []string{string(corev1.RestartPolicyAlways)}))
	}
	if s.Template.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(tp.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicationController is not Supported"))
	}
	return errs
}

// podTemplateResource is the strategy of core/v1 podtemplates: stored pod
// templates, defaulted and validated like a workload's.
func podTemplateResource() *Resource {
	pt := func(o runtime.Object) *corev1.PodTemplate { return o.(*corev1.PodTemplate) }
	return &Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("podtemplates"), Kind: "PodTemplate", Namespaced: true,
		New:     func() runtime.Object { return &corev1.PodTemplate{} },
		NewList: func() runtime.Object { return &corev1.PodTemplateList{} },
		Default: func(obj runtime.Object) { coreapi.DefaultPodSpec(&pt(obj).Template.Spec) },
		Validate: func(obj runtime.Object) field.ErrorList {
			tp := field.NewPath("template")
			t := pt(obj).Template
			errs := metavalidation.ValidateLabels(t.Labels, tp.Child("metadata", "labels"))
			return append(errs, coreapi.ValidatePodSpec(&t.Spec, tp.Child("spec"))...)
		},
		Columns: []Column{
			printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(&pt(o).Template) }),
			printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(&pt(o).Template) }),
			printers.Col("Pod Labels", "string", func(o runtime.Object) interface{} { return labels.FormatLabels(pt(o).Template.Labels) }),
			printers.AgeColumn,
		},
	}
}
