package storage

import (
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/validation"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// csiStorageCapacityResource is the strategy of storage.k8s.io/v1
// csistoragecapacities (objects only).
func csiStorageCapacityResource() *generic.Resource {
	c := func(o runtime.Object) *storagev1.CSIStorageCapacity { return o.(*storagev1.CSIStorageCapacity) }
	return &generic.Resource{
		GVR: storagev1.SchemeGroupVersion.WithResource("csistoragecapacities"), Kind: "CSIStorageCapacity", Namespaced: true,
		New:     func() runtime.Object { return &storagev1.CSIStorageCapacity{} },
		NewList: func() runtime.Object { return &storagev1.CSIStorageCapacityList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			x := c(obj)
			var errs field.ErrorList
			if x.NodeTopology != nil {
				errs = append(errs, metavalidation.ValidateLabelSelector(x.NodeTopology, metavalidation.LabelSelectorValidationOptions{}, field.NewPath("nodeTopology"))...)
			}
			scp := field.NewPath("storageClassName")
			if x.StorageClassName == "" {
				errs = append(errs, field.Required(scp, ""))
			} else {
				for _, msg := range validation.NameIsDNSSubdomain(x.StorageClassName, false) {
					errs = append(errs, field.Invalid(scp, x.StorageClassName, msg))
				}
			}
			for _, q := range []struct {
				name string
				ok   bool
			}{{"capacity", x.Capacity == nil || x.Capacity.Sign() >= 0}, {"maximumVolumeSize", x.MaximumVolumeSize == nil || x.MaximumVolumeSize.Sign() >= 0}} {
				if !q.ok {
					errs = append(errs, field.Invalid(field.NewPath(q.name), "", "must be greater than or equal to 0"))
				}
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			a, b := c(obj), c(old)
			var errs field.ErrorList
			if a.StorageClassName != b.StorageClassName {
				errs = append(errs, field.Invalid(field.NewPath("storageClassName"), a.StorageClassName, "field is immutable"))
			}
			if !apiequality.Semantic.DeepEqual(a.NodeTopology, b.NodeTopology) {
				errs = append(errs, field.Invalid(field.NewPath("nodeTopology"), a.NodeTopology, "field is immutable"))
			}
			return errs
		},
		Columns: []generic.Column{
			printers.Col("StorageClassName", "string", func(o runtime.Object) interface{} { return c(o).StorageClassName }),
			printers.Col("Capacity", "string", func(o runtime.Object) interface{} {
				if q := c(o).Capacity; q != nil {
					return q.String()
				}
				return ""
			}),
			printers.AgeColumn,
		},
	}
}
