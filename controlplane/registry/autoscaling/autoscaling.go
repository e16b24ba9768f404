// Package autoscaling holds the HorizontalPodAutoscaler's API rules:
// defaults and validation of autoscaling/v2, the conversion between v1 and
// v2 (v2 is the stored version), the default scaling behavior the
// controller applies, and the Targets column.
package autoscaling

import (
	"encoding/json"
	"fmt"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// DefaultCPUUtilization is the target of an HPA that names no metric.
const DefaultCPUUtilization = 80

// Annotations that carry what autoscaling/v1 has no field for, so that a
// v2 object read and written back through v1 keeps it.
const (
	annotationMetrics        = "autoscaling.alpha.kubernetes.io/metrics"
	annotationCurrentMetrics = "autoscaling.alpha.kubernetes.io/current-metrics"
	annotationConditions     = "autoscaling.alpha.kubernetes.io/conditions"
	annotationBehavior       = "autoscaling.alpha.kubernetes.io/behavior"
)

// ScaleUpRules are the scale-up rules with Kubernetes' defaults filled in:
// no stabilization, at most 4 pods or 100% more every 15 s, whichever is
// more.
func ScaleUpRules(in *autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	out := &autoscalingv2.HPAScalingRules{}
	if in != nil {
		out = in.DeepCopy()
	}
	if out.StabilizationWindowSeconds == nil {
		out.StabilizationWindowSeconds = ptr.To[int32](0)
	}
	if out.SelectPolicy == nil {
		out.SelectPolicy = ptr.To(autoscalingv2.MaxChangePolicySelect)
	}
	if len(out.Policies) == 0 {
		out.Policies = []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		}
	}
	return out
}

// ScaleDownRules are the scale-down rules with Kubernetes' defaults: a
// 300 s stabilization window, at most 100% fewer every 15 s.
func ScaleDownRules(in *autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	out := &autoscalingv2.HPAScalingRules{}
	if in != nil {
		out = in.DeepCopy()
	}
	if out.StabilizationWindowSeconds == nil {
		out.StabilizationWindowSeconds = ptr.To[int32](300)
	}
	if out.SelectPolicy == nil {
		out.SelectPolicy = ptr.To(autoscalingv2.MaxChangePolicySelect)
	}
	if len(out.Policies) == 0 {
		out.Policies = []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}
	}
	return out
}

// Default fills autoscaling/v2's defaults: one replica at least, CPU at 80%
// when no metric is named, and a given behavior's missing rules.
func Default(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		h.Spec.MinReplicas = ptr.To[int32](1)
	}
	if len(h.Spec.Metrics) == 0 {
		h.Spec.Metrics = []autoscalingv2.MetricSpec{cpuMetric(DefaultCPUUtilization)}
	}
	if h.Spec.Behavior != nil {
		h.Spec.Behavior.ScaleUp = ScaleUpRules(h.Spec.Behavior.ScaleUp)
		h.Spec.Behavior.ScaleDown = ScaleDownRules(h.Spec.Behavior.ScaleDown)
	}
}

func cpuMetric(percent int32) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To(percent)}}}
}

// Validate checks an HPA as Kubernetes' validation does for what Petrel
// acts on.
func Validate(h *autoscalingv2.HorizontalPodAutoscaler) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	ref := spec.Child("scaleTargetRef")
	if h.Spec.ScaleTargetRef.Kind == "" {
		errs = append(errs, field.Required(ref.Child("kind"), ""))
	}
	if h.Spec.ScaleTargetRef.Name == "" {
		errs = append(errs, field.Required(ref.Child("name"), ""))
	} else if strings.ContainsAny(h.Spec.ScaleTargetRef.Name, "/%") || h.Spec.ScaleTargetRef.Name == "." || h.Spec.ScaleTargetRef.Name == ".." {
		errs = append(errs, field.Invalid(ref.Child("name"), h.Spec.ScaleTargetRef.Name, "may not contain '/' or '%' and may not be '.' or '..'"))
	}
	minReplicas := int32(1)
	if m := h.Spec.MinReplicas; m != nil {
		minReplicas = *m
		if *m < 1 {
			errs = append(errs, field.Invalid(spec.Child("minReplicas"), *m, "must be greater than or equal to 1"))
		}
	}
	if h.Spec.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than 0"))
	}
	if h.Spec.MaxReplicas < minReplicas {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	for i, m := range h.Spec.Metrics {
		errs = append(errs, validateMetric(m, spec.Child("metrics").Index(i))...)
	}
	if b := h.Spec.Behavior; b != nil {
		errs = append(errs, validateRules(b.ScaleUp, spec.Child("behavior", "scaleUp"))...)
		errs = append(errs, validateRules(b.ScaleDown, spec.Child("behavior", "scaleDown"))...)
	}
	return errs
}

