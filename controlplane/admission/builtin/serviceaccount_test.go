package builtin

import (
	"strings"
	"testing"

	"github.com/petrel-project/petrel/controlplane/registry"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestInjectAPIAccess(t *testing.T) {
	pod := func() *corev1.Pod {
		return &corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init"}},
			Containers:     []corev1.Container{{Name: "a"}, {Name: "b", VolumeMounts: []corev1.VolumeMount{{Name: "own", MountPath: registry.APIAccessPath}}}},
		}}
	}
	p := pod()
	injectAPIAccess(p, nil)
	if len(p.Spec.Volumes) != 1 || !strings.HasPrefix(p.Spec.Volumes[0].Name, "kube-api-access-") {
		t.Fatalf("volumes %+v", p.Spec.Volumes)
	}
	src := p.Spec.Volumes[0].Projected.Sources
	if len(src) != 3 || src[0].ServiceAccountToken.Path != "token" || src[1].ConfigMap.Name != registry.RootCAConfigMap || src[2].DownwardAPI.Items[0].Path != "namespace" {
		t.Errorf("sources %+v", src)
	}
	name := p.Spec.Volumes[0].Name
	for _, c := range []corev1.Container{p.Spec.InitContainers[0], p.Spec.Containers[0]} {
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != name || !c.VolumeMounts[0].ReadOnly {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}
	if m := p.Spec.Containers[1].VolumeMounts; len(m) != 1 || m[0].Name != "own" {
		t.Errorf("a container with its own mount there got %+v", m)
	}
	// Once is enough: a pod written back whole keeps its one volume.
	injectAPIAccess(p, nil)
	if len(p.Spec.Volumes) != 1 {
		t.Errorf("injected twice: %d volumes", len(p.Spec.Volumes))
	}

	p = pod()
	p.Spec.AutomountServiceAccountToken = ptr.To(false)
	injectAPIAccess(p, ptr.To(true))
	if len(p.Spec.Volumes) != 0 {
		t.Error("the pod opted out")
	}
	p = pod()
	injectAPIAccess(p, ptr.To(false))
	if len(p.Spec.Volumes) != 0 {
		t.Error("the service account opted out and the pod did not say")
	}
	p = pod()
	p.Spec.AutomountServiceAccountToken = ptr.To(true)
	injectAPIAccess(p, ptr.To(false))
	if len(p.Spec.Volumes) != 1 {
		t.Error("the pod opted in over its service account")
	}
}

func TestAddPullSecrets(t *testing.T) {
	sa := &corev1.ServiceAccount{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "sa-cred"}}}
	p := &corev1.Pod{}
	addPullSecrets(p, sa)
	if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "sa-cred" {
		t.Fatalf("a pod naming none got %v, want the account's", p.Spec.ImagePullSecrets)
	}
	sa.ImagePullSecrets[0].Name = "changed"
	if p.Spec.ImagePullSecrets[0].Name != "sa-cred" {
		t.Fatal("the pod shares its list with the account")
	}
	p = &corev1.Pod{Spec: corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "own"}}}}
	addPullSecrets(p, sa)
	if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "own" {
		t.Fatalf("a pod with its own secrets got %v", p.Spec.ImagePullSecrets)
	}
}
