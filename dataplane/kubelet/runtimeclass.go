package kubelet

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// labelOCIRuntime records on a container which OCI runtime runs it.
const labelOCIRuntime = "petrel.io/oci-runtime"

// ociRuntime is the OCI runtime (handler name, binary and the spec version
// it takes) a pod's
// containers run with: its RuntimeClass's handler, or the node's default.
// A RuntimeClass is read from the API when a container starts, which only
// pods that name one pay for.
func (k *Kubelet) ociRuntime(ctx context.Context, pod *corev1.Pod) (name, path, specVersion string, err error) {
	handler := ""
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		cls, err := k.client.NodeV1().RuntimeClasses().Get(ctx, *rc, metav1.GetOptions{})
		if err != nil {
			return "", "", "", errConfig{fmt.Errorf("RuntimeClass %q: %w", *rc, err)}
		}
		handler = cls.Handler
	}
	if handler == "" && k.cfg.OCIRuntimes.Paths == nil {
		return "", "", "", nil // the shim's own default, runc
	}
	name, path, specVersion, err = k.cfg.OCIRuntimes.Binary(handler)
	if err != nil {
		return "", "", "", errConfig{err}
	}
	return name, path, specVersion, nil
}
