package registry

import (
	"fmt"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func policyResources() []*Resource {
	pdb := func(o runtime.Object) *policyv1.PodDisruptionBudget { return o.(*policyv1.PodDisruptionBudget) }
	orNA := func(v *intstr.IntOrString) interface{} {
		if v == nil {
			return "N/A"
		}
		return v.String()
	}
	return []*Resource{{
		GVR: policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets"), Kind: "PodDisruptionBudget", Namespaced: true,
		ShortNames: []string{"pdb"}, HasStatus: true, GenerationOnSpec: true,
		New:      func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		NewList:  func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		Validate: func(obj runtime.Object) field.ErrorList { return validatePDB(pdb(obj)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validatePDB(pdb(obj))
		},
		Columns: []Column{
			printers.Col("Min Available", "string", func(o runtime.Object) interface{} { return orNA(pdb(o).Spec.MinAvailable) }),
			printers.Col("Max Unavailable", "string", func(o runtime.Object) interface{} { return orNA(pdb(o).Spec.MaxUnavailable) }),
			printers.Col("Allowed Disruptions", "integer", func(o runtime.Object) interface{} { return int64(pdb(o).Status.DisruptionsAllowed) }),
			printers.AgeColumn,
		},
	}}
}

// validatePDB checks what Kubernetes checks: one of minAvailable and
// maxUnavailable, each a non-negative count or a percentage up to 100%, and
// a valid selector.
func validatePDB(p *policyv1.PodDisruptionBudget) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if p.Spec.MinAvailable != nil && p.Spec.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(spec, p.Spec, "minAvailable and maxUnavailable cannot be both set"))
	}
	for name, v := range map[string]*intstr.IntOrString{"minAvailable": p.Spec.MinAvailable, "maxUnavailable": p.Spec.MaxUnavailable} {
		if v == nil {
			continue
		}
		if msg := intOrPercentProblem(*v); msg != "" {
			errs = append(errs, field.Invalid(spec.Child(name), v.String(), msg))
		}
	}
	if p.Spec.Selector != nil {
		if _, err := metav1.LabelSelectorAsSelector(p.Spec.Selector); err != nil {
			errs = append(errs, field.Invalid(spec.Child("selector"), p.Spec.Selector, err.Error()))
		}
	}
	if pol := p.Spec.UnhealthyPodEvictionPolicy; pol != nil && *pol != policyv1.IfHealthyBudget && *pol != policyv1.AlwaysAllow {
		errs = append(errs, field.NotSupported(spec.Child("unhealthyPodEvictionPolicy"), *pol, []string{string(policyv1.IfHealthyBudget), string(policyv1.AlwaysAllow)}))
	}
	return errs
}

func intOrPercentProblem(v intstr.IntOrString) string {
	if v.Type == intstr.Int {
		if v.IntVal < 0 {
			return "must be greater than or equal to 0"
		}
		return ""
	}
	pct, ok := strings.CutSuffix(v.StrVal, "%")
	var n int
	if _, err := fmt.Sscanf(pct, "%d", &n); !ok || err != nil || fmt.Sprint(n) != pct {
		return "a valid percent string must be a numeric string followed by an ending '%'"
	}
	if n < 0 || n > 100 {
		return "must be no more than 100%"
	}
	return ""
}
