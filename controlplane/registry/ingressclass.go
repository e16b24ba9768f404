package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ingressClassResource is the strategy of ingressclasses.
func ingressClassResource() *Resource {
	net1 := networkingv1.SchemeGroupVersion
	return &Resource{
		GVR: net1.WithResource("ingressclasses"), Kind: "IngressClass",
		New: func() runtime.Object { return &networkingv1.IngressClass{} }, NewList: func() runtime.Object { return &networkingv1.IngressClassList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			if obj.(*networkingv1.IngressClass).Spec.Controller == "" {
				return field.ErrorList{field.Required(field.NewPath("spec", "controller"), "")}
			}
			return nil
		},
		Columns: []Column{
			printers.Col("Controller", "string", func(o runtime.Object) interface{} { return o.(*networkingv1.IngressClass).Spec.Controller }),
			printers.Col("Parameters", "string", func(o runtime.Object) interface{} {
				if p := o.(*networkingv1.IngressClass).Spec.Parameters; p != nil {
					return p.Kind + "/" + p.Name
				}
				return "<none>"
			}),
			printers.AgeColumn,
		},
	}
}
