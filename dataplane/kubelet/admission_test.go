package kubelet

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSysctlsAllowedByTheNode(t *testing.T) {
	pod := func(names ...string) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{}}}
		for _, n := range names {
			p.Spec.SecurityContext.Sysctls = append(p.Spec.SecurityContext.Sysctls, corev1.Sysctl{Name: n, Value: "1"})
		}
		return p
	}
	for _, tc := range []struct {
		names     []string
		forbidden string
	}{
		{nil, ""},
		{[]string{"kernel.shm_rmid_forced", "net.ipv4.tcp_syncookies"}, ""},
		{[]string{"net/ipv4/tcp_syncookies"}, ""},
		{[]string{"net.ipv4.tcp_syncookies", "kernel.msgmax"}, "kernel.msgmax"},
		{[]string{"net.core.somaxconn"}, "net.core.somaxconn"},
	} {
		if got := forbiddenSysctl(pod(tc.names...)); got != tc.forbidden {
			t.Errorf("%v: forbidden %q, want %q", tc.names, got, tc.forbidden)
		}
	}
	// The slash form reaches the runtime dotted; a dot inside a slashed
	// component (an interface name) becomes a slash.
	got := podSysctls(pod("net/ipv4/conf/eth0.100/forwarding", "kernel.shm_rmid_forced"))
	if got["net.ipv4.conf.eth0/100.forwarding"] != "1" || got["kernel.shm_rmid_forced"] != "1" || len(got) != 2 {
		t.Fatalf("podSysctls: %v", got)
	}
}

func TestActiveDeadlineLeft(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &corev1.Pod{}
	if _, ok := activeDeadlineLeft(p, start); ok {
		t.Fatal("a pod without a deadline has one")
	}
	p.Spec.ActiveDeadlineSeconds = ptr.To(int64(30))
	if _, ok := activeDeadlineLeft(p, start); ok {
		t.Fatal("a pod not started yet is counted")
	}
	p.Status.StartTime = &metav1.Time{Time: start}
	if left, ok := activeDeadlineLeft(p, start.Add(10*time.Second)); !ok || left != 20*time.Second {
		t.Fatalf("left %v %v, want 20s", left, ok)
	}
	if left, _ := activeDeadlineLeft(p, start.Add(31*time.Second)); left >= 0 {
		t.Fatalf("past the deadline: left %v", left)
	}
}
