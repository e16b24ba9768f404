package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/petrel-project/petrel/test/images"
)

// topCPU is the CPU column of `kubectl top` for the row whose columns
// start with keys (namespace and name, or a node's name).
func topCPU(out string, keys ...string) (resource.Quantity, bool) {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < len(keys)+2 {
			continue
		}
		match := true
		for i, k := range keys {
			if f[i] != k {
				match = false
			}
		}
		if !match {
			continue
		}
		q, err := resource.ParseQuantity(f[len(keys)])
		return q, err == nil
	}
	return resource.Quantity{}, false
}

// TestKubectlTopMovesWithCPU is issue 25's resource metrics end to end: the
// node reads its pods' cgroups, the API server serves metrics.k8s.io from
// the nodes, and the real kubectl's `top nodes` and `top pods -A` show a
// pod's CPU rise once it starts burning.
func TestKubectlTopMovesWithCPU(t *testing.T) {
	u := startPodCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	kubectl(t, u.Server, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: burner
  labels: {app: burner}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: %s
    # Idle until told, then busy.
    command: ["sh", "-c", "while [ ! -e /work/go ]; do sleep 1; done; while :; do :; done"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes: [{name: work, emptyDir: {}}]
`, images.TestServer), "apply", "-f", "-")
	kubectl(t, u.Server, "", "wait", "--for=condition=Ready", "pod/burner", "--timeout=90s")

	// The group is in discovery, so kubectl's own check passes.
	out := kubectl(t, u.Server, "", "api-versions")
	mustContain(t, out, "metrics.k8s.io/v1beta1")

	var nodeBefore resource.Quantity
	poll(t, "kubectl top nodes", 60*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "top", "nodes")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		q, ok := topCPU(out, u.NodeName)
		if !ok {
			return fmt.Errorf("no row for %s:\n%s", u.NodeName, out)
		}
		if !strings.Contains(out, "MEMORY(bytes)") {
			return fmt.Errorf("no memory column:\n%s", out)
		}
		nodeBefore = q
		return nil
	})
	t.Logf("node CPU before: %s", nodeBefore.String())

	var idle resource.Quantity
	poll(t, "kubectl top pods -A shows the idle pod", 60*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "top", "pods", "-A")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		q, ok := topCPU(out, "default", "burner")
		if !ok {
			return fmt.Errorf("no row for default/burner:\n%s", out)
		}
		idle = q
		return nil
	})
	if idle.MilliValue() > 100 {
		t.Fatalf("an idle pod uses %s CPU", idle.String())
	}

	kubectl(t, u.Server, "", "exec", "burner", "--", "touch", "/work/go")
	var busy resource.Quantity
	poll(t, "the pod's CPU rises in kubectl top pods -A", 90*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "top", "pods", "-A")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		q, ok := topCPU(out, "default", "burner")
		if !ok || q.MilliValue() < 300 {
			return fmt.Errorf("burner CPU %s (idle was %s):\n%s", q.String(), idle.String(), out)
		}
		busy = q
		return nil
	})
	t.Logf("pod CPU idle %s, burning %s", idle.String(), busy.String())
	out = kubectl(t, u.Server, "", "top", "pods", "--containers", "-l", "app=burner")
	if q, ok := topCPU(out, "burner", "main"); !ok || q.MilliValue() < 300 {
		t.Errorf("kubectl top pods --containers: burner/main %s:\n%s", q.String(), out)
	}
	// The node's figure counts the burner too: at least the pod's.
	out = kubectl(t, u.Server, "", "top", "nodes")
	if q, ok := topCPU(out, u.NodeName); !ok || q.MilliValue() < busy.MilliValue()/2 {
		t.Errorf("node CPU %s while a pod on it burns %s:\n%s", q.String(), busy.String(), out)
	}
	// The node server's kubelet endpoints, through nodes/proxy as
	// metrics-server and Prometheus reach kubelets.
	raw := kubectl(t, u.Server, "", "get", "--raw", "/api/v1/nodes/"+u.NodeName+"/proxy/metrics/resource")
	mustContain(t, raw, "node_cpu_usage_seconds_total", `container_cpu_usage_seconds_total{container="main",namespace="default",pod="burner"}`,
		"container_memory_working_set_bytes", "pod_cpu_usage_seconds_total", "container_start_time_seconds")
	raw = kubectl(t, u.Server, "", "get", "--raw", "/api/v1/nodes/"+u.NodeName+"/proxy/stats/summary")
	mustContain(t, raw, `"usageNanoCores"`, `"workingSetBytes"`, `"name":"burner"`)
	// RBAC as for any resource: the view role reads a namespace's pod
	// metrics (system:aggregated-metrics-reader is aggregated into it), not
	// the nodes'.
	kubectl(t, u.Server, "", "create", "rolebinding", "jane-view", "--clusterrole=view", "--user=jane")
	poll(t, "a viewer runs kubectl top pods", 30*time.Second, func() error {
		out, err := u.Kubectl(ctx, "", "--as=jane", "top", "pods", "-n", "default")
		if err != nil || !strings.Contains(out, "burner") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if out, err := u.Kubectl(ctx, "", "--as=jane", "top", "nodes"); err == nil || !strings.Contains(out, "forbidden") {
		t.Errorf("a viewer's kubectl top nodes: %v %s", err, out)
	}
	// A pod that does not exist is a 404 Status, as metrics-server answers.
	if out, err := u.Kubectl(ctx, "", "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nosuch"); err == nil ||
		!strings.Contains(out, "NotFound") && !strings.Contains(out, "not found") {
		t.Errorf("metrics of a missing pod: %v %s", err, out)
	}
}
