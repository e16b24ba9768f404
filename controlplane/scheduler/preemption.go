package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Preemption, as kube-scheduler's DefaultPreemption does it: a pod that fits
// nowhere may have pods of lower priority evicted from one node so that it
// fits there. Of the nodes where evicting lower-priority pods would be
// enough, it takes the one whose most important victim matters least (then
// the smallest sum of victim priorities, then the fewest victims), and on
// it the fewest victims: every lower-priority pod is taken off in the
// simulation, then as many as still leave room are put back, most
// important first. The pod is nominated to the node (status
// nominatedNodeName) and the victims deleted with their grace period and a
// DisruptionTarget condition; the pod is bound once they are gone, and
// pods of lower priority are not placed in the room it waits for.
// PodDisruptionBudgets are not weighed (kube-scheduler prefers nodes that
// violate fewer).

// priorityOf is a pod's priority (0 when admission set none).
func priorityOf(p *corev1.Pod) int32 {
	if p.Spec.Priority != nil {
		return *p.Spec.Priority
	}
	return 0
}

// startedAt is when the pod started, or was made if it has not.
func startedAt(p *corev1.Pod) time.Time {
	if p.Status.StartTime != nil {
		return p.Status.StartTime.Time
	}
	return p.CreationTimestamp.Time
}

// preemptible says whether a failed fit could be cured by evicting pods:
// resources, host ports and anti-affinity of pods already there; a node
// that is not ready, tainted or unmatched stays so whatever runs on it.
func preemptible(reason string) bool {
	return strings.HasPrefix(reason, "Insufficient ") || reason == reasonHostPort || reason == reasonAntiAffinity
}

// preemption is a node and the pods to evict from it.
type preemption struct {
	node    string
	victims []*corev1.Pod
	// top and sum are the highest victim priority and the sum of all of
	// theirs: what picking among nodes weighs.
	top int64
	sum int64
}

// eligibleToPreempt says whether the pod may evict others now: not with
// preemptionPolicy Never, and not while pods it already had evicted from
// its nominated node are still terminating (they are making room for it).
func (s *Scheduler) eligibleToPreempt(pod *corev1.Pod) bool {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == corev1.PreemptNever {
		return false
	}
	node := pod.Status.NominatedNodeName
	if node == "" {
		return true
	}
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	st := s.cache.nodes[node]
	if st == nil {
		return true
	}
	for _, pi := range st.pods {
		if pi.pod.DeletionTimestamp != nil && priorityOf(pi.pod) < priorityOf(pod) {
			return false
		}
	}
	return true
}

// findPreemption picks the node and victims for the candidate, or nil.
func (s *Scheduler) findPreemption(cand *candidate) *preemption {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	prio := priorityOf(cand.pod)
	var best *preemption
	for _, st := range s.cache.order {
		ok, why := fits(cand, st, s.cache.nodes)
		if ok || !preemptible(why) {
			continue
		}
		p := victimsOn(cand, st, s.cache.nodes, prio)
		if p == nil {
			continue
		}
		if best == nil || p.top < best.top || (p.top == best.top && (p.sum < best.sum || (p.sum == best.sum && len(p.victims) < len(best.victims)))) {
			best = p
		}
	}
	return best
}

// victimsOn simulates evicting the fewest lower-priority pods from st that
// let the candidate fit, and leaves st as it found it.
func victimsOn(cand *candidate, st *nodeState, all map[string]*nodeState, prio int32) *preemption {
	var lower []*podInfo
	for _, pi := range st.pods {
		// Pods already going count as gone only when they are gone.
		if priorityOf(pi.pod) < prio && pi.pod.DeletionTimestamp == nil {
			lower = append(lower, pi)
		}
	}
	if len(lower) == 0 {
		return nil
	}
	for _, pi := range lower {
		st.remove(podKey(pi.pod))
	}
	var victims []*podInfo
	if ok, _ := fits(cand, st, all); ok {
		// Put back the most important first, then the oldest.
		sort.Slice(lower, func(i, j int) bool {
			pi, pj := priorityOf(lower[i].pod), priorityOf(lower[j].pod)
			if pi != pj {
				return pi > pj
			}
			return startedAt(lower[i].pod).Before(startedAt(lower[j].pod))
		})
		for _, pi := range lower {
			st.add(pi)
			if ok, _ := fits(cand, st, all); !ok {
				st.remove(podKey(pi.pod))
				victims = append(victims, pi)
			}
		}
	} else {
		victims = lower
		lower = nil
	}
	fitted := lower != nil
	for _, pi := range victims {
		st.add(pi)
	}
	if !fitted {
		return nil
	}
	p := &preemption{node: st.node.Name, top: -1 << 62}
	for _, pi := range victims {
		pr := int64(priorityOf(pi.pod))
		p.victims = append(p.victims, pi.pod)
		p.sum += pr
		p.top = max(p.top, pr)
	}
	return p
}

