package registry

import (
	"fmt"
	"slices"

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
			errs = append(errs, validatePodFailurePolicy(j, sp.Child("podFailurePolicy"))...)
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

// validatePodFailurePolicy checks a Job's podFailurePolicy as Kubernetes
// does: only for pods that are not restarted in place, each rule with one
// known action and exactly one of onExitCodes (In/NotIn, values without 0
// for In, no duplicates) and onPodConditions.
func validatePodFailurePolicy(j *batchv1.Job, p *field.Path) field.ErrorList {
	policy := j.Spec.PodFailurePolicy
	if policy == nil {
		return nil
	}
	var errs field.ErrorList
	if rp := j.Spec.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyNever {
		errs = append(errs, field.Invalid(field.NewPath("spec", "template", "spec", "restartPolicy"), rp, "only \"Never\" is supported when podFailurePolicy is specified"))
	}
	actions := []string{string(batchv1.PodFailurePolicyActionFailJob), string(batchv1.PodFailurePolicyActionFailIndex), string(batchv1.PodFailurePolicyActionIgnore), string(batchv1.PodFailurePolicyActionCount)}
	for i, rule := range policy.Rules {
		rp := p.Child("rules").Index(i)
		if !slices.Contains(actions, string(rule.Action)) {
			errs = append(errs, field.NotSupported(rp.Child("action"), rule.Action, actions))
		}
		if (rule.OnExitCodes == nil) == (len(rule.OnPodConditions) == 0) {
			errs = append(errs, field.Invalid(rp, "", "specifying one of OnExitCodes and OnPodConditions is required"))
			continue
		}
		if ec := rule.OnExitCodes; ec != nil {
			ep := rp.Child("onExitCodes")
			if ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpIn && ec.Operator != batchv1.PodFailurePolicyOnExitCodesOpNotIn {
				errs = append(errs, field.NotSupported(ep.Child("operator"), ec.Operator, []string{"In", "NotIn"}))
			}
			if len(ec.Values) == 0 {
				errs = append(errs, field.Required(ep.Child("values"), "at least one value is required"))
			}
			seen := map[int32]bool{}
			for k, v := range ec.Values {
				if v == 0 && ec.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn {
					errs = append(errs, field.Invalid(ep.Child("values").Index(k), v, "must not be 0 for the In operator"))
				}
				if seen[v] {
					errs = append(errs, field.Duplicate(ep.Child("values").Index(k), v))
				}
				seen[v] = true
			}
		}
		for k, pc := range rule.OnPodConditions {
			cp := rp.Child("onPodConditions").Index(k)
			if pc.Type == "" {
				errs = append(errs, field.Required(cp.Child("type"), ""))
			}
			if pc.Status != corev1.ConditionTrue && pc.Status != corev1.ConditionFalse && pc.Status != corev1.ConditionUnknown {
				errs = append(errs, field.NotSupported(cp.Child("status"), pc.Status, []string{"True", "False", "Unknown"}))
			}
		}
	}
	return errs
}
