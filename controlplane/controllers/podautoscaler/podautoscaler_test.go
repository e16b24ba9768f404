package podautoscaler

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var t0 = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

// readyPod started long ago and ready since, asking cpuMilli.
func readyPod(name string, cpuMilli int64) *corev1.Pod {
	start := metav1.NewTime(t0.Add(-time.Hour))
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(cpuMilli, resource.DecimalSI)}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &start,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: start}}}}
}

func metric(v int64) PodMetric { return PodMetric{Value: v, Timestamp: t0, Window: 10 * time.Second} }

func TestResourceReplicas(t *testing.T) {
	pods := []*corev1.Pod{readyPod("a", 100), readyPod("b", 100)}
	cases := []struct {
		name    string
		pods    []*corev1.Pod
		metrics map[string]PodMetric
		want    int32
		util    int32
	}{
		// 150% of a 50% target on 2 pods: ceil(2 * 3) = 6.
		{"scale up", pods, map[string]PodMetric{"a": metric(150), "b": metric(150)}, 6, 150},
		// Within tolerance (ratio 1.08): hold.
		{"tolerance", pods, map[string]PodMetric{"a": metric(54), "b": metric(54)}, 2, 54},
		// 10% of 50%: ceil(2 * 0.2) = 1.
		{"scale down", pods, map[string]PodMetric{"a": metric(10), "b": metric(10)}, 1, 10},
		// A pod without metrics counts as 100% of its request when scaling
		// down: (10+100)/200 = 55% → ratio 1.1 → within tolerance, hold.
		{"missing pod on scale down", pods, map[string]PodMetric{"a": metric(10)}, 2, 10},
		// ... and as 0 when scaling up: (200+0)/200 = 100% → ceil(2*2) = 4.
		{"missing pod on scale up", pods, map[string]PodMetric{"a": metric(200)}, 4, 200},
	}
	for _, c := range cases {
		got, util, _, err := ResourceReplicas(2, 50, corev1.ResourceCPU, "", c.pods, c.metrics, t0)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got != c.want || util != c.util {
			t.Errorf("%s: replicas %d, utilization %d; want %d, %d", c.name, got, util, c.want, c.util)
		}
	}
	// An unready pod counts as 0 when scaling up.
	unready := readyPod("c", 100)
	unready.Status.Conditions[0].Status = corev1.ConditionFalse
	unready.Status.StartTime = &metav1.Time{Time: t0.Add(-time.Minute)}
	got, _, _, err := ResourceReplicas(3, 50, corev1.ResourceCPU, "", append(pods, unready),
		map[string]PodMetric{"a": metric(100), "b": metric(100), "c": metric(500)}, t0)
	// (100+100+0)/300 = 66% → ratio 1.33 → ceil(3 * 1.33) = 4.
	if err != nil || got != 4 {
		t.Errorf("with an unready pod: %d, %v; want 4", got, err)
	}
	noRequest := readyPod("d", 0)
	noRequest.Spec.Containers[0].Resources.Requests = nil
	if _, _, _, err := ResourceReplicas(1, 50, corev1.ResourceCPU, "", []*corev1.Pod{noRequest}, map[string]PodMetric{"d": metric(5)}, t0); err == nil {
		t.Error("a pod without a CPU request gave a count")
	}
}

func TestBehavior(t *testing.T) {
	spec := autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: ptr.To[int32](1), MaxReplicas: 10}
	h := &history{}
	// Default scale up: max(4 pods, 100%) per 15 s from 1 → 5.
	n := h.normalize(spec, 1, 9, t0)
	if n.Replicas != 5 || !n.Limited || n.LimitReason != "ScaleUpLimit" {
		t.Errorf("first scale up: %+v", n)
	}
	h.record(1, 5, t0)
	// Within the same period the 4 pods are spent: 100% of the period's
	// start (1) is 2, 4 pods from 1 is 5: no more.
	if n := h.normalize(spec, 5, 9, t0.Add(5*time.Second)); n.Replicas != 5 {
		t.Errorf("same period: %+v", n)
	}
	// Past the maximum.
	if n := h.normalize(spec, 5, 40, t0.Add(20*time.Second)); n.Replicas != 10 || n.LimitReason != "TooManyReplicas" {
		t.Errorf("above max: %+v", n)
	}
	// Default scale down waits 300 s for the highest recommendation.
	h = &history{}
	h.normalize(spec, 4, 4, t0)
	if n := h.normalize(spec, 4, 1, t0.Add(time.Minute)); n.Replicas != 4 || n.StabilizedReason != "ScaleDownStabilized" {
		t.Errorf("stabilized scale down: %+v", n)
	}
	if n := h.normalize(spec, 4, 1, t0.Add(6*time.Minute)); n.Replicas != 1 {
		t.Errorf("after the window: %+v", n)
	}
	// A short window and a pods policy.
	spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{
		StabilizationWindowSeconds: ptr.To[int32](5),
		Policies:                   []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 60}}}}
	h = &history{}
	if n := h.normalize(spec, 4, 1, t0); n.Replicas != 3 || n.LimitReason != "ScaleDownLimit" {
		t.Errorf("one pod a minute: %+v", n)
	}
	h.record(4, 3, t0)
	if n := h.normalize(spec, 3, 1, t0.Add(30*time.Second)); n.Replicas != 3 {
		t.Errorf("within the minute: %+v", n)
	}
	// Disabled.
	spec.Behavior.ScaleUp = &autoscalingv2.HPAScalingRules{SelectPolicy: ptr.To(autoscalingv2.DisabledPolicySelect)}
	if n := (&history{}).normalize(spec, 3, 8, t0); n.Replicas != 3 || n.LimitReason != "ScalingDisabled" {
		t.Errorf("disabled: %+v", n)
	}
}
