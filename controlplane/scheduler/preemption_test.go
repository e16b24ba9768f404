package scheduler

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func withPriority(prio int32, node string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Priority = ptr.To(prio)
		p.Spec.NodeName = node
	}
}

// victimsOn takes the fewest lower-priority pods, the least important
// first, and leaves the node as it found it.
func TestVictimsAreTheFewestLeastImportant(t *testing.T) {
	c := newClusterCache()
	c.setNode(node("a", "4", nil))
	for _, p := range []*corev1.Pod{
		podReq("low-1", "1", withPriority(1, "a")), podReq("low-2", "1", withPriority(2, "a")),
		podReq("mid", "1", withPriority(50, "a")), podReq("high", "1", withPriority(1000, "a")),
	} {
		c.setPod(p)
	}
	st := c.nodes["a"]
	before := st.reqCPU
	cand := newCandidate(podReq("new", "1500m", withPriority(100, "")))
	p := victimsOn(cand, st, c.nodes, 100)
	if p == nil {
		t.Fatal("no preemption found")
	}
	var names []string
	for _, v := range p.victims {
		names = append(names, v.Name)
	}
	// 1.5 CPUs are needed: two of the three lower pods; the most important
	// of them (mid) is put back first and stays.
	if fmt.Sprint(names) != "[low-2 low-1]" && fmt.Sprint(names) != "[low-1 low-2]" {
		t.Fatalf("victims %v, want low-1 and low-2", names)
	}
	if st.reqCPU != before || len(st.pods) != 4 {
		t.Fatalf("the simulation left the node changed: %d m requested, %d pods", st.reqCPU, len(st.pods))
	}
	// Pods that matter as much or more are never victims.
	if p := victimsOn(newCandidate(podReq("new", "3500m", withPriority(100, ""))), st, c.nodes, 100); p != nil {
		t.Fatalf("preempted %d pods where even all lower ones leave too little room", len(p.victims))
	}
}

// A high-priority pod that fits nowhere evicts a lower-priority one, is
// nominated to its node and bound there once the victim is gone; one with
// preemptionPolicy Never waits instead.
func TestPreemptionEvictsAndBinds(t *testing.T) {
	ctx := context.Background()
	cs, bound := startFake(t, node("a", "2", nil),
		podReq("low", "1500m", withPriority(0, "a")),
		podReq("polite", "1500m", func(p *corev1.Pod) {
			p.Spec.Priority = ptr.To(int32(500))
			p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptNever)
		}))
	waitFor(t, "polite to wait without evicting", func() error {
		if len(eventsFor(cs, "FailedScheduling")) == 0 {
			return fmt.Errorf("not judged yet")
		}
		return nil
	})
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "low", metav1.GetOptions{}); err != nil {
		t.Fatalf("a pod with preemptionPolicy Never evicted another: %v", err)
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, podReq("urgent", "1", withPriority(1000, "")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the low-priority pod evicted and urgent bound to a", func() error {
		if _, err := cs.CoreV1().Pods("default").Get(ctx, "low", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("low still there (%v)", err)
		}
		if bound()["default/urgent"] != "a" {
			return fmt.Errorf("bindings %v", bound())
		}
		return nil
	})
	p, err := cs.CoreV1().Pods("default").Get(ctx, "urgent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.NominatedNodeName != "a" {
		t.Fatalf("urgent was not nominated to a: %q", p.Status.NominatedNodeName)
	}
	if len(eventsFor(cs, "Preempted")) == 0 {
		t.Fatal("no Preempted event")
	}
	// The polite pod (500) is still waiting: urgent took the room.
	if _, ok := bound()["default/polite"]; ok {
		t.Fatal("the polite pod was bound into the room urgent was nominated to")
	}
}
