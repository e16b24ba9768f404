package deployment

import (
	"encoding/json"
	"hash/fnv"
	"math"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"
)

// Annotations and labels Kubernetes' tools read.
const (
	RevisionAnnotation    = "deployment.kubernetes.io/revision"
	ChangeCauseAnnotation = "kubernetes.io/change-cause"
	DesiredAnnotation     = "deployment.kubernetes.io/desired-replicas"
	MaxAnnotation         = "deployment.kubernetes.io/max-replicas"
)

// templateHash names a pod template, as the pod-template-hash label does.
func templateHash(t *corev1.PodTemplateSpec, collisions *int32) string {
	h := fnv.New32a()
	b, _ := json.Marshal(t)
	h.Write(b)
	if collisions != nil {
		h.Write([]byte(strconv.Itoa(int(*collisions))))
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// sameTemplate compares a ReplicaSet's template with the Deployment's,
// ignoring the pod-template-hash label the ReplicaSet adds.
func sameTemplate(rs *appsv1.ReplicaSet, t *corev1.PodTemplateSpec) bool {
	a := rs.Spec.Template.DeepCopy()
	delete(a.Labels, appsv1.DefaultDeploymentUniqueLabelKey)
	if len(a.Labels) == 0 {
		a.Labels = nil
	}
	b := t.DeepCopy()
	if len(b.Labels) == 0 {
		b.Labels = nil
	}
	return apiequality.Semantic.DeepEqual(a, b)
}

func revision(rs *appsv1.ReplicaSet) int64 {
	v, _ := strconv.ParseInt(rs.Annotations[RevisionAnnotation], 10, 64)
	return v
}

func replicas(rs *appsv1.ReplicaSet) int32 { return ptr.Deref(rs.Spec.Replicas, 0) }

// surgeAndUnavailable resolves the rolling update's limits against the
// replica count: surge rounds up, unavailability down, and they are never
// both zero.
func surgeAndUnavailable(d *appsv1.Deployment) (int32, int32) {
	want := int(ptr.Deref(d.Spec.Replicas, 1))
	surge, unavailable := intstr.FromString("25%"), intstr.FromString("25%")
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surge = *ru.MaxSurge
		}
		if ru.MaxUnavailable != nil {
			unavailable = *ru.MaxUnavailable
		}
	}
	s, _ := intstr.GetScaledValueFromIntOrPercent(&surge, want, true)
	u, _ := intstr.GetScaledValueFromIntOrPercent(&unavailable, want, false)
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

// oldestFirst sorts ReplicaSets by creation, then name.
func oldestFirst(sets []*appsv1.ReplicaSet) {
	sort.SliceStable(sets, func(i, j int) bool {
		if !sets[i].CreationTimestamp.Equal(&sets[j].CreationTimestamp) {
			return sets[i].CreationTimestamp.Before(&sets[j].CreationTimestamp)
		}
		return sets[i].Name < sets[j].Name
	})
}

// plan is the replica count each ReplicaSet should get this step.
type plan map[string]int32

// rollingStep computes one step of a rolling update, as Kubernetes does:
// scale the new set up within maxSurge, then scale old sets down (unhealthy
// replicas first) while at least replicas-maxUnavailable stay available.
func rollingStep(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) plan {
	want := ptr.Deref(d.Spec.Replicas, 1)
	surge, unavailable := surgeAndUnavailable(d)
	p := plan{}
	set := func(rs *appsv1.ReplicaSet) int32 {
		if v, ok := p[rs.Name]; ok {
			return v
		}
		return replicas(rs)
	}
	total := func() int32 {
		n := set(newRS)
		for _, o := range olds {
			n += set(o)
		}
		return n
	}
	// Scale up the new set.
	if cur := set(newRS); cur < want {
		if room := want + surge - total(); room > 0 {
			p[newRS.Name] = min(want, cur+room)
		}
	} else if cur > want {
		p[newRS.Name] = want
	}
	// Scale down old sets.
	minAvailable := want - unavailable
	newUnavailable := set(newRS) - newRS.Status.AvailableReplicas
	budget := total() - minAvailable - max(newUnavailable, 0)
	oldestFirst(olds)
	for _, o := range olds {
		if budget <= 0 {
			break
		}
		unhealthy := set(o) - o.Status.AvailableReplicas
		if unhealthy <= 0 {
			continue
		}
		down := min(budget, unhealthy)
		p[o.Name] = set(o) - down
		budget -= down
	}
	available := newRS.Status.AvailableReplicas
	for _, o := range olds {
		available += min(o.Status.AvailableReplicas, set(o))
	}
	if canDown := available - minAvailable; canDown > 0 {
		for _, o := range olds {
			if canDown <= 0 {
				break
			}
			down := min(set(o), canDown)
			if down > 0 {
				p[o.Name] = set(o) - down
				canDown -= down
			}
		}
	}
	return p
}

// scalingEvent says whether the Deployment's replica count changed since
// its active ReplicaSets were last sized: their desired-replicas
// annotation records the count they were sized for.
func scalingEvent(d *appsv1.Deployment, sets []*appsv1.ReplicaSet) bool {
	want := strconv.Itoa(int(ptr.Deref(d.Spec.Replicas, 1)))
	for _, rs := range sets {
		if replicas(rs) > 0 && rs.Annotations[DesiredAnnotation] != want {
			return true
		}
	}
	return false
}

// proportionalStep resizes the ReplicaSets after a scaling event, as
// Kubernetes does: a lone active set (or the newest, when none is active)
// takes the whole count; a saturated new set lets the old ones go;
// otherwise, mid-rollout (or paused there), the replicas added or removed
// are shared out in proportion to each active set's size against the
// maximum it was sized for, the largest sets first and the rounding left
// to the largest, so that the rollout's split is kept.
func proportionalStep(d *appsv1.Deployment, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) plan {
	want := ptr.Deref(d.Spec.Replicas, 1)
	p := plan{}
	var active []*appsv1.ReplicaSet
	for _, rs := range append([]*appsv1.ReplicaSet{newRS}, olds...) {
		if rs != nil && replicas(rs) > 0 {
			active = append(active, rs)
		}
	}
	switch {
	case len(active) == 0 && newRS != nil:
		p[newRS.Name] = want
		return p
	case len(active) == 1:
		p[active[0].Name] = want
		return p
	case len(active) == 0:
		return p
	}
	// Every active set is in the plan, resized or not, so that each
	// records the count it is now sized for and the event is over.
	for _, rs := range active {
		p[rs.Name] = replicas(rs)
	}
	if newRS != nil && replicas(newRS) == want && newRS.Status.AvailableReplicas == want {
		for _, o := range olds {
			p[o.Name] = 0
		}
		return p
	}
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		return p // Recreate takes old pods down whatever the count
	}
	allowed := int32(0) // scaled to zero: no surge either
	if want > 0 {
		surge, _ := surgeAndUnavailable(d)
		allowed = want + surge
	}
	current := int32(0)
	for _, rs := range active {
		current += replicas(rs)
	}
	toAdd := allowed - current
	if toAdd == 0 {
		return p
	}
	// Largest first; among equals the newer when adding, the older when
	// removing.
	sort.SliceStable(active, func(i, j int) bool {
		a, b := active[i], active[j]
		if replicas(a) != replicas(b) {
			return replicas(a) > replicas(b)
		}
		if toAdd > 0 {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
	added := int32(0)
	for _, rs := range active {
		share := fraction(rs, d, allowed)
		if toAdd > 0 {
			share = max(min(share, toAdd-added), 0)
		} else {
			share = min(max(share, toAdd-added), 0)
		}
		p[rs.Name] = replicas(rs) + share
		added += share
	}
	if left := toAdd - added; left != 0 {
		p[active[0].Name] = max(p[active[0].Name]+left, 0)
	}
	return p
}

// fraction is how many replicas rs gains (or loses) to keep its share of
// allowed: its size scaled by allowed over the maximum it was sized for.
func fraction(rs *appsv1.ReplicaSet, d *appsv1.Deployment, allowed int32) int32 {
	if ptr.Deref(d.Spec.Replicas, 1) == 0 {
		return -replicas(rs)
	}
	sizedFor, err := strconv.Atoi(rs.Annotations[MaxAnnotation])
	if err != nil || sizedFor <= 0 {
		sizedFor = int(d.Status.Replicas)
	}
	if sizedFor <= 0 {
		return 0
	}
	scaled := float64(replicas(rs)) * float64(allowed) / float64(sizedFor)
	return int32(math.Round(scaled)) - replicas(rs)
}
