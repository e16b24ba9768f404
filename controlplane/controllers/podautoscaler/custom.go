package podautoscaler

import (
	"errors"
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"
)

// Pods, Object and External metrics come from the custom and external
// metrics APIs (custom.metrics.k8s.io, external.metrics.k8s.io), which an
// adapter (prometheus-adapter, KEDA) serves through an APIService; with no
// adapter the HPA says so in ScalingActive. The replica counts follow
// Kubernetes' replica calculator: a Pods metric as a per-pod average, with
// the same treatment of missing and unready pods as a resource's; an
// Object or External metric's Value as a usage ratio over the ready pods;
// an AverageValue as the total over the target per pod.

// SetMetricsAPIs gives the controller the custom and external metrics
// clients; without them those metric types are errors.
func (c *Controller) SetMetricsAPIs(custom custommetrics.CustomMetricsClient, external externalmetrics.ExternalMetricsClient) {
	c.custom, c.external = custom, external
}

// metricSelector is a MetricIdentifier's selector, Everything when unset.
func metricSelector(id autoscalingv2.MetricIdentifier) (labels.Selector, error) {
	if id.Selector == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(id.Selector)
}

// customReplicas computes a Pods, Object or External metric's replica
// count, its status and the name the ScalingLimited message gives it.
func (c *Controller) customReplicas(hpa *autoscalingv2.HorizontalPodAutoscaler, m autoscalingv2.MetricSpec, current int32,
	pods []*corev1.Pod, sel labels.Selector, now time.Time) (int32, autoscalingv2.MetricStatus, string, error) {
	replicas, st, name, err := c.customReplicasOf(hpa, m, current, pods, sel, now)
	if err != nil {
		reason := "FailedGetExternalMetric"
		switch m.Type {
		case autoscalingv2.PodsMetricSourceType:
			reason = "FailedGetPodsMetric"
		case autoscalingv2.ObjectMetricSourceType:
			reason = "FailedGetObjectMetric"
		}
		err = &metricError{reason: reason, err: err}
	}
	return replicas, st, name, err
}

func (c *Controller) customReplicasOf(hpa *autoscalingv2.HorizontalPodAutoscaler, m autoscalingv2.MetricSpec, current int32,
	pods []*corev1.Pod, sel labels.Selector, now time.Time) (int32, autoscalingv2.MetricStatus, string, error) {
	ns := hpa.Namespace
	switch {
	case m.Type == autoscalingv2.PodsMetricSourceType && m.Pods != nil:
		if c.custom == nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get metric %s: no custom metrics API client", m.Pods.Metric.Name)
		}
		msel, err := metricSelector(m.Pods.Metric)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", err
		}
		if m.Pods.Target.AverageValue == nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("invalid target for pods metric %s: averageValue is required", m.Pods.Metric.Name)
		}
		list, err := c.custom.NamespacedMetrics(ns).GetForObjects(schema.GroupKind{Kind: "Pod"}, sel, m.Pods.Metric.Name, msel)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get metric %s: unable to fetch metrics from custom metrics API: %w", m.Pods.Metric.Name, err)
		}
		metrics := map[string]PodMetric{}
		for _, v := range list.Items {
			window := time.Minute
			if v.WindowSeconds != nil {
				window = time.Duration(*v.WindowSeconds) * time.Second
			}
			metrics[v.DescribedObject.Name] = PodMetric{Value: v.Value.MilliValue(), Timestamp: v.Timestamp.Time, Window: window}
		}
		replicas, avg, err := AverageValueReplicas(current, m.Pods.Target.AverageValue.MilliValue(), "", pods, metrics, now)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("failed to get pods metric value: %w", err)
		}
		st := autoscalingv2.MetricStatus{Type: m.Type, Pods: &autoscalingv2.PodsMetricStatus{Metric: m.Pods.Metric,
			Current: autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(avg, resource.DecimalSI)}}}
		return replicas, st, fmt.Sprintf("pods metric %s", m.Pods.Metric.Name), nil

	case m.Type == autoscalingv2.ObjectMetricSourceType && m.Object != nil:
		if c.custom == nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get metric %s: no custom metrics API client", m.Object.Metric.Name)
		}
		msel, err := metricSelector(m.Object.Metric)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", err
		}
		gv, err := schema.ParseGroupVersion(m.Object.DescribedObject.APIVersion)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("describedObject.apiVersion %q: %w", m.Object.DescribedObject.APIVersion, err)
		}
		gk := schema.GroupKind{Group: gv.Group, Kind: m.Object.DescribedObject.Kind}
		v, err := c.custom.NamespacedMetrics(ns).GetForObject(gk, m.Object.DescribedObject.Name, m.Object.Metric.Name, msel)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get metric %s: %s on %s %s/%s: %w", m.Object.Metric.Name, m.Object.DescribedObject.Kind, m.Object.DescribedObject.Name, ns, m.Object.DescribedObject.Name, err)
		}
		replicas, cur, err := valueReplicas(current, v.Value.MilliValue(), m.Object.Target, pods, m.Object.Metric.Name)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", err
		}
		st := autoscalingv2.MetricStatus{Type: m.Type, Object: &autoscalingv2.ObjectMetricStatus{Metric: m.Object.Metric,
			DescribedObject: m.Object.DescribedObject, Current: cur}}
		return replicas, st, fmt.Sprintf("%s metric %s", m.Object.DescribedObject.Kind, m.Object.Metric.Name), nil

	case m.Type == autoscalingv2.ExternalMetricSourceType && m.External != nil:
		if c.external == nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get external metric %s: no external metrics API client", m.External.Metric.Name)
		}
		msel, err := metricSelector(m.External.Metric)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", err
		}
		list, err := c.external.NamespacedMetrics(ns).List(m.External.Metric.Name, msel)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get external metric %s/%s/%v: unable to fetch metrics from external metrics API: %w", ns, m.External.Metric.Name, m.External.Metric.Selector, err)
		}
		if len(list.Items) == 0 {
			return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("unable to get external metric %s/%s/%v: no metrics returned from external metrics API", ns, m.External.Metric.Name, m.External.Metric.Selector)
		}
		var sum int64
		for _, v := range list.Items {
			sum += v.Value.MilliValue()
		}
		replicas, cur, err := valueReplicas(current, sum, m.External.Target, pods, m.External.Metric.Name)
		if err != nil {
			return 0, autoscalingv2.MetricStatus{}, "", err
		}
		st := autoscalingv2.MetricStatus{Type: m.Type, External: &autoscalingv2.ExternalMetricStatus{Metric: m.External.Metric, Current: cur}}
		return replicas, st, fmt.Sprintf("external metric %s", m.External.Metric.Name), nil
	}
	return 0, autoscalingv2.MetricStatus{}, "", fmt.Errorf("metric type %s is not supported by Petrel's HPA controller", m.Type)
}

