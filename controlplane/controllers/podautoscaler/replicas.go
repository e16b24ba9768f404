package podautoscaler

import (
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Tolerance is how far from 1 the usage ratio must be before the replica
// count changes (Kubernetes' --horizontal-pod-autoscaler-tolerance).
const Tolerance = 0.1

// Pod readiness periods for CPU, as Kubernetes' defaults: a pod's CPU is
// not trusted in its first 5 minutes unless it has been ready for a whole
// metrics window, and a pod that turned unready within 30 s of starting is
// still starting.
const (
	cpuInitializationPeriod       = 5 * time.Minute
	delayOfInitialReadinessStatus = 30 * time.Second
)

// PodMetric is one pod's usage of a resource (summed over its containers,
// in milli-units) and when and over what window it was measured.
type PodMetric struct {
	Value     int64
	Timestamp time.Time
	Window    time.Duration
}

// podGroups sorts the target's pods as Kubernetes' replica calculator does:
// the ones to ignore (deleted, failed), the unready (pending, or not yet
// trusted for CPU) and those without metrics.
func groupPods(pods []*corev1.Pod, metrics map[string]PodMetric, resource corev1.ResourceName, now time.Time) (readyCount int, unready, missing, ignored map[string]bool) {
	unready, missing, ignored = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodFailed {
			ignored[pod.Name] = true
			continue
		}
		if pod.Status.Phase == corev1.PodPending {
			unready[pod.Name] = true
			continue
		}
		metric, found := metrics[pod.Name]
		if !found {
			missing[pod.Name] = true
			continue
		}
		if resource == corev1.ResourceCPU {
			var cond *corev1.PodCondition
			for i := range pod.Status.Conditions {
				if pod.Status.Conditions[i].Type == corev1.PodReady {
					cond = &pod.Status.Conditions[i]
				}
			}
			isUnready := false
			if cond == nil || pod.Status.StartTime == nil {
				isUnready = true
			} else if pod.Status.StartTime.Add(cpuInitializationPeriod).After(now) {
				// Still starting: its CPU counts once it has been ready for a
				// whole window.
				isUnready = cond.Status == corev1.ConditionFalse || metric.Timestamp.Before(cond.LastTransitionTime.Add(metric.Window))
			} else {
				// Past starting: unready only if it has never been ready.
				isUnready = cond.Status == corev1.ConditionFalse && pod.Status.StartTime.Add(delayOfInitialReadinessStatus).After(cond.LastTransitionTime.Time)
			}
			if isUnready {
				unready[pod.Name] = true
				continue
			}
		}
		readyCount++
	}
	return readyCount, unready, missing, ignored
}

// podRequests are the pods' requests of the resource in milli-units,
// summed over their containers (or one named container); a container
// without a request is an error, as utilization cannot be computed.
func podRequests(pods []*corev1.Pod, container string, resource corev1.ResourceName) (map[string]int64, error) {
	out := map[string]int64{}
	for _, pod := range pods {
		var sum int64
		for _, c := range pod.Spec.Containers {
			if container != "" && c.Name != container {
				continue
			}
			req, ok := c.Resources.Requests[resource]
			if !ok {
				return nil, fmt.Errorf("missing request for %s in container %s of Pod %s", resource, c.Name, pod.Name)
			}
			sum += req.MilliValue()
		}
		out[pod.Name] = sum
	}
	return out, nil
}

// utilizationRatio is usage over requests of the pods that have metrics:
// the ratio to the target, the utilization (percent of request) and the
// average raw usage.
func utilizationRatio(metrics map[string]PodMetric, requests map[string]int64, target int32) (ratio float64, utilization int32, rawAverage int64, err error) {
	var usage, requested int64
	n := int64(0)
	for name, m := range metrics {
		req, ok := requests[name]
		if !ok {
			continue
		}
		usage += m.Value
		requested += req
		n++
	}
	if requested == 0 {
		return 0, 0, 0, fmt.Errorf("no metrics returned matched known pods")
	}
	utilization = int32(usage * 100 / requested)
	return float64(utilization) / float64(target), utilization, usage / n, nil
}

