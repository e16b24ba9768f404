package registry

import (
	"fmt"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	"github.com/petrel-project/petrel/controlplane/registry/coreapi"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podResource is the strategy of pods.
func podResource() *Resource {
	gv := corev1.SchemeGroupVersion
	return &Resource{
		GVR: gv.WithResource("pods"), Kind: "Pod", Namespaced: true, ShortNames: []string{"po"}, Categories: []string{"all"},
		HasStatus: true, GracePeriod: podGracePeriod,
		Subresources: []string{ephemeralContainersSubresource}, PrepareForUpdate: prepareEphemeralUpdate,
		ValidateSubresourceUpdate: validateEphemeralUpdate,
		New:                       func() runtime.Object { return &corev1.Pod{} }, NewList: func() runtime.Object { return &corev1.PodList{} },
		Default: func(obj runtime.Object) {
			p := obj.(*corev1.Pod)
			coreapi.DefaultPodSpec(&p.Spec)
			coreapi.DefaultPodOnly(&p.Spec)
			if p.Status.Phase == "" {
				p.Status.Phase = corev1.PodPending
			}
			if p.Status.QOSClass == "" {
				p.Status.QOSClass = coreapi.QOSClass(&p.Spec)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			p := obj.(*corev1.Pod)
			return coreapi.ValidatePodSpec(&p.Spec, field.NewPath("spec"))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			p, o := obj.(*corev1.Pod), old.(*corev1.Pod)
			errs := coreapi.ValidatePodSpec(&p.Spec, field.NewPath("spec"))
			// Only images, activeDeadlineSeconds and added tolerations may change.
			a, b := p.Spec.DeepCopy(), o.Spec.DeepCopy()
			for i := range a.Containers {
				if i < len(b.Containers) {
					a.Containers[i].Image = b.Containers[i].Image
				}
			}
			for i := range a.InitContainers {
				if i < len(b.InitContainers) {
					a.InitContainers[i].Image = b.InitContainers[i].Image
				}
			}
			a.ActiveDeadlineSeconds, a.Tolerations = b.ActiveDeadlineSeconds, b.Tolerations
			if o.Spec.NodeName == "" {
				a.NodeName = b.NodeName
			}
			if !semanticEqual(a, b) {
				errs = append(errs, field.Forbidden(field.NewPath("spec"), "pod updates may not change fields other than `spec.containers[*].image`, `spec.initContainers[*].image`, `spec.activeDeadlineSeconds` or `spec.tolerations` (only additions to existing tolerations)"))
			}
			return errs
		},
		Fields: func(obj runtime.Object) fields.Set {
			p := obj.(*corev1.Pod)
			return fields.Set{
				"spec.nodeName": p.Spec.NodeName, "spec.restartPolicy": string(p.Spec.RestartPolicy),
				"spec.schedulerName": p.Spec.SchedulerName, "spec.serviceAccountName": p.Spec.ServiceAccountName,
				"spec.hostNetwork": fmt.Sprint(p.Spec.HostNetwork), "status.phase": string(p.Status.Phase),
				"status.podIP": p.Status.PodIP, "status.nominatedNodeName": p.Status.NominatedNodeName,
			}
		},
		Columns: printers.PodColumns(),
	}
}
