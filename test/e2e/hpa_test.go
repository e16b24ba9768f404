package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"

	"github.com/petrel-project/petrel/test/images"
)

// TestHPAScalesOnCPU is the HorizontalPodAutoscaler end to end on a real
// node: a Deployment whose pods burn CPU is scaled up to maxReplicas by an
// autoscaling/v2 HPA reading metrics.k8s.io, with its conditions and
// current metrics in the status; when the pods go idle it is scaled back
// down once the (short) stabilization window has passed.
func TestHPAScalesOnCPU(t *testing.T) {
	u := startPodCluster(t, "--horizontal-pod-autoscaler-sync-period", "2s")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Bad input first: a Status 422 naming the field.
	out, err := u.Kubectl(ctx, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: bad}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: hog}
  minReplicas: 2
  maxReplicas: 1
`, "apply", "-f", "-")
	if err == nil || !strings.Contains(out, "spec.maxReplicas") {
		t.Fatalf("an HPA with maxReplicas < minReplicas: %v\n%s", err, out)
	}

	kubectl(t, u.Server, fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: hog}
spec:
  replicas: 1
  selector: {matchLabels: {app: hog}}
  template:
    metadata: {labels: {app: hog}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: %s
        # Busy until told to stop.
        command: ["sh", "-c", "while [ ! -e /work/stop ]; do :; done; sleep 3600"]
        resources: {requests: {cpu: 100m}}
        volumeMounts: [{name: work, mountPath: /work}]
      volumes: [{name: work, emptyDir: {}}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hog}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: hog}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 5
`, images.TestServer), "apply", "-f", "-")

	hpa := func() *autoscalingv2.HorizontalPodAutoscaler {
		out := kubectl(t, u.Server, "", "get", "--raw", "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/hog")
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		if err := json.Unmarshal([]byte(out), h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	cond := func(h *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType) string {
		for _, c := range h.Status.Conditions {
			if c.Type == typ {
				return string(c.Status) + "/" + c.Reason
			}
		}
		return ""
	}
	// kubectl autoscale makes one; a target scaled to zero is left alone,
	// as Kubernetes does (ScalingActive False, ScalingDisabled).
	kubectl(t, u.Server, "", "create", "deployment", "idle", "--image="+images.TestServer, "--replicas=0")
	kubectl(t, u.Server, "", "autoscale", "deployment", "idle", "--min=1", "--max=3", "--cpu-percent=60")
	poll(t, "ScalingActive False ScalingDisabled", 30*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "hpa", "idle", "-o", "jsonpath={.status.conditions[?(@.type=='ScalingActive')].status}/{.status.conditions[?(@.type=='ScalingActive')].reason}")
		if out != "False/ScalingDisabled" {
			return fmt.Errorf("ScalingActive = %q", out)
		}
		return nil
	})
	// autoscaling/v2 is the group's preferred version, as in Kubernetes.
	mustContain(t, kubectl(t, u.Server, "", "get", "--raw", "/apis/autoscaling"), `"preferredVersion":{"groupVersion":"autoscaling/v2"`)
	// Scaled to the maximum.
	start := time.Now()
	poll(t, "scale up to 2", 150*time.Second, func() error {
		h := hpa()
		if h.Status.DesiredReplicas != 2 {
			return fmt.Errorf("desired %d, conditions %+v, metrics %+v", h.Status.DesiredReplicas, h.Status.Conditions, h.Status.CurrentMetrics)
		}
		return nil
	})
	t.Logf("scaled up after %s", time.Since(start).Round(time.Second))
	poll(t, "the Deployment has 2 replicas", 30*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "deployment", "hog", "-o", "jsonpath={.spec.replicas}")
		if out != "2" {
			return fmt.Errorf("spec.replicas %q", out)
		}
		return nil
	})
	h := hpa()
	if got := cond(h, autoscalingv2.ScalingActive); got != "True/ValidMetricFound" {
		t.Errorf("ScalingActive = %s", got)
	}
	if got := cond(h, autoscalingv2.AbleToScale); !strings.HasPrefix(got, "True/") {
		t.Errorf("AbleToScale = %s", got)
	}
	if len(h.Status.CurrentMetrics) != 1 || h.Status.CurrentMetrics[0].Resource == nil ||
		h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil || *h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization < 100 {
		t.Errorf("currentMetrics %+v", h.Status.CurrentMetrics)
	}
	// Still asking for more than the maximum: ScalingLimited.
	poll(t, "ScalingLimited TooManyReplicas", 60*time.Second, func() error {
		if got := cond(hpa(), autoscalingv2.ScalingLimited); got != "True/TooManyReplicas" {
			return fmt.Errorf("ScalingLimited = %s", got)
		}
		return nil
	})
	out = kubectl(t, u.Server, "", "get", "hpa", "hog")
	mustContain(t, out, "Deployment/hog", "/50%")
	// The same object through autoscaling/v1.
	v1 := &autoscalingv1.HorizontalPodAutoscaler{}
	raw := kubectl(t, u.Server, "", "get", "--raw", "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers/hog")
	if err := json.Unmarshal([]byte(raw), v1); err != nil {
		t.Fatal(err)
	}
	if v1.Spec.TargetCPUUtilizationPercentage == nil || *v1.Spec.TargetCPUUtilizationPercentage != 50 || v1.Status.CurrentCPUUtilizationPercentage == nil {
		t.Errorf("autoscaling/v1 view: %s", raw)
	}
	events := kubectl(t, u.Server, "", "get", "events", "--field-selector", "involvedObject.kind=HorizontalPodAutoscaler", "-o", "jsonpath={.items[*].reason}")
	mustContain(t, events, "SuccessfulRescale")

	// Idle: every pod stops burning; scaled down after the 5 s window.
	kubectl(t, u.Server, "", "wait", "--for=condition=Ready", "pod", "-l", "app=hog", "--timeout=60s")
	for _, p := range strings.Fields(kubectl(t, u.Server, "", "get", "pods", "-l", "app=hog", "-o", "jsonpath={.items[*].metadata.name}")) {
		kubectl(t, u.Server, "", "exec", p, "--", "touch", "/work/stop")
	}
	start = time.Now()
	poll(t, "scale down to 1", 120*time.Second, func() error {
		out, _ := u.Kubectl(ctx, "", "get", "deployment", "hog", "-o", "jsonpath={.spec.replicas}")
		if out != "1" {
			h := hpa()
			return fmt.Errorf("spec.replicas %q, conditions %+v, metrics %+v", out, h.Status.Conditions, h.Status.CurrentMetrics)
		}
		return nil
	})
	t.Logf("scaled down %s after the pods went idle", time.Since(start).Round(time.Second))
}
