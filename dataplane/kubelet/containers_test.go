package kubelet

import (
	"context"
	"errors"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// untouchable is a container whose every use panics (its interface is nil).
type untouchable struct{ containerd.Container }

// TestUnknownStateDecidesNothing: when containerd cannot say how a
// container is (a busy shim), the kubelet neither restarts nor reports it
// differently; it looks again.
func TestUnknownStateDecidesNothing(t *testing.T) {
	k := &Kubelet{}
	c := &corev1.Container{Name: "web"}
	running := corev1.ContainerStatus{Name: "web", RestartCount: 2, Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"},
		Spec:   corev1.PodSpec{Containers: []corev1.Container{*c}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{running}}}
	ps := &podState{containers: map[string]*containerRecord{}, probes: map[string]*prober{}}
	unknown := observed{ctr: untouchable{}, labels: map[string]string{labelRestarts: "2"}, err: errors.New("shim busy")}

	if wait := k.ensureContainer(context.Background(), pod, ps, sandbox{}, nil, c, unknown, corev1.RestartPolicyAlways); wait != time.Second {
		t.Fatalf("ensureContainer waits %v, want a second before looking again", wait)
	}
	if r := ps.record("web"); r.restarts != 0 || r.lastTerm != nil || r.failedStart != nil {
		t.Fatalf("the container's record changed: %+v", r)
	}
	got := k.containerStatus(context.Background(), pod, ps, sandbox{}, c, map[string]observed{"web": unknown}, true, false)
	if got.RestartCount != 2 || got.State.Running == nil || !got.Ready {
		t.Fatalf("status %+v, want the API's last word (running, ready, 2 restarts)", got)
	}
}