// preempt nominates the pod to the preemption's node and evicts the
// victims, as kube-scheduler does: each gets a DisruptionTarget condition
// and a Preempted event, then is deleted with its grace period.
// It returns the pod as the nomination left it.
func (s *Scheduler) preempt(ctx context.Context, pod *corev1.Pod, p *preemption) (*corev1.Pod, error) {
	patch, _ := json.Marshal(map[string]any{"status": map[string]any{"nominatedNodeName": p.node}})
	nominated, err := s.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil {
		return nil, fmt.Errorf("nominate %s/%s to %s: %w", pod.Namespace, pod.Name, p.node, err)
	}
	s.nominate(pod, p.node)
	for _, v := range p.victims {
		cond, _ := json.Marshal(map[string]any{"status": map[string]any{"conditions": []map[string]any{{
			"type": string(corev1.DisruptionTarget), "status": "True", "reason": corev1.PodReasonPreemptionByScheduler,
			"message":            fmt.Sprintf("%s: preempting to accommodate a higher priority pod", Name),
			"lastTransitionTime": metav1.Now(),
		}}}})
		if _, err := s.client.CoreV1().Pods(v.Namespace).Patch(ctx, v.Name, types.StrategicMergePatchType, cond, metav1.PatchOptions{}, "status"); err != nil && !apierrors.IsNotFound(err) {
			slog.Warn("scheduler: marking a victim", "pod", podKey(v), "err", err)
		}
		if err := s.client.CoreV1().Pods(v.Namespace).Delete(ctx, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &v.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("evict %s for %s/%s: %w", podKey(v), pod.Namespace, pod.Name, err)
		}
		s.recorder.Eventf(v, pod, corev1.EventTypeNormal, "Preempted", "Preempting", "Preempted by pod %s on node %s", pod.UID, p.node)
	}
	slog.Info("scheduler: preempted", "pod", podKey(pod), "node", p.node, "victims", len(p.victims))
	return nominated, nil
}

// nominate remembers that pod waits for room on node, so that pods of
// lower priority are not placed in it meanwhile.
func (s *Scheduler) nominate(pod *corev1.Pod, node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nominated == nil {
		s.nominated = map[string]*podInfo{}
	}
	placed := pod.DeepCopy()
	placed.Spec.NodeName = node
	placed.Status.NominatedNodeName = node
	s.nominated[podKey(pod)] = newPodInfo(placed)
}

// forgetNomination drops the pod's nomination (bound, or gone).
func (s *Scheduler) forgetNomination(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nominated, key)
}

// reserveNominated counts, for a decision about cand, the pods nominated to
// nodes that matter at least as much as it does, as if they were there,
// and returns what undoes it. The caller holds the cache's lock.
func (s *Scheduler) reserveNominated(cand *candidate) (undo func()) {
	s.mu.Lock()
	var held []*podInfo
	for key, pi := range s.nominated {
		if key != podKey(cand.pod) && priorityOf(pi.pod) >= priorityOf(cand.pod) {
			held = append(held, pi)
		}
	}
	s.mu.Unlock()
	var added []func()
	for _, pi := range held {
		st := s.cache.nodes[pi.pod.Spec.NodeName]
		if st == nil || st.pods[podKey(pi.pod)] != nil {
			continue
		}
		st.add(pi)
		key := podKey(pi.pod)
		added = append(added, func() { st.remove(key) })
	}
	return func() {
		for _, f := range added {
			f()
		}
	}
}
