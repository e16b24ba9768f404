package registry

import (
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// APIAccessPath is where a pod's containers find their service account
// token, the cluster's CA and their namespace, as client-go's in-cluster
// config expects.
const APIAccessPath = "/var/run/secrets/kubernetes.io/serviceaccount"

// RootCAConfigMap is the ConfigMap in every namespace holding the
// cluster's CA (ca.crt), which pods use to trust the API server.
const RootCAConfigMap = "kube-root-ca.crt"

// apiAccessTokenSeconds is the token lifetime Kubernetes asks for
// (an hour and a few seconds, so the kubelet's refresh is told apart).
const apiAccessTokenSeconds = 3607

// InjectAPIAccess does what Kubernetes' ServiceAccount admission does to a
// new pod: unless the pod opts out (automountServiceAccountToken: false),
// or leaves it to its service account and that opts out (accountAutomount
// false), it adds a projected volume kube-api-access-<suffix> (a token for
// the pod's service account, kube-root-ca.crt's ca.crt and the namespace)
// and mounts it read-only at APIAccessPath in every container that has
// nothing there already.
func InjectAPIAccess(p *corev1.Pod, accountAutomount *bool) {
	if a := p.Spec.AutomountServiceAccountToken; a != nil && !*a {
		return
	}
	if p.Spec.AutomountServiceAccountToken == nil && accountAutomount != nil && !*accountAutomount {
		return
	}
	for _, v := range p.Spec.Volumes {
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.ServiceAccountToken != nil && src.ServiceAccountToken.Path == "token" {
					return // already there (a pod written back whole)
				}
			}
		}
	}
	const chars = "bcdfghjklmnpqrstvwxz2456789"
	suffix := make([]byte, 5)
	for i := range suffix {
		suffix[i] = chars[rand.IntN(len(chars))]
	}
	name := "kube-api-access-" + string(suffix)
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](apiAccessTokenSeconds), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}})
	mount := func(cs []corev1.Container) {
		for i := range cs {
			taken := false
			for _, m := range cs[i].VolumeMounts {
				taken = taken || m.MountPath == APIAccessPath
			}
			if !taken {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: APIAccessPath})
			}
		}
	}
	mount(p.Spec.InitContainers)
	mount(p.Spec.Containers)
}
