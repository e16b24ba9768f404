package registry

import (
	"fmt"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func int32p(v int32) *int32 { return &v }

// validateSelectorAndTemplate checks that a workload's selector is set and
// selects its own template. emptyFor names the kind in the refusal of an empty
// selector (which would select every pod of the namespace); "" allows one, as
// Kubernetes does for Jobs, whose selector the server generates.
func validateSelectorAndTemplate(sel *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, sp *field.Path, emptyFor string) field.ErrorList {
	var errs field.ErrorList
	if sel == nil {
		errs = append(errs, field.Required(sp.Child("selector"), ""))
	} else {
		errs = append(errs, metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, sp.Child("selector"))...)
		if emptyFor != "" && len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(sp.Child("selector"), sel, "empty selector is invalid for "+emptyFor))
		}
		if s, err := metav1.LabelSelectorAsSelector(sel); err == nil && tmpl != nil && !s.Matches(labels.Set(tmpl.Labels)) {
			errs = append(errs, field.Invalid(sp.Child("template", "metadata", "labels"), tmpl.Labels, "`selector` does not match template `labels`"))
		}
	}
	if tmpl != nil {
		errs = append(errs, metavalidation.ValidateLabels(tmpl.Labels, sp.Child("template", "metadata", "labels"))...)
		errs = append(errs, coreapi.ValidatePodSpec(&tmpl.Spec, sp.Child("template", "spec"))...)
	}
	return errs
}

func validateReplicas(r *int32, p *field.Path) field.ErrorList {
	if r != nil && *r < 0 {
		return field.ErrorList{field.Invalid(p, *r, "must be greater than or equal to 0")}
	}
	return nil
}

func immutableSelector(a, b *metav1.LabelSelector, p *field.Path) field.ErrorList {
	if !semanticEqual(a, b) {
		return field.ErrorList{field.Invalid(p, a, "field is immutable")}
	}
	return nil
}

func defaultIntOrPercent(v **intstr.IntOrString, d string) {
	if *v == nil {
		x := intstr.FromString(d)
		*v = &x
	}
}

func scaleOf(get func(runtime.Object) (int32, int32, *metav1.LabelSelector), set func(runtime.Object, int32)) *ScaleAccess {
	return &ScaleAccess{
		Get: func(o runtime.Object) (int32, int32, string) {
			spec, status, sel := get(o)
			s := ""
			if ls, err := metav1.LabelSelectorAsSelector(sel); err == nil {
				s = ls.String()
			}
			return spec, status, s
		},
		Set: set,
	}
}

func workloadResources() []*Resource {
	return []*Resource{
		deploymentResource(),
		replicaSetResource(),
		statefulSetResource(),
		daemonSetResource(),
		controllerRevisionResource(),
		jobResource(),
		cronJobResource(),
	}
}

// The unprefixed twins of batchv1's ControllerUidLabel and JobNameLabel:
// Kubernetes still puts them on a Job's pods, for selectors written before
// the prefixed ones.
const (
	legacyControllerUIDLabel = "controller-uid"
	legacyJobNameLabel       = "job-name"
)

// generateJobSelector gives a Job whose selector is not manual the selector
// Kubernetes generates on create: its template gets the controller-uid and
// job-name labels (both spellings) unless it has them, and the selector
// matches batch.kubernetes.io/controller-uid, merged into whatever selector was
// sent, so `selector: {}` works like no selector. A label the client set to
// something else is left for validateGeneratedJobSelector to refuse.
func generateJobSelector(j *batchv1.Job) {
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		legacyJobNameLabel: j.Name, batchv1.JobNameLabel: j.Name,
		legacyControllerUIDLabel: string(j.UID), batchv1.ControllerUidLabel: string(j.UID),
	} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = v
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

// validateGeneratedJobSelector checks, for a Job without manualSelector, that
// its template carries the generated labels with its own uid and name and that
// its selector matches them, as Kubernetes' validation does: otherwise two Jobs
// could select each other's pods.
func validateGeneratedJobSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector || j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	lp := field.NewPath("spec", "template", "metadata", "labels")
	want := map[string]string{
		legacyControllerUIDLabel: string(j.UID), legacyJobNameLabel: j.Name,
		batchv1.ControllerUidLabel: string(j.UID), batchv1.JobNameLabel: j.Name,
	}
	for _, k := range []string{legacyControllerUIDLabel, legacyJobNameLabel, batchv1.ControllerUidLabel, batchv1.JobNameLabel} {
		got, ok := j.Spec.Template.Labels[k]
		switch {
		case !ok:
			errs = append(errs, field.Required(lp.Key(k), want[k]))
		case got != want[k]:
			errs = append(errs, field.Invalid(lp.Key(k), j.Spec.Template.Labels, fmt.Sprintf("must be '%s'", want[k])))
		}
	}
	if s, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !s.Matches(labels.Set(want)) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}
