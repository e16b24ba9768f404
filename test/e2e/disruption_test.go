package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestDisruptionBudgetAndDrain: a PodDisruptionBudget's status follows its
// pods, the eviction subresource refuses what would break it (429, which
// kubectl drain retries) and lets through what it allows.
func TestDisruptionBudgetAndDrain(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	s.StartSimulatedNodes("sim", 3)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := s.Clientset()

	kubectl(t, s, "", "create", "deployment", "web", "--image=petrel.local/testserver:1", "--replicas=3")
	kubectl(t, s, `apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: web}}
`, "apply", "-f", "-")
	poll(t, "the budget counts three healthy pods and allows no disruption", 60*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pdb", "web", "-o", "jsonpath={.status.currentHealthy}/{.status.desiredHealthy}/{.status.expectedPods}/{.status.disruptionsAllowed}/{.status.observedGeneration}")
		if err != nil || out != "3/3/3/0/1" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	mustContain(t, kubectl(t, s, "", "get", "pdb"), "MIN AVAILABLE", "ALLOWED DISRUPTIONS", "web", "3", "N/A")

	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil || len(pods.Items) != 3 {
		t.Fatalf("pods: %v %d", err, len(pods.Items))
	}
	node := pods.Items[0].Spec.NodeName
	out, err := s.Kubectl(ctx, "", "drain", node, "--ignore-daemonsets", "--timeout=6s")
	if err == nil || !strings.Contains(out, "Cannot evict pod as it would violate the pod's disruption budget.") {
		t.Fatalf("drain must be held back by the budget: %v\n%s", err, out)
	}
	if l, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"}); len(l.Items) != 3 {
		t.Fatalf("a refused eviction deleted a pod: %d pods", len(l.Items))
	}

	// maxUnavailable 1 of the Deployment's three: one at a time; the
	// replacement lands on another node and drain finishes.
	kubectl(t, s, "", "patch", "pdb", "web", "--type=merge", "-p", `{"spec":{"minAvailable":null,"maxUnavailable":1}}`)
	poll(t, "one disruption allowed", 30*time.Second, func() error {
		out, err := s.Kubectl(ctx, "", "get", "pdb", "web", "-o", "jsonpath={.status.desiredHealthy}/{.status.disruptionsAllowed}")
		if err != nil || out != "2/1" {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	// An evicted pod is marked DisruptionTarget before it is deleted.
	w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{LabelSelector: "app=web", FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.Kubectl(ctx, "", "drain", node, "--ignore-daemonsets", "--timeout=60s"); err != nil || !strings.Contains(out, "drained") {
		t.Fatalf("drain within the budget: %v\n%s", err, out)
	}
	marked := false
	for deadline := time.After(10 * time.Second); !marked; {
		select {
		case ev := <-w.ResultChan():
			if p, ok := ev.Object.(*corev1.Pod); ok {
				for _, c := range p.Status.Conditions {
					marked = marked || (c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue && c.Reason == "EvictionByEvictionAPI")
				}
			}
		case <-deadline:
			t.Fatal("no evicted pod was marked DisruptionTarget")
		}
	}
	w.Stop()
	poll(t, "three pods again, none on the drained node", 60*time.Second, func() error {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range l.Items {
			if p.Spec.NodeName == node && p.DeletionTimestamp == nil {
				return fmt.Errorf("pod %s still on %s", p.Name, node)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready++
				}
			}
		}
		if ready != 3 {
			return fmt.Errorf("%d ready", ready)
		}
		return nil
	})

	t.Run("bad input", func(t *testing.T) {
		code, st, _ := rawRequest(t, s, "POST", "/apis/policy/v1/namespaces/default/poddisruptionbudgets", "application/json",
			[]byte(`{"metadata":{"name":"bad"},"spec":{"minAvailable":1,"maxUnavailable":"150%","selector":{"matchLabels":{"a":"b"}}}}`))
		if code != 422 || !hasCause(st, "spec") || !hasCause(st, "spec.maxUnavailable") {
			t.Fatalf("want 422 on spec and spec.maxUnavailable, got %d %+v", code, st)
		}
	})
}
