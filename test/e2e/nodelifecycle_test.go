package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/petrel-project/petrel/test/cluster"
)

const lifecyclePods = `apiVersion: v1
kind: Pod
metadata: {name: impatient, namespace: default}
spec:
  nodeName: life-0
  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 1}]
  containers: [{name: c, image: petrel.local/testserver:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: patient, namespace: default}
spec:
  nodeName: life-0
  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute}]
  containers: [{name: c, image: petrel.local/testserver:1}]
`

// TestNodeLifecycle kills the simulated nodes: they turn Unknown and get the
// unreachable taints, their pods turn not ready, a pod with
// tolerationSeconds 1 is evicted and one tolerating forever stays; when the
// nodes come back the taints go.
func TestNodeLifecycle(t *testing.T) {
	s := cluster.StartServer(t, "--node-monitor-grace-period", "3s")
	kill := s.StartSimulatedNodes("life", 2, "--lease-renew-interval", "500ms")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	get := func(args ...string) string {
		out, _ := s.Kubectl(ctx, "", append([]string{"get"}, args...)...)
		return out
	}
	poll(t, "nodes ready", 30*time.Second, func() error {
		if out := get("nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"); out != "True True" {
			return fmt.Errorf("ready = %q", out)
		}
		return nil
	})
	if out, err := s.Kubectl(ctx, lifecyclePods, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply: %v\n%s", err, out)
	}
	poll(t, "pods running", 30*time.Second, func() error {
		if out := get("pods", "-o", "jsonpath={.items[*].status.phase}"); out != "Running Running" {
			return fmt.Errorf("phases = %q", out)
		}
		return nil
	})
	// Healthy nodes stay Ready well past the grace period.
	time.Sleep(4 * time.Second)
	if out := get("nodes", "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"); out != "True True" {
		t.Fatalf("healthy nodes flapped: %q", out)
	}

	kill()
	poll(t, "nodes Unknown and tainted", 20*time.Second, func() error {
		ready := get("node", "life-0", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
		taints := get("node", "life-0", "-o", "jsonpath={.spec.taints[*].key}/{.spec.taints[*].effect}")
		if ready != "Unknown" || !strings.Contains(taints, "node.kubernetes.io/unreachable") || !strings.Contains(taints, "NoExecute") {
			return fmt.Errorf("ready %q taints %q", ready, taints)
		}
		return nil
	})
	poll(t, "pods not ready", 20*time.Second, func() error {
		if out := get("pod", "patient", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].reason}"); out != "NodeNotReady" {
			return fmt.Errorf("patient Ready reason = %q", out)
		}
		return nil
	})
	poll(t, "impatient pod evicted", 20*time.Second, func() error {
		if out := get("pod", "impatient", "-o", "jsonpath={.metadata.deletionTimestamp}"); out == "" {
			return fmt.Errorf("not being deleted")
		}
		return nil
	})
	if out := get("pod", "patient", "-o", "jsonpath={.metadata.deletionTimestamp}"); out != "" {
		t.Errorf("a pod tolerating unreachable forever was evicted at %s", out)
	}

	s.StartSimulatedNodes("life", 2, "--lease-renew-interval", "500ms")
	poll(t, "nodes back and untainted", 30*time.Second, func() error {
		ready := get("node", "life-0", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
		taints := get("node", "life-0", "-o", "jsonpath={.spec.taints}")
		if ready != "True" || strings.Contains(taints, "unreachable") {
			return fmt.Errorf("ready %q taints %q", ready, taints)
		}
		return nil
	})
}
