package storage

import (
	storagev1 "k8s.io/api/storage/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// volumeAttachmentResource is the strategy of storage.k8s.io/v1
// volumeattachments (+status; objects only: nothing attaches yet).
func volumeAttachmentResource() *generic.Resource {
	va := func(o runtime.Object) *storagev1.VolumeAttachment { return o.(*storagev1.VolumeAttachment) }
	return &generic.Resource{
		GVR: storagev1.SchemeGroupVersion.WithResource("volumeattachments"), Kind: "VolumeAttachment", HasStatus: true,
		New:     func() runtime.Object { return &storagev1.VolumeAttachment{} },
		NewList: func() runtime.Object { return &storagev1.VolumeAttachmentList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			s := va(obj).Spec
			sp := field.NewPath("spec")
			var errs field.ErrorList
			if s.Attacher == "" {
				errs = append(errs, field.Required(sp.Child("attacher"), ""))
			}
			if s.NodeName == "" {
				errs = append(errs, field.Required(sp.Child("nodeName"), ""))
			}
			n := 0
			if s.Source.PersistentVolumeName != nil {
				n++
				if *s.Source.PersistentVolumeName == "" {
					errs = append(errs, field.Required(sp.Child("source", "persistentVolumeName"), "must specify non empty persistentVolumeName"))
				}
			}
			if s.Source.InlineVolumeSpec != nil {
				n++
			}
			if n != 1 {
				errs = append(errs, field.Forbidden(sp.Child("source"), "must specify exactly one of persistentVolumeName and inlineVolumeSpec"))
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			if !apiequality.Semantic.DeepEqual(va(obj).Spec, va(old).Spec) {
				return field.ErrorList{field.Invalid(field.NewPath("spec"), va(obj).Spec, "field is immutable")}
			}
			return nil
		},
		Columns: []generic.Column{
			printers.Col("Attacher", "string", func(o runtime.Object) interface{} { return va(o).Spec.Attacher }),
			printers.Col("PV", "string", func(o runtime.Object) interface{} {
				if p := va(o).Spec.Source.PersistentVolumeName; p != nil {
					return *p
				}
				return ""
			}),
			printers.Col("Node", "string", func(o runtime.Object) interface{} { return va(o).Spec.NodeName }),
			printers.Col("Attached", "boolean", func(o runtime.Object) interface{} { return va(o).Status.Attached }),
			printers.AgeColumn,
		},
	}
}
