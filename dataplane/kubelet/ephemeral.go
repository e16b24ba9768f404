package kubelet

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// containerKind is which of the pod's lists a container is in: the lists
// differ in restart policy, probes and what their status means.
type containerKind int

const (
	regularContainer containerKind = iota
	initContainer
	// ephemeralContainer is one added by pods/ephemeralcontainers (kubectl
	// debug): started once in a running pod, never restarted, not probed,
	// and no part of the pod's phase or readiness.
	ephemeralContainer
)

// restartPolicy is the restart policy of a container of this kind.
func (kind containerKind) restartPolicy(pod *corev1.Pod) corev1.RestartPolicy {
	switch kind {
	case initContainer:
		return policyOf(pod, true)
	case ephemeralContainer:
		return corev1.RestartPolicyNever
	}
	return pod.Spec.RestartPolicy
}

// asContainer is an ephemeral container as the fields it shares with a
// container: the two types have the same fields, which is how the kubelet
// runs both through one path.
func asContainer(ec *corev1.EphemeralContainer) *corev1.Container {
	return (*corev1.Container)(&ec.EphemeralContainerCommon)
}

// syncEphemeral starts the pod's ephemeral containers that have not run.
func (k *Kubelet) syncEphemeral(ctx context.Context, pod *corev1.Pod, ps *podState, sb sandbox, vols map[string]string, unchanged map[string]observed) time.Duration {
	var requeue time.Duration
	for i := range pod.Spec.EphemeralContainers {
		c := asContainer(&pod.Spec.EphemeralContainers[i])
		st := k.observe(ctx, string(pod.UID), c.Name)
		if st.running || st.exited {
			unchanged[c.Name] = st
		}
		if d := k.ensureContainer(ctx, pod, ps, sb, vols, c, st, corev1.RestartPolicyNever); d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	return requeue
}

// targetPIDNamespace is the process namespace an ephemeral container named
// name joins: that of the container it targets, so a debugger sees its
// processes. Empty for any other container, or one with no target.
func (k *Kubelet) targetPIDNamespace(ctx context.Context, pod *corev1.Pod, name string) (string, error) {
	for i := range pod.Spec.EphemeralContainers {
		ec := &pod.Spec.EphemeralContainers[i]
		if ec.Name != name || ec.TargetContainerName == "" {
			continue
		}
		target := k.observe(ctx, string(pod.UID), ec.TargetContainerName)
		if target.err != nil {
			return "", target.err
		}
		if !target.running || target.state.Pid == 0 {
			return "", errConfig{fmt.Errorf("target container %q is not running", ec.TargetContainerName)}
		}
		return fmt.Sprintf("/proc/%d/ns/pid", target.state.Pid), nil
	}
	return "", nil
}
