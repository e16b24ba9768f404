package kubelet

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestFailedTeardownBacksOff: a deleted pod whose teardown keeps failing
// (a namespace mount that cannot go) is tried again after a growing
// back-off, however often its sync is asked for, not several times a second.
func TestFailedTeardownBacksOff(t *testing.T) {
	pod := hostPortPod("gone", corev1.PodRunning, corev1.ProtocolTCP)
	now := metav1.Now()
	pod.DeletionTimestamp = &now
	k, _ := testKubelet(t, pod)
	var attempts atomic.Int32
	k.teardownPod = func(context.Context, string, *corev1.Pod, time.Duration) error {
		attempts.Add(1)
		return errors.New("remove /run/netns/petrel-uid-gone: device or resource busy")
	}
	ctx := context.Background()
	uid := string(pod.UID)
	for range 20 {
		// As informer updates and resyncs ask for it.
		if _, err := k.sync(ctx, uid); err != nil {
			t.Fatal(err)
		}
		ps := k.podState(uid)
		deadline := time.Now().Add(5 * time.Second)
		for {
			k.mu.Lock()
			busy := ps.terminating
			k.mu.Unlock()
			if !busy {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the teardown did not return")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if n := attempts.Load(); n != 1 {
		t.Fatalf("%d teardown attempts in a row, want 1 and then a back-off", n)
	}
}
