package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// networkPolicyResource is the strategy of networkpolicies.
func networkPolicyResource() *Resource {
	net1 := networkingv1.SchemeGroupVersion
	return &Resource{
		GVR: net1.WithResource("networkpolicies"), Kind: "NetworkPolicy", Namespaced: true, ShortNames: []string{"netpol"}, GenerationOnSpec: true,
		New: func() runtime.Object { return &networkingv1.NetworkPolicy{} }, NewList: func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
		Default: func(obj runtime.Object) {
			np := obj.(*networkingv1.NetworkPolicy)
			if len(np.Spec.PolicyTypes) == 0 {
				np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
				if len(np.Spec.Egress) > 0 {
					np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
				}
			}
			for i := range np.Spec.Ingress {
				for j := range np.Spec.Ingress[i].Ports {
					if np.Spec.Ingress[i].Ports[j].Protocol == nil {
						p := corev1.ProtocolTCP
						np.Spec.Ingress[i].Ports[j].Protocol = &p
					}
				}
			}
		},
		Columns: []Column{
			printers.Col("Pod-Selector", "string", func(o runtime.Object) interface{} {
				s := printers.LabelSelectorString(&o.(*networkingv1.NetworkPolicy).Spec.PodSelector)
				if s == "<none>" {
					return "<none>"
				}
				return s
			}),
			printers.AgeColumn,
		},
	}
}
