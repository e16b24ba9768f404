package kubelet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
	if name := forbiddenSysctl(pod); name != "" {
		ps.rejected = true
		k.mu.Unlock()
		msg := fmt.Sprintf("Pod was rejected: forbidden sysctl: %q not allowlisted", name)
		k.recorder.Event(pod, corev1.EventTypeWarning, sysctlReason, msg)
		return false, k.reject(ctx, pod, ps, sysctlReason, msg)
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
	return false, k.reject(ctx, pod, ps, admissionReason, admissionMessage)
}

// reject records the node's refusal of a pod in its status, or forgets the
// decision when that write fails so that the next sync makes it again.
func (k *Kubelet) reject(ctx context.Context, pod *corev1.Pod, ps *podState, reason, message string) error {
	if err := k.failPod(ctx, pod, reason, message); err != nil {
		k.mu.Lock()
		ps.rejected = false
		k.mu.Unlock()
		return fmt.Errorf("refuse pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// failPod ends a pod the node will not run (any more): phase Failed with
// the reason and message. The next sync, seeing the phase, stops what the
// pod has on the node.
func (k *Kubelet) failPod(ctx context.Context, pod *corev1.Pod, reason, message string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": pod.UID},
		"status": map[string]any{"phase": corev1.PodFailed, "reason": reason, "message": message}})
	if err != nil {
		return err
	}
	_, err = k.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

// The kubelet's words for a pod past its spec.activeDeadlineSeconds.
const (
	deadlineReason  = "DeadlineExceeded"
	deadlineMessage = "Pod was active on the node longer than the specified deadline"
)

// activeDeadlineLeft is how long the pod may still run under its
// spec.activeDeadlineSeconds, counted from status.startTime as Kubernetes
// counts it; ok is false when the pod has no deadline (yet).
func activeDeadlineLeft(pod *corev1.Pod, now time.Time) (left time.Duration, ok bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || pod.Status.StartTime == nil {
		return 0, false
	}
	deadline := pod.Status.StartTime.Add(time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second)
	return deadline.Sub(now), true
}

// sysctlReason is the kubelet's reason for a pod refused for its sysctls.
const sysctlReason = "SysctlForbidden"

// safeSysctls are the sysctls Kubernetes 1.32's kubelet lets every pod set
// without --allowed-unsafe-sysctls: each is namespaced (the pod's network
// or IPC namespace) and cannot touch other pods or the node.
var safeSysctls = map[string]bool{
	"kernel.shm_rmid_forced":              true,
	"net.ipv4.ip_local_port_range":        true,
	"net.ipv4.tcp_syncookies":             true,
	"net.ipv4.ping_group_range":           true,
	"net.ipv4.ip_unprivileged_port_start": true,
	"net.ipv4.ip_local_reserved_ports":    true,
	"net.ipv4.tcp_keepalive_time":         true,
	"net.ipv4.tcp_fin_timeout":            true,
	"net.ipv4.tcp_keepalive_intvl":        true,
	"net.ipv4.tcp_keepalive_probes":       true,
	"net.ipv4.tcp_rmem":                   true,
	"net.ipv4.tcp_wmem":                   true,
}

// sysctlName puts a sysctl name in its dotted form: Kubernetes also takes
// the slash-separated form (net/ipv4/tcp_syncookies), in which a dot is
// part of a component.
func sysctlName(name string) string {
	if i := strings.IndexAny(name, "./"); i < 0 || name[i] == '.' {
		return name
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '/':
			return '.'
		case '.':
			return '/'
		}
		return r
	}, name)
}

// forbiddenSysctl is the first sysctl of the pod this node does not allow,
// or "".
func forbiddenSysctl(pod *corev1.Pod) string {
	if pod.Spec.SecurityContext == nil {
		return ""
	}
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		if !safeSysctls[sysctlName(s.Name)] {
			return s.Name
		}
	}
	return ""
}

// podSysctls are the sysctls the pod's containers are started with, in
// the form the kernel's /proc/sys takes (dotted).
func podSysctls(pod *corev1.Pod) map[string]string {
	if pod.Spec.SecurityContext == nil || len(pod.Spec.SecurityContext.Sysctls) == 0 {
		return nil
	}
	out := make(map[string]string, len(pod.Spec.SecurityContext.Sysctls))
	for _, s := range pod.Spec.SecurityContext.Sysctls {
		out[sysctlName(s.Name)] = s.Value
	}
	return out
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
