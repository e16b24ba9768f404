package podautoscaler

import (
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"

	"github.com/petrel-project/petrel/controlplane/registry/autoscaling"
)

// recommendation is one past proposal of the metrics, for stabilization.
type recommendation struct {
	at       time.Time
	replicas int32
}

// scaleEvent is one change of the target's size, for the rate policies.
type scaleEvent struct {
	at     time.Time
	change int32
}

// history is what the controller remembers of one HPA between syncs, as
// Kubernetes' controller does (in memory: a new leader starts afresh).
type history struct {
	recommendations []recommendation
	up, down        []scaleEvent
}

// Normalized is the outcome of the behavior rules: the replica count to
// set, and the reasons for the AbleToScale and ScalingLimited conditions.
type Normalized struct {
	Replicas                  int32
	StabilizedReason, StabMsg string
	Limited                   bool
	LimitReason, LimitMessage string
}

// normalize applies the HPA's behavior (Kubernetes' defaults when it has
// none) to the metrics' proposal: the stabilization windows (scale up to
// the lowest, down to the highest recommendation within them), then the
// rate policies over recent scale events, then minReplicas/maxReplicas.
func (h *history) normalize(spec autoscalingv2.HorizontalPodAutoscalerSpec, current, proposed int32, now time.Time) Normalized {
	var b autoscalingv2.HorizontalPodAutoscalerBehavior
	if spec.Behavior != nil {
		b = *spec.Behavior
	}
	up, down := autoscaling.ScaleUpRules(b.ScaleUp), autoscaling.ScaleDownRules(b.ScaleDown)
	minReplicas := int32(1)
	if spec.MinReplicas != nil {
		minReplicas = *spec.MinReplicas
	}

	upWindow := time.Duration(*up.StabilizationWindowSeconds) * time.Second
	downWindow := time.Duration(*down.StabilizationWindowSeconds) * time.Second
	upRec, downRec := proposed, proposed
	kept := h.recommendations[:0]
	longest := max(upWindow, downWindow)
	for _, r := range h.recommendations {
		if r.at.After(now.Add(-upWindow)) {
			upRec = min(upRec, r.replicas)
		}
		if r.at.After(now.Add(-downWindow)) {
			downRec = max(downRec, r.replicas)
		}
		if r.at.After(now.Add(-longest)) {
			kept = append(kept, r)
		}
	}
	h.recommendations = append(kept, recommendation{at: now, replicas: proposed})
	stabilized := current
	if stabilized < upRec {
		stabilized = upRec
	}
	if stabilized > downRec {
		stabilized = downRec
	}
	out := Normalized{StabilizedReason: "ReadyForNewScale", StabMsg: "recommended size matches current size"}
	if stabilized != proposed {
		if stabilized > proposed {
			out.StabilizedReason, out.StabMsg = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
		} else {
			out.StabilizedReason, out.StabMsg = "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
		}
	}

	desired := stabilized
	reason, msg := "DesiredWithinRange", "the desired count is within the acceptable range"
	switch {
	case stabilized > current:
		limit := scaleUpLimit(current, h.up, up, now)
		maxAllowed := spec.MaxReplicas
		if limit < current {
			limit = current
		}
		if maxAllowed > limit {
			maxAllowed = limit
			reason, msg = "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
		} else {
			reason, msg = "TooManyReplicas", "the desired replica count is more than the maximum replica count"
		}
		if *up.SelectPolicy == autoscalingv2.DisabledPolicySelect {
			maxAllowed, reason, msg = current, "ScalingDisabled", "scaling is disabled since the scaling policy is set to Disabled"
		}
		if desired > maxAllowed {
			desired = maxAllowed
		} else {
			reason, msg = "DesiredWithinRange", "the desired count is within the acceptable range"
		}
	case stabilized < current:
		limit := scaleDownLimit(current, h.down, down, now)
		minAllowed := minReplicas
		if limit > current {
			limit = current
		}
		if minAllowed < limit {
			minAllowed = limit
			reason, msg = "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
		} else {
			reason, msg = "TooFewReplicas", "the desired replica count is less than the minimum replica count"
		}
		if *down.SelectPolicy == autoscalingv2.DisabledPolicySelect {
			minAllowed, reason, msg = current, "ScalingDisabled", "scaling is disabled since the scaling policy is set to Disabled"
		}
		if desired < minAllowed {
			desired = minAllowed
		} else {
			reason, msg = "DesiredWithinRange", "the desired count is within the acceptable range"
		}
	}
	out.Replicas = desired
	out.Limited = desired != stabilized
	out.LimitReason, out.LimitMessage = reason, msg
	return out
}

// record notes a change of size made now, for the rate policies.
func (h *history) record(from, to int32, now time.Time) {
	// Events older than the longest policy period (30 min at most) no
	// longer count.
	prune := func(ev []scaleEvent) []scaleEvent {
		kept := ev[:0]
		for _, e := range ev {
			if e.at.After(now.Add(-30 * time.Minute)) {
				kept = append(kept, e)
			}
		}
		return kept
	}
	h.up, h.down = prune(h.up), prune(h.down)
	if to > from {
		h.up = append(h.up, scaleEvent{at: now, change: to - from})
	} else if to < from {
		h.down = append(h.down, scaleEvent{at: now, change: from - to})
	}
}

func changedWithin(ev []scaleEvent, period time.Duration, now time.Time) int32 {
	var sum int32
	for _, e := range ev {
		if e.at.After(now.Add(-period)) {
			sum += e.change
		}
	}
	return sum
}

// scaleUpLimit is the most replicas the policies allow now: each policy
// counts from the size at the start of its period; Max takes the policy
// allowing most, Min the one allowing least.
func scaleUpLimit(current int32, events []scaleEvent, rules *autoscalingv2.HPAScalingRules, now time.Time) int32 {
	pick := func(a, b int32) int32 { return max(a, b) }
	result := int32(math.MinInt32)
	if *rules.SelectPolicy == autoscalingv2.MinChangePolicySelect {
		pick, result = func(a, b int32) int32 { return min(a, b) }, math.MaxInt32
	}
	for _, p := range rules.Policies {
		start := current - changedWithin(events, time.Duration(p.PeriodSeconds)*time.Second, now)
		var proposed int32
		if p.Type == autoscalingv2.PodsScalingPolicy {
			proposed = start + p.Value
		} else {
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		}
		result = pick(result, proposed)
	}
	return result
}

// scaleDownLimit is the fewest replicas the policies allow now.
func scaleDownLimit(current int32, events []scaleEvent, rules *autoscalingv2.HPAScalingRules, now time.Time) int32 {
	pick := func(a, b int32) int32 { return min(a, b) }
	result := int32(math.MaxInt32)
	if *rules.SelectPolicy == autoscalingv2.MinChangePolicySelect {
		pick, result = func(a, b int32) int32 { return max(a, b) }, math.MinInt32
	}
	for _, p := range rules.Policies {
		start := current + changedWithin(events, time.Duration(p.PeriodSeconds)*time.Second, now)
		var proposed int32
		if p.Type == autoscalingv2.PodsScalingPolicy {
			proposed = start - p.Value
		} else {
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		result = pick(result, proposed)
	}
	return result
}
