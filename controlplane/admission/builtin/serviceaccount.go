package builtin

import (
	"context"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// ServiceAccount gives a new pod its API credentials volume and, when it
// names none, its service account's imagePullSecrets, as Kubernetes'
// ServiceAccount admission does; the pod's service account, when it
// exists, may opt out of the volume for pods that do not say.
type ServiceAccount struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *ServiceAccount) Name() string { return "ServiceAccount" }

// Handles creates.
func (p *ServiceAccount) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit injects the volume into a new pod.
func (p *ServiceAccount) Admit(ctx context.Context, a *admission.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Subresource != "" {
		return nil
	}
	var accountAutomount *bool
	name := pod.Spec.ServiceAccountName
	if name == "" {
		name = pod.Spec.DeprecatedServiceAccount
	}
	if name == "" {
		name = "default"
	}
	if st := coreStore(p.reg, "serviceaccounts"); st != nil {
		if obj, err := st.Lookup(ctx, pod.Namespace, name); err == nil {
			sa := obj.(*corev1.ServiceAccount)
			accountAutomount = sa.AutomountServiceAccountToken
			addPullSecrets(pod, sa)
		}
	}
	injectAPIAccess(pod, accountAutomount)
	return nil
}

// addPullSecrets gives a pod that names no pull secrets its service
// account's, as Kubernetes does; a pod's own list is left as it is.
func addPullSecrets(pod *corev1.Pod, sa *corev1.ServiceAccount) {
	if len(pod.Spec.ImagePullSecrets) == 0 && len(sa.ImagePullSecrets) > 0 {
		pod.Spec.ImagePullSecrets = append([]corev1.LocalObjectReference(nil), sa.ImagePullSecrets...)
	}
}

// apiAccessTokenSeconds is the token lifetime Kubernetes asks for
// (an hour and a few seconds, so the kubelet's refresh is told apart).
const apiAccessTokenSeconds = 3607

// injectAPIAccess does what Kubernetes' ServiceAccount admission does to a
// new pod: unless the pod opts out (automountServiceAccountToken: false),
// or leaves it to its service account and that opts out (accountAutomount
// false), it adds a projected volume kube-api-access-<suffix> (a token for
// the pod's service account, kube-root-ca.crt's ca.crt and the namespace)
// and mounts it read-only at registry.APIAccessPath in every container that has
// nothing there already.
func injectAPIAccess(p *corev1.Pod, accountAutomount *bool) {
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
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: registry.RootCAConfigMap},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace",
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}})
	mount := func(cs []corev1.Container) {
		for i := range cs {
			taken := false
			for _, m := range cs[i].VolumeMounts {
				taken = taken || m.MountPath == registry.APIAccessPath
			}
			if !taken {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: registry.APIAccessPath})
			}
		}
	}
	mount(p.Spec.InitContainers)
	mount(p.Spec.Containers)
}
