package podautoscaler

import (
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	emv1beta1 "k8s.io/metrics/pkg/apis/external_metrics/v1beta1"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
)

// fakeMetrics answers the custom and external metrics APIs from maps:
// pod name → value, object name → value, and external series values.
type fakeMetrics struct {
	pods     map[string]int64
	objects  map[string]int64
	external []int64
	asked    []string
}

func (f *fakeMetrics) RootScopedMetrics() custommetrics.MetricsInterface       { return f }
func (f *fakeMetrics) NamespacedMetrics(string) custommetrics.MetricsInterface { return f }

func (f *fakeMetrics) GetForObject(gk schema.GroupKind, name, metric string, _ labels.Selector) (*cmv1beta2.MetricValue, error) {
	f.asked = append(f.asked, gk.String()+"/"+name+"/"+metric)
	return &cmv1beta2.MetricValue{Value: *resource.NewMilliQuantity(f.objects[name], resource.DecimalSI), Timestamp: metav1.NewTime(t0)}, nil
}

func (f *fakeMetrics) GetForObjects(gk schema.GroupKind, _ labels.Selector, metric string, _ labels.Selector) (*cmv1beta2.MetricValueList, error) {
	f.asked = append(f.asked, gk.String()+"/*/"+metric)
	list := &cmv1beta2.MetricValueList{}
	for name, v := range f.pods {
		list.Items = append(list.Items, cmv1beta2.MetricValue{DescribedObject: corev1.ObjectReference{Kind: "Pod", Name: name},
			Value: *resource.NewMilliQuantity(v, resource.DecimalSI), Timestamp: metav1.NewTime(t0)})
	}
	return list, nil
}

type fakeExternal struct{ f *fakeMetrics }

func (e fakeExternal) NamespacedMetrics(string) externalmetrics.MetricsInterface { return e }

func (e fakeExternal) List(metric string, _ labels.Selector) (*emv1beta1.ExternalMetricValueList, error) {
	list := &emv1beta1.ExternalMetricValueList{}
	for _, v := range e.f.external {
		list.Items = append(list.Items, emv1beta1.ExternalMetricValue{MetricName: metric, Value: *resource.NewMilliQuantity(v, resource.DecimalSI)})
	}
	return list, nil
}

func TestCustomAndExternalMetricReplicas(t *testing.T) {
	pods := []*corev1.Pod{readyPod("a", 100), readyPod("b", 100)}
	hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "h"}}
	c := &Controller{}
	m := &fakeMetrics{pods: map[string]int64{"a": 200_000, "b": 400_000}, objects: map[string]int64{"ingress": 50_000, "calm": 10_500}, external: []int64{400_000, 500_000}}
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	podsMetric := autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "requests_per_second"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: q("100")}}}
	if _, _, _, err := c.customReplicas(hpa, podsMetric, 2, pods, labels.Everything(), t0); err == nil || !strings.Contains(err.Error(), "no custom metrics API") {
		t.Fatalf("without an adapter: %v", err)
	}
	c.SetMetricsAPIs(m, fakeExternal{m})
	object := func(name string) autoscalingv2.MetricSpec {
		return autoscalingv2.MetricSpec{Type: autoscalingv2.ObjectMetricSourceType, Object: &autoscalingv2.ObjectMetricSource{
			DescribedObject: autoscalingv2.CrossVersionObjectReference{APIVersion: "networking.k8s.io/v1", Kind: "Ingress", Name: name},
			Metric:          autoscalingv2.MetricIdentifier{Name: "hits"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: q("10")}}}
	}
	external := autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: q("100")}}}
	for _, tc := range []struct {
		name string
		spec autoscalingv2.MetricSpec
		want int32
	}{
		// Pods: an average of 300 against 100 per pod over 2 pods.
		{"pods", podsMetric, 6},
		// Object, Value: 50 against 10 is a ratio of 5 over 2 ready pods.
		{"object", object("ingress"), 10},
		// Within the tolerance (10.5 against 10) the size holds.
		{"object within tolerance", object("calm"), 2},
		// External, AverageValue: 900 in all against 100 per pod.
		{"external", external, 9},
	} {
		got, st, name, err := c.customReplicas(hpa, tc.spec, 2, pods, labels.Everything(), t0)
		if err != nil || got != tc.want {
			t.Errorf("%s: %d replicas (%v), want %d", tc.name, got, err, tc.want)
		}
		if st.Type != tc.spec.Type || name == "" {
			t.Errorf("%s: status %+v, name %q", tc.name, st, name)
		}
	}
	if got := strings.Join(m.asked, " "); !strings.Contains(got, "Pod/*/requests_per_second") || !strings.Contains(got, "Ingress.networking.k8s.io/ingress/hits") {
		t.Errorf("asked the custom metrics API for %s", got)
	}
}