// ResourceReplicas is Kubernetes' replica count for a Resource metric with
// a Utilization target: ceil(ready pods * utilization / target), holding
// still within Tolerance, with pods that have no metrics counted at 100%
// of their request when scaling down (0 when scaling up) and unready pods
// at 0 when scaling up, and no change when those assumptions would reverse
// the direction.
func ResourceReplicas(current int32, target int32, resource corev1.ResourceName, container string, pods []*corev1.Pod,
	metrics map[string]PodMetric, now time.Time) (replicas int32, utilization int32, rawAverage int64, err error) {
	if len(pods) == 0 {
		return 0, 0, 0, fmt.Errorf("no pods returned by selector while calculating replica count")
	}
	metrics = copyMetrics(metrics)
	ready, unready, missing, ignored := groupPods(pods, metrics, resource, now)
	for name := range metrics {
		if unready[name] || ignored[name] {
			delete(metrics, name)
		}
	}
	if ready == 0 && len(metrics) == 0 {
		return 0, 0, 0, fmt.Errorf("did not receive metrics for targeted pods (pods might be unready)")
	}
	requests, err := podRequests(pods, container, resource)
	if err != nil {
		return 0, 0, 0, err
	}
	if len(metrics) == 0 {
		return 0, 0, 0, fmt.Errorf("did not receive metrics for targeted pods (pods might be unready)")
	}
	ratio, utilization, rawAverage, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, 0, 0, err
	}
	scaleUpWithUnready := len(unready) > 0 && ratio > 1.0
	if !scaleUpWithUnready && len(missing) == 0 {
		if math.Abs(1.0-ratio) <= Tolerance {
			return current, utilization, rawAverage, nil
		}
		return int32(math.Ceil(ratio * float64(len(metrics)))), utilization, rawAverage, nil
	}
	if len(missing) > 0 {
		for name := range missing {
			if ratio < 1.0 {
				// Scaling down: assume the silent pods use what they ask.
				metrics[name] = PodMetric{Value: requests[name]}
			} else {
				metrics[name] = PodMetric{Value: 0}
			}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio, _, _, err := utilizationRatio(metrics, requests, target)
	if err != nil {
		return 0, 0, 0, err
	}
	if math.Abs(1.0-newRatio) <= Tolerance || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return current, utilization, rawAverage, nil
	}
	replicas = int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1.0 && replicas > current) || (newRatio > 1.0 && replicas < current) {
		return current, utilization, rawAverage, nil
	}
	return replicas, utilization, rawAverage, nil
}

// AverageValueReplicas is the replica count for a Resource metric with an
// AverageValue target (milli-units per pod): the same rules with the
// target per pod in place of a percentage of requests.
func AverageValueReplicas(current int32, targetMilli int64, resource corev1.ResourceName, pods []*corev1.Pod,
	metrics map[string]PodMetric, now time.Time) (replicas int32, rawAverage int64, err error) {
	if len(pods) == 0 {
		return 0, 0, fmt.Errorf("no pods returned by selector while calculating replica count")
	}
	metrics = copyMetrics(metrics)
	_, unready, missing, ignored := groupPods(pods, metrics, resource, now)
	for name := range metrics {
		if unready[name] || ignored[name] {
			delete(metrics, name)
		}
	}
	if len(metrics) == 0 {
		return 0, 0, fmt.Errorf("did not receive metrics for targeted pods (pods might be unready)")
	}
	avg := func() float64 {
		var sum int64
		for _, m := range metrics {
			sum += m.Value
		}
		return float64(sum) / float64(len(metrics))
	}
	ratio := avg() / float64(targetMilli)
	rawAverage = int64(avg())
	scaleUpWithUnready := len(unready) > 0 && ratio > 1.0
	if !scaleUpWithUnready && len(missing) == 0 {
		if math.Abs(1.0-ratio) <= Tolerance {
			return current, rawAverage, nil
		}
		return int32(math.Ceil(ratio * float64(len(metrics)))), rawAverage, nil
	}
	for name := range missing {
		if ratio < 1.0 {
			metrics[name] = PodMetric{Value: targetMilli}
		} else {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	if scaleUpWithUnready {
		for name := range unready {
			metrics[name] = PodMetric{Value: 0}
		}
	}
	newRatio := avg() / float64(targetMilli)
	if math.Abs(1.0-newRatio) <= Tolerance || (ratio < 1.0 && newRatio > 1.0) || (ratio > 1.0 && newRatio < 1.0) {
		return current, rawAverage, nil
	}
	replicas = int32(math.Ceil(newRatio * float64(len(metrics))))
	if (newRatio < 1.0 && replicas > current) || (newRatio > 1.0 && replicas < current) {
		return current, rawAverage, nil
	}
	return replicas, rawAverage, nil
}

func copyMetrics(in map[string]PodMetric) map[string]PodMetric {
	out := make(map[string]PodMetric, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
