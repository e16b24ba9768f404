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

// PodContainer is what a containerd container's labels say of the pod
// container it runs, for tools that read containerd (petrelctl).
type PodContainer struct {
	Namespace, Pod, Container string
	// OCIRuntime is the runtime that runs it (crun, runc), empty when the
	// node left it to the shim's default.
	OCIRuntime string
	Restarts   string
}

// PodContainerOf reads a container's labels; ok is false for a container
// that is not a pod's.
func PodContainerOf(labels map[string]string) (PodContainer, bool) {
	if labels[labelPodUID] == "" {
		return PodContainer{}, false
	}
	return PodContainer{Namespace: labels[labelPodNamespace], Pod: labels[labelPodName], Container: labels[labelContainer],
		OCIRuntime: labels[labelOCIRuntime], Restarts: labels[labelRestarts]}, true
}