// valueReplicas is the replica count for one value (an object's metric, or
// the sum of an external metric's series) against a Value target (a usage
// ratio over the ready pods) or an AverageValue target (the value over the
// target per pod).
func valueReplicas(current int32, usage int64, target autoscalingv2.MetricTarget, pods []*corev1.Pod, name string) (int32, autoscalingv2.MetricValueStatus, error) {
	switch {
	case target.Type == autoscalingv2.ValueMetricType && target.Value != nil:
		ratio := float64(usage) / float64(target.Value.MilliValue())
		return usageRatioReplicas(current, ratio, pods), autoscalingv2.MetricValueStatus{Value: resource.NewMilliQuantity(usage, resource.DecimalSI)}, nil
	case target.Type == autoscalingv2.AverageValueMetricType && target.AverageValue != nil:
		avg := target.AverageValue.MilliValue()
		replicas := int32(math.Ceil(float64(usage) / float64(avg)))
		if current > 0 && math.Abs(1.0-float64(usage)/(float64(avg)*float64(current))) <= Tolerance {
			replicas = current
		}
		per := usage
		if current > 0 {
			per = usage / int64(current)
		}
		return replicas, autoscalingv2.MetricValueStatus{AverageValue: resource.NewMilliQuantity(per, resource.DecimalSI)}, nil
	}
	return 0, autoscalingv2.MetricValueStatus{}, fmt.Errorf("invalid target for metric %s: want a value or averageValue", name)
}

// usageRatioReplicas scales the ready pods by ratio, holding the size within
// the tolerance, as Kubernetes' getUsageRatioReplicaCount does.
func usageRatioReplicas(current int32, ratio float64, pods []*corev1.Pod) int32 {
	if current == 0 {
		return int32(math.Ceil(ratio))
	}
	if math.Abs(1.0-ratio) <= Tolerance {
		return current
	}
	ready := 0
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	return int32(math.Ceil(ratio * float64(ready)))
}

// metricError is a metric that could not be had, with the ScalingActive
// reason Kubernetes gives its type.
type metricError struct {
	reason string
	err    error
}

func (e *metricError) Error() string { return e.err.Error() }
func (e *metricError) Unwrap() error { return e.err }

// failedReason is the ScalingActive reason for a failed proposal: that of
// the first metric that failed, FailedGetResourceMetric for a resource.
func failedReason(err error) string {
	var me *metricError
	if errors.As(err, &me) {
		return me.reason
	}
	return "FailedGetResourceMetric"
}
