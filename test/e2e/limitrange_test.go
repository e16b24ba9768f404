package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/petrel-project/petrel/test/cluster"
)

// TestLimitRange: a namespace's LimitRange fills in requests and limits of
// new pods and refuses pods outside its bounds, as Kubernetes' LimitRanger.
func TestLimitRange(t *testing.T) {
	requireKubectl(t)
	s := cluster.StartServer(t)
	kubectl(t, s, "", "create", "namespace", "small")
	kubectl(t, s, `apiVersion: v1
kind: LimitRange
metadata: {name: sizes, namespace: small}
spec:
  limits:
  - type: Container
    max: {cpu: "1", memory: 512Mi}
    defaultRequest: {cpu: 100m}
`, "apply", "-f", "-")
	out := kubectl(t, s, "", "get", "limitrange", "sizes", "-n", "small", "-o", "jsonpath={.spec.limits[0].default.cpu} {.spec.limits[0].default.memory} {.spec.limits[0].defaultRequest.memory}")
	if out != "1 512Mi 512Mi" {
		t.Fatalf("LimitRange defaults: %q", out)
	}
	mustContain(t, kubectl(t, s, "", "get", "limits", "-n", "small"), "NAME", "CREATED AT", "sizes")

	kubectl(t, s, "", "run", "bare", "-n", "small", "--image=petrel.local/testserver:1")
	out = kubectl(t, s, "", "get", "pod", "bare", "-n", "small", "-o",
		`jsonpath={.spec.containers[0].resources.requests.cpu} {.spec.containers[0].resources.limits.cpu} {.spec.containers[0].resources.limits.memory} {.metadata.annotations.kubernetes\.io/limit-ranger}`)
	if !strings.HasPrefix(out, "100m 1 512Mi LimitRanger plugin set: cpu limit, cpu request, memory limit, memory request for container bare") {
		t.Fatalf("defaults on the pod: %q", out)
	}

	big, err := s.Kubectl(context.Background(), "", "run", "big", "-n", "small", "--image=petrel.local/testserver:1", "--overrides",
		`{"spec":{"containers":[{"name":"big","image":"petrel.local/testserver:1","resources":{"limits":{"cpu":"2"}}}]}}`)
	if err == nil || !strings.Contains(big, `pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2`) {
		t.Fatalf("a pod over the max must be refused: %v\n%s", err, big)
	}
	if out, err := s.Kubectl(context.Background(), "", "get", "pod", "big", "-n", "small"); err == nil {
		t.Fatalf("the refused pod was stored:\n%s", out)
	}
	code, st, _ := rawRequest(t, s, "POST", "/api/v1/namespaces/small/limitranges", "application/json",
		[]byte(`{"metadata":{"name":"bad"},"spec":{"limits":[{"type":"Container","min":{"cpu":"2"},"max":{"cpu":"1"}}]}}`))
	if code != 422 || !hasCause(st, "spec.limits[0].min[cpu]") {
		t.Fatalf("min above max: %d %+v", code, st)
	}
}
