package storage

import (
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// csiNodeResource is the strategy of storage.k8s.io/v1 csinodes: the CSI
// drivers a node runs (objects only).
func csiNodeResource() *generic.Resource {
	n := func(o runtime.Object) *storagev1.CSINode { return o.(*storagev1.CSINode) }
	return &generic.Resource{
		GVR: storagev1.SchemeGroupVersion.WithResource("csinodes"), Kind: "CSINode",
		New:     func() runtime.Object { return &storagev1.CSINode{} },
		NewList: func() runtime.Object { return &storagev1.CSINodeList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			var errs field.ErrorList
			seen := map[string]bool{}
			dp := field.NewPath("spec", "drivers")
			for i, d := range n(obj).Spec.Drivers {
				switch {
				case d.Name == "":
					errs = append(errs, field.Required(dp.Index(i).Child("name"), ""))
				case seen[d.Name]:
					errs = append(errs, field.Duplicate(dp.Index(i).Child("name"), d.Name))
				}
				seen[d.Name] = true
				if d.NodeID == "" {
					errs = append(errs, field.Required(dp.Index(i).Child("nodeID"), ""))
				}
				if a := d.Allocatable; a != nil && a.Count != nil && *a.Count < 0 {
					errs = append(errs, field.Invalid(dp.Index(i).Child("allocatable", "count"), *a.Count, "must be greater than or equal to 0"))
				}
			}
			return errs
		},
		Columns: []generic.Column{
			printers.Col("Drivers", "integer", func(o runtime.Object) interface{} { return int64(len(n(o).Spec.Drivers)) }),
			printers.AgeColumn,
		},
	}
}
