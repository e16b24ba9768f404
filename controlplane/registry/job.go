package registry

import (
	"fmt"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// jobResource is the strategy of jobs.
func jobResource() *Resource {
	batch := batchv1.SchemeGroupVersion
	job := func(o runtime.Object) *batchv1.Job { return o.(*batchv1.Job) }
	return &Resource{
		GVR: batch.WithResource("jobs"), Kind: "Job", Namespaced: true, Categories: []string{"all"},
		HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &batchv1.Job{} }, NewList: func() runtime.Object { return &batchv1.JobList{} },
		Default: func(obj runtime.Object) {
			j := job(obj)
			if j.Spec.Completions == nil && j.Spec.Parallelism == nil {
				j.Spec.Completions, j.Spec.Parallelism = int32p(1), int32p(1)
			}
			if j.Spec.Parallelism == nil {
				j.Spec.Parallelism = int32p(1)
			}
			if j.Spec.BackoffLimit == nil {
				j.Spec.BackoffLimit = int32p(6)
			}
			if j.Spec.CompletionMode == nil {
				m := batchv1.NonIndexedCompletion
				j.Spec.CompletionMode = &m
			}
			if j.Spec.Suspend == nil {
				f := false
				j.Spec.Suspend = &f
			}
			if j.Spec.PodReplacementPolicy == nil {
				p := batchv1.TerminatingOrFailed
				j.Spec.PodReplacementPolicy = &p
			}
			coreapi.DefaultPodSpec(&j.Spec.Template.Spec)
		},
		PrepareForCreate: func(obj runtime.Object) {
			if j := job(obj); j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
				generateJobSelector(j)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			j := job(obj)
			sp := field.NewPath("spec")
			errs := validateGeneratedJobSelector(j)
			errs = append(errs, validateSelectorAndTemplate(j.Spec.Selector, &j.Spec.Template, sp, "")...)
			if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
				errs = append(errs, field.NotSupported(sp.Child("template", "spec", "restartPolicy"), rp, []string{"OnFailure", "Never"}))
			}
			errs = append(errs, validateReplicas(j.Spec.Parallelism, sp.Child("parallelism"))...)
			errs = append(errs, validateReplicas(j.Spec.Completions, sp.Child("completions"))...)
			errs = append(errs, validateReplicas(j.Spec.BackoffLimit, sp.Child("backoffLimit"))...)
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			a, b := job(obj), job(old)
			errs := immutableSelector(a.Spec.Selector, b.Spec.Selector, field.NewPath("spec", "selector"))
			if !semanticEqual(a.Spec.Template, b.Spec.Template) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "template"), "", "field is immutable"))
			}
			return errs
		},
		Columns: []Column{
			printers.Col("Status", "string", func(o runtime.Object) interface{} {
				j := job(o)
				for _, c := range j.Status.Conditions {
					if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
						return string(c.Type)
					}
				}
				if j.Spec.Suspend != nil && *j.Spec.Suspend {
					return "Suspended"
				}
				return "Running"
			}),
			printers.Col("Completions", "string", func(o runtime.Object) interface{} {
				j := job(o)
				if j.Spec.Completions == nil {
					return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, printers.PtrInt32(j.Spec.Parallelism))
				}
				return printers.Ratio(j.Status.Succeeded, *j.Spec.Completions)
			}),
			printers.Col("Duration", "string", func(o runtime.Object) interface{} {
				j := job(o)
				if j.Status.StartTime == nil {
					return ""
				}
				if j.Status.CompletionTime != nil {
					return j.Status.CompletionTime.Sub(j.Status.StartTime.Time).Round(1e9).String()
				}
				return printers.Age(*j.Status.StartTime)
			}),
			printers.AgeColumn,
			printers.Wide(printers.Col("Containers", "string", func(o runtime.Object) interface{} { return printers.ContainerNames(&job(o).Spec.Template) })),
			printers.Wide(printers.Col("Images", "string", func(o runtime.Object) interface{} { return printers.ContainerImages(&job(o).Spec.Template) })),
			printers.Wide(printers.Col("Selector", "string", func(o runtime.Object) interface{} { return printers.LabelSelectorString(job(o).Spec.Selector) })),
		},
	}
}
