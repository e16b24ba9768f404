package nodeauth

import corev1 "k8s.io/api/core/v1"

// refKind is a kind of object a pod refers to by name.
type refKind int

const (
	secretRefs refKind = iota
	configMapRefs
	claimRefs
)

// visitNames reports whether pod refers to an object of kind named name.
func visitNames(pod *corev1.Pod, kind refKind, name string) bool {
	found := false
	visitRefs(pod, func(k refKind, n string) bool {
		if k == kind && n == name {
			found = true
			return false
		}
		return true
	})
	return found
}

// visitRefs calls fn with every Secret, ConfigMap and PersistentVolumeClaim
// the pod names, as Kubernetes' VisitPodSecretNames and
// VisitPodConfigmapNames do: image pull secrets, volumes (projected ones
// included, and the secret references of volume plugins), and the env and
// envFrom of every container, init and ephemeral ones included. fn returns
// false to stop.
func visitRefs(pod *corev1.Pod, fn func(refKind, string) bool) {
	for _, s := range pod.Spec.ImagePullSecrets {
		if !fn(secretRefs, s.Name) {
			return
		}
	}
	if !visitVolumes(pod, fn) {
		return
	}
	var containers []corev1.Container
	containers = append(containers, pod.Spec.InitContainers...)
	containers = append(containers, pod.Spec.Containers...)
	for i := range pod.Spec.EphemeralContainers {
		containers = append(containers, corev1.Container{Env: pod.Spec.EphemeralContainers[i].Env, EnvFrom: pod.Spec.EphemeralContainers[i].EnvFrom})
	}
	for i := range containers {
		c := &containers[i]
		for _, from := range c.EnvFrom {
			if from.SecretRef != nil && !fn(secretRefs, from.SecretRef.Name) {
				return
			}
			if from.ConfigMapRef != nil && !fn(configMapRefs, from.ConfigMapRef.Name) {
				return
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && !fn(secretRefs, r.Name) {
				return
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !fn(configMapRefs, r.Name) {
				return
			}
		}
	}
}

func visitVolumes(pod *corev1.Pod, fn func(refKind, string) bool) bool {
	secret := func(r *corev1.LocalObjectReference) bool { return r == nil || fn(secretRefs, r.Name) }
	volumes := pod.Spec.Volumes
	for i := range volumes {
		v := &volumes[i].VolumeSource
		switch {
		case v.Secret != nil:
			if !fn(secretRefs, v.Secret.SecretName) {
				return false
			}
		case v.ConfigMap != nil:
			if !fn(configMapRefs, v.ConfigMap.Name) {
				return false
			}
		case v.PersistentVolumeClaim != nil:
			if !fn(claimRefs, v.PersistentVolumeClaim.ClaimName) {
				return false
			}
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && !fn(secretRefs, src.Secret.Name) {
					return false
				}
				if src.ConfigMap != nil && !fn(configMapRefs, src.ConfigMap.Name) {
					return false
				}
			}
		case v.CSI != nil:
			if !secret(v.CSI.NodePublishSecretRef) {
				return false
			}
		case v.AzureFile != nil:
			if !fn(secretRefs, v.AzureFile.SecretName) {
				return false
			}
		case v.CephFS != nil:
			if !secret(v.CephFS.SecretRef) {
				return false
			}
		case v.Cinder != nil:
			if !secret(v.Cinder.SecretRef) {
				return false
			}
		case v.FlexVolume != nil:
			if !secret(v.FlexVolume.SecretRef) {
				return false
			}
		case v.ISCSI != nil:
			if !secret(v.ISCSI.SecretRef) {
				return false
			}
		case v.RBD != nil:
			if !secret(v.RBD.SecretRef) {
				return false
			}
		case v.ScaleIO != nil:
			if !secret(v.ScaleIO.SecretRef) {
				return false
			}
		case v.StorageOS != nil:
			if !secret(v.StorageOS.SecretRef) {
				return false
			}
		case v.Ephemeral != nil:
			// A generic ephemeral volume's claim is named <pod>-<volume>.
			if !fn(claimRefs, pod.Name+"-"+volumes[i].Name) {
				return false
			}
		}
	}
	return true
}
