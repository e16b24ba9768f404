package registry

import (
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ingressResource is the strategy of ingresses.
func ingressResource() *Resource {
	net1 := networkingv1.SchemeGroupVersion
	return &Resource{
		GVR: net1.WithResource("ingresses"), Kind: "Ingress", Namespaced: true, ShortNames: []string{"ing"}, HasStatus: true, GenerationOnSpec: true,
		New: func() runtime.Object { return &networkingv1.Ingress{} }, NewList: func() runtime.Object { return &networkingv1.IngressList{} },
		Default: func(obj runtime.Object) {
			ing := obj.(*networkingv1.Ingress)
			for i := range ing.Spec.Rules {
				if h := ing.Spec.Rules[i].HTTP; h != nil {
					for j := range h.Paths {
						if h.Paths[j].PathType == nil {
							t := networkingv1.PathTypeImplementationSpecific
							h.Paths[j].PathType = &t
						}
					}
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			ing := obj.(*networkingv1.Ingress)
			var errs field.ErrorList
			if ing.Spec.DefaultBackend == nil && len(ing.Spec.Rules) == 0 {
				errs = append(errs, field.Invalid(field.NewPath("spec"), "", "either `defaultBackend` or `rules` must be specified"))
			}
			return errs
		},
		Columns: []Column{
			printers.Col("Class", "string", func(o runtime.Object) interface{} {
				if c := o.(*networkingv1.Ingress).Spec.IngressClassName; c != nil {
					return *c
				}
				return "<none>"
			}),
			printers.Col("Hosts", "string", func(o runtime.Object) interface{} {
				var h []string
				for _, r := range o.(*networkingv1.Ingress).Spec.Rules {
					h = append(h, printers.OrDefault(r.Host, "*"))
				}
				if len(h) == 0 {
					return "*"
				}
				return strings.Join(h, ",")
			}),
			printers.Col("Address", "string", func(o runtime.Object) interface{} {
				var a []string
				for _, in := range o.(*networkingv1.Ingress).Status.LoadBalancer.Ingress {
					a = append(a, in.IP+in.Hostname)
				}
				return strings.Join(a, ",")
			}),
			printers.Col("Ports", "string", func(o runtime.Object) interface{} {
				if len(o.(*networkingv1.Ingress).Spec.TLS) > 0 {
					return "80, 443"
				}
				return "80"
			}),
			printers.AgeColumn,
		},
	}
}
