package registry

import (
	"github.com/petrel-project/petrel/controlplane/registry/printers"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// persistentVolumeClaimResource is the strategy of persistentvolumeclaims.
func persistentVolumeClaimResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("persistentvolumeclaims"), Kind: "PersistentVolumeClaim", Namespaced: true, ShortNames: []string{"pvc"}, HasStatus: true,
		New: func() runtime.Object { return &corev1.PersistentVolumeClaim{} }, NewList: func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },
		Default: func(obj runtime.Object) {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			if pvc.Spec.VolumeMode == nil {
				m := corev1.PersistentVolumeFilesystem
				pvc.Spec.VolumeMode = &m
			}
			if pvc.Status.Phase == "" {
				pvc.Status.Phase = corev1.ClaimPending
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			pvc := obj.(*corev1.PersistentVolumeClaim)
			var errs field.ErrorList
			if len(pvc.Spec.AccessModes) == 0 {
				errs = append(errs, field.Required(field.NewPath("spec", "accessModes"), ""))
			}
			if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				errs = append(errs, field.Required(field.NewPath("spec", "resources").Key("storage"), ""))
			}
			return errs
		},
		Columns: printers.PVCColumns(),
	}
}