func validateMetric(m autoscalingv2.MetricSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var target *autoscalingv2.MetricTarget
	switch m.Type {
	case autoscalingv2.ResourceMetricSourceType:
		if m.Resource == nil {
			return append(errs, field.Required(p.Child("resource"), "must populate resource metric source when type is Resource"))
		}
		if m.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource", "name"), "must specify a resource name"))
		}
		target = &m.Resource.Target
		p = p.Child("resource", "target")
		if target.Type == autoscalingv2.ValueMetricType {
			errs = append(errs, field.Invalid(p.Child("type"), target.Type, "must be either Utilization or AverageValue"))
		}
	case autoscalingv2.ContainerResourceMetricSourceType:
		if m.ContainerResource == nil {
			return append(errs, field.Required(p.Child("containerResource"), "must populate container resource metric source when type is ContainerResource"))
		}
		if m.ContainerResource.Container == "" {
			errs = append(errs, field.Required(p.Child("containerResource", "container"), "must specify a container"))
		}
		target = &m.ContainerResource.Target
		p = p.Child("containerResource", "target")
	case autoscalingv2.PodsMetricSourceType, autoscalingv2.ObjectMetricSourceType, autoscalingv2.ExternalMetricSourceType:
		return errs
	case "":
		return append(errs, field.Required(p.Child("type"), "must specify a metric source type"))
	default:
		return append(errs, field.NotSupported(p.Child("type"), m.Type, []string{"ContainerResource", "External", "Object", "Pods", "Resource"}))
	}
	switch target.Type {
	case autoscalingv2.UtilizationMetricType:
		if target.AverageUtilization == nil || *target.AverageUtilization < 1 {
			errs = append(errs, field.Required(p.Child("averageUtilization"), "must set averageUtilization to a positive value when type is Utilization"))
		}
	case autoscalingv2.AverageValueMetricType:
		if target.AverageValue == nil || target.AverageValue.Sign() <= 0 {
			errs = append(errs, field.Required(p.Child("averageValue"), "must set averageValue to a positive value when type is AverageValue"))
		}
	case autoscalingv2.ValueMetricType:
	default:
		errs = append(errs, field.NotSupported(p.Child("type"), target.Type, []string{"AverageValue", "Utilization", "Value"}))
	}
	return errs
}

func validateRules(r *autoscalingv2.HPAScalingRules, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if r == nil {
		return nil
	}
	if w := r.StabilizationWindowSeconds; w != nil && (*w < 0 || *w > 3600) {
		errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w, "must be between 0 and 3600"))
	}
	if s := r.SelectPolicy; s != nil && *s != autoscalingv2.MaxChangePolicySelect && *s != autoscalingv2.MinChangePolicySelect && *s != autoscalingv2.DisabledPolicySelect {
		errs = append(errs, field.NotSupported(p.Child("selectPolicy"), *s, []string{"Disabled", "Max", "Min"}))
	}
	for i, pol := range r.Policies {
		pp := p.Child("policies").Index(i)
		if pol.Type != autoscalingv2.PodsScalingPolicy && pol.Type != autoscalingv2.PercentScalingPolicy {
			errs = append(errs, field.NotSupported(pp.Child("type"), pol.Type, []string{"Percent", "Pods"}))
		}
		if pol.Value <= 0 {
			errs = append(errs, field.Invalid(pp.Child("value"), pol.Value, "must be greater than zero"))
		}
		if pol.PeriodSeconds <= 0 || pol.PeriodSeconds > 1800 {
			errs = append(errs, field.Invalid(pp.Child("periodSeconds"), pol.PeriodSeconds, "must be greater than zero and less than or equal to 1800"))
		}
	}
	return errs
}

// Targets is kubectl's TARGETS cell: "cpu: 40%/50%" per metric.
func Targets(h *autoscalingv2.HorizontalPodAutoscaler) string {
	var parts []string
	for i, m := range h.Spec.Metrics {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
			parts = append(parts, "<unknown>/<unknown>")
			continue
		}
		cur := "<unknown>"
		if i < len(h.Status.CurrentMetrics) && h.Status.CurrentMetrics[i].Resource != nil {
			c := h.Status.CurrentMetrics[i].Resource.Current
			if m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && c.AverageUtilization != nil {
				cur = fmt.Sprintf("%d%%", *c.AverageUtilization)
			} else if c.AverageValue != nil {
				cur = c.AverageValue.String()
			}
		}
		want := "<unset>"
		if t := m.Resource.Target; t.AverageUtilization != nil {
			want = fmt.Sprintf("%d%%", *t.AverageUtilization)
		} else if t.AverageValue != nil {
			want = t.AverageValue.String()
		}
		parts = append(parts, fmt.Sprintf("%s: %s/%s", m.Resource.Name, cur, want))
	}
	if len(parts) == 0 {
		return "<none>"
	}
	return strings.Join(parts, ", ")
}

