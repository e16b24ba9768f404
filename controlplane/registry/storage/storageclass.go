package storage

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// storageClassResource is the strategy of storage.k8s.io/v1
// storageclasses (controlplane/controllers/persistentvolume provisions
// for the default class, local).
func storageClassResource() *generic.Resource {
	sc := func(o runtime.Object) *storagev1.StorageClass { return o.(*storagev1.StorageClass) }
	return &generic.Resource{
		GVR: storagev1.SchemeGroupVersion.WithResource("storageclasses"), Kind: "StorageClass", ShortNames: []string{"sc"},
		New:     func() runtime.Object { return &storagev1.StorageClass{} },
		NewList: func() runtime.Object { return &storagev1.StorageClassList{} },
		Default: func(obj runtime.Object) {
			s := sc(obj)
			if s.ReclaimPolicy == nil {
				v := corev1.PersistentVolumeReclaimDelete
				s.ReclaimPolicy = &v
			}
			if s.VolumeBindingMode == nil {
				v := storagev1.VolumeBindingImmediate
				s.VolumeBindingMode = &v
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			s := sc(obj)
			var errs field.ErrorList
			pp := field.NewPath("provisioner")
			if s.Provisioner == "" {
				errs = append(errs, field.Required(pp, ""))
			} else {
				// A qualified name, as Kubernetes checks it ("example.com/p").
				for _, msg := range utilvalidation.IsQualifiedName(strings.ToLower(s.Provisioner)) {
					errs = append(errs, field.Invalid(pp, s.Provisioner, msg))
				}
			}
			if rp := s.ReclaimPolicy; rp != nil && *rp != corev1.PersistentVolumeReclaimDelete && *rp != corev1.PersistentVolumeReclaimRetain {
				errs = append(errs, field.NotSupported(field.NewPath("reclaimPolicy"), *rp, []string{string(corev1.PersistentVolumeReclaimDelete), string(corev1.PersistentVolumeReclaimRetain)}))
			}
			if m := s.VolumeBindingMode; m != nil && *m != storagev1.VolumeBindingImmediate && *m != storagev1.VolumeBindingWaitForFirstConsumer {
				errs = append(errs, field.NotSupported(field.NewPath("volumeBindingMode"), *m, []string{string(storagev1.VolumeBindingImmediate), string(storagev1.VolumeBindingWaitForFirstConsumer)}))
			}
			return errs
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			a, b := sc(obj), sc(old)
			var errs field.ErrorList
			if !apiequality.Semantic.DeepEqual(a.Parameters, b.Parameters) {
				errs = append(errs, field.Forbidden(field.NewPath("parameters"), "updates to parameters are forbidden."))
			}
			if a.Provisioner != b.Provisioner {
				errs = append(errs, field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden."))
			}
			if !apiequality.Semantic.DeepEqual(a.ReclaimPolicy, b.ReclaimPolicy) {
				errs = append(errs, field.Forbidden(field.NewPath("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
			}
			if !apiequality.Semantic.DeepEqual(a.VolumeBindingMode, b.VolumeBindingMode) {
				errs = append(errs, field.Invalid(field.NewPath("volumeBindingMode"), a.VolumeBindingMode, "field is immutable"))
			}
			return errs
		},
		// As Kubernetes' printer marks the default class.
		TableName: func(o runtime.Object) string {
			if sc(o).Annotations["storageclass.kubernetes.io/is-default-class"] == "true" {
				return sc(o).Name + " (default)"
			}
			return sc(o).Name
		},
		Columns: []generic.Column{
			printers.Col("Provisioner", "string", func(o runtime.Object) interface{} { return sc(o).Provisioner }),
			printers.Col("ReclaimPolicy", "string", func(o runtime.Object) interface{} {
				if p := sc(o).ReclaimPolicy; p != nil {
					return string(*p)
				}
				return string(corev1.PersistentVolumeReclaimDelete)
			}),
			printers.Col("VolumeBindingMode", "string", func(o runtime.Object) interface{} {
				if m := sc(o).VolumeBindingMode; m != nil {
					return string(*m)
				}
				return string(storagev1.VolumeBindingImmediate)
			}),
			printers.Col("AllowVolumeExpansion", "string", func(o runtime.Object) interface{} {
				if v := sc(o).AllowVolumeExpansion; v != nil {
					return strconv.FormatBool(*v)
				}
				return "false"
			}),
			printers.AgeColumn,
		},
	}
}
