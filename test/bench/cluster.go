package bench

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// WaitNodes waits until n nodes have registered and been given a pod CIDR,
// the point from which pods can be placed and networked on them.
func WaitNodes(ctx context.Context, cs kubernetes.Interface, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			ready := 0
			for _, nd := range nodes.Items {
				if nd.Spec.PodCIDR != "" {
					ready++
				}
			}
			if ready == n {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%d simulated nodes did not register with pod CIDRs in 5 minutes", n)
}

// PodReady says whether p's Ready condition is true.
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodsScheduledCondition waits until the scheduler has set the
// PodScheduled condition of all want pods in ns, then a moment more for its
// events to be written.
func WaitPodsScheduledCondition(ctx context.Context, cs kubernetes.Interface, ns string, want int) error {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		marked := 0
		for i := range l.Items {
			for _, c := range l.Items[i].Status.Conditions {
				if c.Type == corev1.PodScheduled {
					marked++
					break
				}
			}
		}
		if marked >= want {
			time.Sleep(2 * time.Second)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the scheduler marked %d of %d pods in 3 minutes", marked, want)
		}
		time.Sleep(2 * time.Second)
	}
}
