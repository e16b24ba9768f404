package storage

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"strings"

	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// csiDriverResource is the strategy of storage.k8s.io/v1 csidrivers
// (objects only), defaulted as Kubernetes does.
func csiDriverResource() *generic.Resource {
	d := func(o runtime.Object) *storagev1.CSIDriver { return o.(*storagev1.CSIDriver) }
	boolp := func(b bool) *bool { return &b }
	boolCol := func(name string, get func(*storagev1.CSIDriver) *bool) generic.Column {
		return printers.Col(name, "boolean", func(o runtime.Object) interface{} {
			if p := get(d(o)); p != nil {
				return *p
			}
			return false
		})
	}
	return &generic.Resource{
		GVR: storagev1.SchemeGroupVersion.WithResource("csidrivers"), Kind: "CSIDriver",
		New:     func() runtime.Object { return &storagev1.CSIDriver{} },
		NewList: func() runtime.Object { return &storagev1.CSIDriverList{} },
		Default: func(obj runtime.Object) {
			s := &d(obj).Spec
			if s.AttachRequired == nil {
				s.AttachRequired = boolp(true)
			}
			if s.PodInfoOnMount == nil {
				s.PodInfoOnMount = boolp(false)
			}
			if s.StorageCapacity == nil {
				s.StorageCapacity = boolp(false)
			}
			if s.FSGroupPolicy == nil {
				v := storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy
				s.FSGroupPolicy = &v
			}
			if len(s.VolumeLifecycleModes) == 0 {
				s.VolumeLifecycleModes = []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}
			}
			if s.RequiresRepublish == nil {
				s.RequiresRepublish = boolp(false)
			}
			if s.SELinuxMount == nil {
				s.SELinuxMount = boolp(false)
			}
		},
		NameValidator: func(name string, prefix bool) []string {
			// A driver's name is its CSI name: a DNS subdomain of at most 63.
			errs := validation.NameIsDNSSubdomain(name, prefix)
			if len(name) > 63 {
				errs = append(errs, "must be no more than 63 characters")
			}
			return errs
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			var errs field.ErrorList
			for i, m := range d(obj).Spec.VolumeLifecycleModes {
				if m != storagev1.VolumeLifecyclePersistent && m != storagev1.VolumeLifecycleEphemeral {
					errs = append(errs, field.NotSupported(field.NewPath("spec", "volumeLifecycleModes").Index(i), m, []string{string(storagev1.VolumeLifecyclePersistent), string(storagev1.VolumeLifecycleEphemeral)}))
				}
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			a, b := d(obj).Spec, d(old).Spec
			var errs field.ErrorList
			// As in Kubernetes 1.32, attachRequired, podInfoOnMount, the
			// fsGroupPolicy and lifecycle modes may not change.
			if !apiequality.Semantic.DeepEqual(a.AttachRequired, b.AttachRequired) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "attachRequired"), a.AttachRequired, "field is immutable"))
			}
			if !apiequality.Semantic.DeepEqual(a.FSGroupPolicy, b.FSGroupPolicy) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "fsGroupPolicy"), a.FSGroupPolicy, "field is immutable"))
			}
			if !apiequality.Semantic.DeepEqual(a.VolumeLifecycleModes, b.VolumeLifecycleModes) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "volumeLifecycleModes"), a.VolumeLifecycleModes, "field is immutable"))
			}
			return errs
		},
		Columns: []generic.Column{
			boolCol("AttachRequired", func(c *storagev1.CSIDriver) *bool { return c.Spec.AttachRequired }),
			boolCol("PodInfoOnMount", func(c *storagev1.CSIDriver) *bool { return c.Spec.PodInfoOnMount }),
			boolCol("StorageCapacity", func(c *storagev1.CSIDriver) *bool { return c.Spec.StorageCapacity }),
			printers.Col("TokenRequests", "string", func(o runtime.Object) interface{} {
				var auds []string
				for _, t := range d(o).Spec.TokenRequests {
					auds = append(auds, t.Audience)
				}
				return printers.JoinOrNone(auds)
			}),
			boolCol("RequiresRepublish", func(c *storagev1.CSIDriver) *bool { return c.Spec.RequiresRepublish }),
			printers.Col("Modes", "string", func(o runtime.Object) interface{} {
				var m []string
				for _, x := range d(o).Spec.VolumeLifecycleModes {
					m = append(m, string(x))
				}
				if len(m) == 0 {
					return "<none>"
				}
				return strings.Join(m, ",")
			}),
			printers.AgeColumn,
		},
	}
}