// V1ToV2 converts an autoscaling/v1 HPA to v2: the CPU target becomes a
// Resource metric, and what v1 keeps in annotations comes back.
func V1ToV2(in *autoscalingv1.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	out := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: *in.ObjectMeta.DeepCopy()}
	out.Spec.ScaleTargetRef = autoscalingv2.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion}
	out.Spec.MinReplicas, out.Spec.MaxReplicas = in.Spec.MinReplicas, in.Spec.MaxReplicas
	if in.Spec.TargetCPUUtilizationPercentage != nil {
		out.Spec.Metrics = append(out.Spec.Metrics, cpuMetric(*in.Spec.TargetCPUUtilizationPercentage))
	}
	ann := out.Annotations
	var extra []autoscalingv2.MetricSpec
	if v, ok := ann[annotationMetrics]; ok && json.Unmarshal([]byte(v), &extra) == nil {
		out.Spec.Metrics = append(out.Spec.Metrics, extra...)
	}
	if v, ok := ann[annotationBehavior]; ok {
		b := &autoscalingv2.HorizontalPodAutoscalerBehavior{}
		if json.Unmarshal([]byte(v), b) == nil {
			out.Spec.Behavior = b
		}
	}
	out.Status = autoscalingv2.HorizontalPodAutoscalerStatus{ObservedGeneration: in.Status.ObservedGeneration, LastScaleTime: in.Status.LastScaleTime,
		CurrentReplicas: in.Status.CurrentReplicas, DesiredReplicas: in.Status.DesiredReplicas}
	if v, ok := ann[annotationCurrentMetrics]; ok {
		_ = json.Unmarshal([]byte(v), &out.Status.CurrentMetrics)
	}
	if v, ok := ann[annotationConditions]; ok {
		_ = json.Unmarshal([]byte(v), &out.Status.Conditions)
	}
	for _, k := range []string{annotationMetrics, annotationBehavior, annotationCurrentMetrics, annotationConditions} {
		delete(out.Annotations, k)
	}
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out
}

// V2ToV1 converts a stored v2 HPA to v1: a CPU utilization target is the
// v1 field; other metrics, the behavior, current metrics and conditions go
// in annotations.
func V2ToV1(in *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv1.HorizontalPodAutoscaler {
	out := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: *in.ObjectMeta.DeepCopy()}
	out.Spec.ScaleTargetRef = autoscalingv1.CrossVersionObjectReference{Kind: in.Spec.ScaleTargetRef.Kind, Name: in.Spec.ScaleTargetRef.Name, APIVersion: in.Spec.ScaleTargetRef.APIVersion}
	out.Spec.MinReplicas, out.Spec.MaxReplicas = in.Spec.MinReplicas, in.Spec.MaxReplicas
	annotate := func(k string, v interface{}) {
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[k] = string(b)
	}
	var extra []autoscalingv2.MetricSpec
	cpuIndex := -1
	for i, m := range in.Spec.Metrics {
		if cpuIndex < 0 && m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
			m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil {
			out.Spec.TargetCPUUtilizationPercentage = ptr.To(*m.Resource.Target.AverageUtilization)
			cpuIndex = i
			continue
		}
		extra = append(extra, m)
	}
	if len(extra) > 0 {
		annotate(annotationMetrics, extra)
	}
	if in.Spec.Behavior != nil {
		annotate(annotationBehavior, in.Spec.Behavior)
	}
	out.Status = autoscalingv1.HorizontalPodAutoscalerStatus{ObservedGeneration: in.Status.ObservedGeneration, LastScaleTime: in.Status.LastScaleTime,
		CurrentReplicas: in.Status.CurrentReplicas, DesiredReplicas: in.Status.DesiredReplicas}
	for _, c := range in.Status.CurrentMetrics {
		if c.Type == autoscalingv2.ResourceMetricSourceType && c.Resource != nil && c.Resource.Name == corev1.ResourceCPU && c.Resource.Current.AverageUtilization != nil {
			out.Status.CurrentCPUUtilizationPercentage = ptr.To(*c.Resource.Current.AverageUtilization)
			break
		}
	}
	if len(in.Status.CurrentMetrics) > 0 {
		annotate(annotationCurrentMetrics, in.Status.CurrentMetrics)
	}
	if len(in.Status.Conditions) > 0 {
		annotate(annotationConditions, in.Status.Conditions)
	}
	return out
}
