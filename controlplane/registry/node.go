package registry

import (
	"fmt"
	"net"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// nodeResource is the strategy of nodes.
func nodeResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("nodes"), Kind: "Node", ShortNames: []string{"no"}, HasStatus: true, KeepStatusOnCreate: true,
		New: func() runtime.Object { return &corev1.Node{} }, NewList: func() runtime.Object { return &corev1.NodeList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			n := obj.(*corev1.Node)
			var errs field.ErrorList
			for i, c := range n.Spec.PodCIDRs {
				if _, _, err := net.ParseCIDR(c); err != nil {
					errs = append(errs, field.Invalid(field.NewPath("spec", "podCIDRs").Index(i), c, "must be a valid CIDR"))
				}
			}
			for i, t := range n.Spec.Taints {
				errs = append(errs, coreapi.ValidateTaint(t, field.NewPath("spec", "taints").Index(i))...)
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*corev1.Node), old.(*corev1.Node)
			if len(o.Spec.PodCIDRs) > 0 && !semanticEqual(n.Spec.PodCIDRs, o.Spec.PodCIDRs) {
				return field.ErrorList{field.Forbidden(field.NewPath("spec", "podCIDRs"), "node updates may not change podCIDR except from \"\" to valid")}
			}
			return nil
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": fmt.Sprint(obj.(*corev1.Node).Spec.Unschedulable)}
		},
		Columns: printers.NodeColumns(),
	}
}
