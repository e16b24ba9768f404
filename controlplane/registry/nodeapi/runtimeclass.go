package nodeapi

import (
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// runtimeClassResource is the strategy of node.k8s.io/v1 runtimeclasses:
// objects only; the node runs every pod with its one runtime.
func runtimeClassResource() *generic.Resource {
	rc := func(o runtime.Object) *nodev1.RuntimeClass { return o.(*nodev1.RuntimeClass) }
	return &generic.Resource{
		GVR: nodev1.SchemeGroupVersion.WithResource("runtimeclasses"), Kind: "RuntimeClass",
		New:     func() runtime.Object { return &nodev1.RuntimeClass{} },
		NewList: func() runtime.Object { return &nodev1.RuntimeClassList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			r := rc(obj)
			var errs field.ErrorList
			hp := field.NewPath("handler")
			if r.Handler == "" {
				errs = append(errs, field.Required(hp, ""))
			} else {
				for _, msg := range validation.NameIsDNSLabel(r.Handler, false) {
					errs = append(errs, field.Invalid(hp, r.Handler, msg))
				}
			}
			if s := r.Scheduling; s != nil {
				for i, t := range s.Tolerations {
					if t.Key == "" && t.Operator != "Exists" {
						errs = append(errs, field.Invalid(field.NewPath("scheduling", "tolerations").Index(i).Child("operator"), t.Operator, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
					}
				}
			}
			if o := r.Overhead; o != nil {
				for name, q := range o.PodFixed {
					if q.Sign() < 0 {
						errs = append(errs, field.Invalid(field.NewPath("overhead", "podFixed").Key(string(name)), q.String(), "must be greater than or equal to 0"))
					}
				}
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			if rc(obj).Handler != rc(old).Handler {
				return field.ErrorList{field.Invalid(field.NewPath("handler"), rc(obj).Handler, "field is immutable")}
			}
			return nil
		},
		Columns: []generic.Column{
			printers.Col("Handler", "string", func(o runtime.Object) interface{} { return rc(o).Handler }),
			printers.AgeColumn,
		},
	}
}
