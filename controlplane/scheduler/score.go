package scheduler

import (
	"math"
	"math/rand/v2"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
)

// Scoring follows kube-scheduler's default profile: each plugin scores a
// node from 0 to maxNodeScore, and a node's score is the weighted sum.
const (
	maxNodeScore = 100

	weightLeastAllocated = 1 // NodeResourcesFit, LeastAllocated strategy
	weightBalanced       = 1 // NodeResourcesBalancedAllocation
	weightSpread         = 2 // PodTopologySpread with the system default constraints
	weightTaints         = 3 // TaintToleration: PreferNoSchedule taints not tolerated
	weightNodeAffinity   = 2 // NodeAffinity: preferred terms

	// The system default constraints, both ScheduleAnyway.
	hostnameMaxSkew = 3
	zoneMaxSkew     = 5
)

// nonZeroRequests are what kube-scheduler's scoring assumes a container
// asks for when it asks for nothing (k8s.io/kubernetes pkg/scheduler/util:
// DefaultMilliCPURequest, DefaultMemoryRequest). Without them pods with no
// requests score the same everywhere and pile onto one node.
var nonZeroRequests = corev1.ResourceList{
	corev1.ResourceCPU:    *resource.NewMilliQuantity(100, resource.DecimalSI),
	corev1.ResourceMemory: *resource.NewQuantity(200*1024*1024, resource.BinarySI),
}

// spreadOwnerKinds are the controllers whose selector kube-scheduler's
// default topology spreading uses (helper.DefaultSelector: ReplicaSets,
// ReplicationControllers, StatefulSets; Services too, which Petrel leaves
// out so that the count stays an incremental per-node counter).
var spreadOwnerKinds = map[string]bool{"ReplicaSet": true, "ReplicationController": true, "StatefulSet": true}

// spreadGroup is the key of the pods a pod is spread against: its
// controller's UID, standing in for "the pods its controller's selector
// matches". Pods without such a controller are not spread by topology.
func spreadGroup(refs []metav1.OwnerReference) string {
	for _, o := range refs {
		if o.Controller != nil && *o.Controller && spreadOwnerKinds[o.Kind] {
			return string(o.UID)
		}
	}
	return ""
}

// feasible is a node that passed the filters, with its scores before the
// topology spread is normalised across all of them.
type feasible struct {
	st        *nodeState
	resources int32 // weighted LeastAllocated + BalancedAllocation
	hostCount int32 // pods of the candidate's group on the node
	zoneCount int32 // ... in the node's zone, -1 when it has no zone
	spread    int32 // PodTopologySpread's raw score
	taints    int32 // PreferNoSchedule taints the candidate does not tolerate
	affinity  int32 // sum of the weights of the preferred node affinity terms matched
}

// preferences fills the TaintToleration and NodeAffinity raw scores of a
// feasible node; both cost nothing for untainted nodes and for pods with
// no preferred terms, which most are.
func preferences(c *candidate, n *nodeState, f *feasible) {
	if n.tainted {
		for i := range n.node.Spec.Taints {
			t := &n.node.Spec.Taints[i]
			if t.Effect == corev1.TaintEffectPreferNoSchedule &&
				!corev1helpers.TolerationsTolerateTaint(klog.Background(), c.preferNoScheduleTolerations, t, false) {
				f.taints++
			}
		}
	}
	if c.preferred != nil {
		f.affinity = int32(c.preferred.Score(n.node))
	}
}

// leastAllocated is NodeResourcesFit's LeastAllocated score of one
// resource: the share left free once the pod is on the node.
func leastAllocated(requested, allocatable int64) int64 {
	if allocatable == 0 || requested > allocatable {
		return 0
	}
	return (allocatable - requested) * maxNodeScore / allocatable
}

// resourceScore is the weighted NodeResourcesFit (LeastAllocated over CPU
// and memory, non-zero requests) and NodeResourcesBalancedAllocation (one
// minus the deviation of the CPU and memory shares, real requests) scores.
func resourceScore(c *candidate, n *nodeState) int32 {
	fit := (leastAllocated(n.nzCPU+c.nzCPU, n.allocCPU) + leastAllocated(n.nzMemory+c.nzMemory, n.allocMemory)) / 2
	s := weightLeastAllocated * fit
	// BalancedAllocation skips pods that request nothing, as kube-scheduler
	// does (kubernetes#129138): balancing an empty request only favours the
	// nodes already balanced, which is again one node for a burst of them.
	if c.cpu == 0 && c.memory == 0 {
		return int32(s)
	}
	var fractions [2]float64
	k := 0
	for _, r := range [2][2]int64{{n.reqCPU + c.cpu, n.allocCPU}, {n.reqMemory + c.memory, n.allocMemory}} {
		if r[1] == 0 {
			continue
		}
		fractions[k] = min(float64(r[0])/float64(r[1]), 1)
		k++
	}
	std := 0.0
	if k == 2 {
		std = math.Abs(fractions[0]-fractions[1]) / 2
	}
	return int32(s + weightBalanced*int64((1-std)*maxNodeScore))
}

// pickBest adds the normalised topology spread score to each feasible
// node's and returns the best node, ties broken at random as
// kube-scheduler's selectHost does (reservoir sampling): ties broken by scan
// order would send every pod of a burst to the same node.
func pickBest(c *candidate, nodes []feasible, zones int) *nodeState {
	if len(nodes) == 0 {
		return nil
	}
	var minRaw, maxRaw int32 = math.MaxInt32, 0
	if c.group != "" {
		// PodTopologySpread's Score and NormalizeScore with the system
		// default constraints: a node scores the pods of the group in its
		// domain, weighted by log(domains+2), plus maxSkew-1; the
		// fewest-pods node then gets maxNodeScore.
		hostWeight, zoneWeight := math.Log(float64(len(nodes)+2)), math.Log(float64(zones+2))
		for i := range nodes {
			f := &nodes[i]
			raw := float64(f.hostCount)*hostWeight + hostnameMaxSkew - 1
			if f.zoneCount >= 0 {
				raw += float64(f.zoneCount)*zoneWeight + zoneMaxSkew - 1
			}
			f.spread = int32(math.Round(raw))
			minRaw, maxRaw = min(minRaw, f.spread), max(maxRaw, f.spread)
		}
	}
	var maxTaints, maxAffinity int32
	for _, f := range nodes {
		maxTaints, maxAffinity = max(maxTaints, f.taints), max(maxAffinity, f.affinity)
	}
	var best *nodeState
	var bestScore int64 = -1
	ties := 0
	for _, f := range nodes {
		total := int64(f.resources)
		// TaintToleration and NodeAffinity normalised as kube-scheduler's
		// DefaultNormalizeScore: fewest untolerated taints and most
		// preferred weight get maxNodeScore.
		taints := int64(maxNodeScore)
		if maxTaints > 0 {
			taints -= maxNodeScore * int64(f.taints) / int64(maxTaints)
		}
		total += weightTaints * taints
		if maxAffinity > 0 {
			total += weightNodeAffinity * maxNodeScore * int64(f.affinity) / int64(maxAffinity)
		}
		if c.group != "" {
			s := int64(maxNodeScore)
			if maxRaw != 0 {
				s = maxNodeScore * int64(maxRaw+minRaw-f.spread) / int64(maxRaw)
			}
			total += weightSpread * s
		}
		switch {
		case total > bestScore:
			best, bestScore, ties = f.st, total, 1
		case total == bestScore:
			if ties++; rand.IntN(ties) == 0 {
				best = f.st
			}
		}
	}
	return best
}
