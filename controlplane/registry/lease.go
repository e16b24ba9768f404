package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// leaseResource is the strategy of lease.
func leaseResource() *Resource {
	return &Resource{
		GVR: coordinationv1.SchemeGroupVersion.WithResource("leases"), Kind: "Lease", Namespaced: true,
		New: func() runtime.Object { return &coordinationv1.Lease{} }, NewList: func() runtime.Object { return &coordinationv1.LeaseList{} },
		Columns: []Column{
			printers.Col("Holder", "string", func(o runtime.Object) interface{} {
				if h := o.(*coordinationv1.Lease).Spec.HolderIdentity; h != nil {
					return *h
				}
				return ""
			}),
			printers.AgeColumn,
		},
	}
}
