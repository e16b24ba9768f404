package kubelet

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/imagepull"
)

// newPuller has the kubelet's images come through package imagepull:
// pull policies, the pods' pull secrets, registries, mirrors, shared
// pulls and image GC.
func (k *Kubelet) newPuller() {
	secrets := func(ctx context.Context, ns, name string) (*corev1.Secret, error) {
		return k.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	}
	p, err := imagepull.New(k.runtime, k.cfg.Registries, secrets, k.recorder)
	if err != nil {
		slog.Error("kubelet: registry settings unusable; pulling with containerd's defaults", "err", err)
		return
	}
	k.puller = p
	k.image = p.Ensure
}
