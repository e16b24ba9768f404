package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// hostPort is one port a pod's container asks of the node.
type hostPort struct {
	ip    string // "0.0.0.0" for every address
	proto corev1.Protocol
	port  int32
}

func (a hostPort) conflicts(b hostPort) bool {
	return a.port == b.port && a.proto == b.proto && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0")
}

func (a hostPort) String() string { return fmt.Sprintf("%s:%d/%s", a.ip, a.port, a.proto) }

// hostPortsOf lists the host ports a pod asks for.
func hostPortsOf(pod *corev1.Pod) []hostPort {
	var out []hostPort
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				if p.HostPort == 0 {
					continue
				}
				hp := hostPort{ip: p.HostIP, proto: p.Protocol, port: p.HostPort}
				if hp.ip == "" || hp.ip == "::" {
					hp.ip = "0.0.0.0"
				}
				if hp.proto == "" {
					hp.proto = corev1.ProtocolTCP
				}
				out = append(out, hp)
			}
		}
	}
	return out
}

// The kubelet's words for a pod whose host ports the node cannot give.
const (
	admissionReason  = "NodePorts"
	admissionMessage = "Pod was rejected: Predicate NodePorts failed: node(s) didn't have free ports for the requested pod ports"
)

// admit decides, once per pod, whether the node runs it, as the kubelet's
// admission does: a pod asking for a host port that a pod already admitted
// here holds is refused (phase Failed), whatever the scheduler decided,
// since two pods' frontends cannot share one port. It reports whether the
// pod may run.
func (k *Kubelet) admit(ctx context.Context, pod *corev1.Pod, ps *podState) (bool, error) {
	k.mu.Lock()
	switch {
	case ps.admitted:
		k.mu.Unlock()
		return true, nil
	case ps.rejected:
		k.mu.Unlock()
		return false, nil
	case pod.Status.Phase == corev1.PodRunning || k.hasSandbox(string(pod.UID)):
		// Admitted by this node before it restarted.
		ps.admitted = true
		k.mu.Unlock()
		return true, nil
	}
	var holder *corev1.Pod
	var taken hostPort
	if want := hostPortsOf(pod); len(want) > 0 {
		for _, obj := range k.pods.List() {
			other := obj.(*corev1.Pod)
			if other.UID == pod.UID || other.Status.Phase == corev1.PodSucceeded || other.Status.Phase == corev1.PodFailed || !k.admittedLocked(other) {
				continue
			}
			for _, hp := range hostPortsOf(other) {
				for _, w := range want {
					if w.conflicts(hp) {
						holder, taken = other, w
					}
				}
			}
		}
	}
	if holder == nil {
		// Under the lock with the check: of two pods asking at once, one
		// is admitted and the other sees it.
		ps.admitted = true
		k.mu.Unlock()
		return true, nil
	}
	ps.rejected = true
	k.mu.Unlock()
	k.recorder.Eventf(pod, corev1.EventTypeWarning, admissionReason, "%s (host port %s is held by pod %s/%s)",
		admissionMessage, taken, holder.Namespace, holder.Name)
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{"phase": corev1.PodFailed, "reason": admissionReason, "message": admissionMessage}})
	if err != nil {
		return false, err
	}
	_, err = k.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		k.mu.Lock()
		ps.rejected = false // decided again on the next sync
		k.mu.Unlock()
		return false, fmt.Errorf("refuse pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return false, nil
}

// admittedLocked says whether the node has taken the pod on (k.mu held).
func (k *Kubelet) admittedLocked(pod *corev1.Pod) bool {
	if ps := k.state[string(pod.UID)]; ps != nil && ps.admitted {
		return true
	}
	return pod.Status.Phase == corev1.PodRunning || k.hasSandbox(string(pod.UID))
}

// hasSandbox says whether the pod's network namespace was made here.
func (k *Kubelet) hasSandbox(uid string) bool {
	_, err := os.Stat(filepath.Join(k.podDir(uid), "sandbox.json"))
	return err == nil
}
