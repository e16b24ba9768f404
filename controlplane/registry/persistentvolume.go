package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// persistentVolumeResource is the strategy of persistentvolumes.
func persistentVolumeResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("persistentvolumes"), Kind: "PersistentVolume", ShortNames: []string{"pv"}, HasStatus: true,
		New: func() runtime.Object { return &corev1.PersistentVolume{} }, NewList: func() runtime.Object { return &corev1.PersistentVolumeList{} },
		Default: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			if pv.Spec.PersistentVolumeReclaimPolicy == "" {
				pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
			}
			if pv.Spec.VolumeMode == nil {
				m := corev1.PersistentVolumeFilesystem
				pv.Spec.VolumeMode = &m
			}
			if pv.Status.Phase == "" {
				pv.Status.Phase = corev1.VolumePending
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			pv := obj.(*corev1.PersistentVolume)
			var errs field.ErrorList
			if len(pv.Spec.AccessModes) == 0 {
				errs = append(errs, field.Required(field.NewPath("spec", "accessModes"), ""))
			}
			if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok {
				errs = append(errs, field.Required(field.NewPath("spec", "capacity").Key("storage"), ""))
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.PersistentVolume).Status.Phase)}
		},
		Columns: printers.PVColumns(),
	}
}
