package scheduler

import (
	"fmt"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// simNodes builds n nodes shaped like `petrel node --simulate`'s: 32 CPUs,
// 256 GiB, 110 pods, a hostname label and no zone.
func simNodes(c *clusterCache, n int) {
	for i := range n {
		name := fmt.Sprintf("sim-%d", i)
		c.setNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
					corev1.ResourcePods: resource.MustParse("110")},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			}})
	}
}

// placeAll schedules the pods one after the other as the worker does: each
// decision sees the pods assumed by the ones before it.
func placeAll(t *testing.T, s *Scheduler, pods []*corev1.Pod) map[string]int {
	t.Helper()
	per := map[string]int{}
	for _, p := range pods {
		best, _, reasons := s.decide(newCandidate(p))
		if best == "" {
			t.Fatalf("%s fits nowhere: %v", p.Name, reasons)
		}
		placed := p.DeepCopy()
		placed.Spec.NodeName = best
		s.cache.setPod(placed)
		per[best]++
	}
	return per
}

// checkSpread fails when a node holds more than slack pods above the mean
// or any node is left empty.
func checkSpread(t *testing.T, per map[string]int, nodes, pods, slack int) {
	t.Helper()
	mean := float64(pods) / float64(nodes)
	var counts []string
	for name, n := range per {
		counts = append(counts, fmt.Sprintf("%s=%d", name, n))
		if float64(n) > mean+float64(slack) {
			t.Errorf("%s holds %d pods, mean %.1f", name, n, mean)
		}
	}
	sort.Strings(counts)
	if len(per) != nodes {
		t.Errorf("pods on %d of %d nodes: %v", len(per), nodes, counts)
	}
	t.Logf("placement: %v", counts)
}

// TestRequestlessPodsSpread is kube-burner's kubelet-density shape: pods
// that request nothing, 150 of them on 20 nodes. kube-scheduler spreads them
// (non-zero default requests in NodeResourcesFit, random ties, default
// topology spreading for pods of one ReplicaSet); they must not pile onto
// the first nodes by name.
func TestRequestlessPodsSpread(t *testing.T) {
	const nodes, pods = 20, 150
	rs := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "density", UID: types.UID("rs-uid"), Controller: ptr.To(true)}}
	for _, tc := range []struct {
		name  string
		owner []metav1.OwnerReference
	}{{"bare pods", nil}, {"one ReplicaSet", rs}} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Scheduler{cache: newClusterCache()}
			simNodes(s.cache, nodes)
			var list []*corev1.Pod
			for i := range pods {
				list = append(list, podReq(fmt.Sprintf("density-%d", i), "", func(p *corev1.Pod) {
					p.OwnerReferences = tc.owner
					p.Spec.Containers[0].Image = "registry.k8s.io/pause:3.10"
				}))
			}
			checkSpread(t, placeAll(t, s, list), nodes, pods, 3)
		})
	}
}

// BenchmarkDecide is one decision on 1,000 nodes holding 20,000 pods of
// 200 ReplicaSets spread over three zones.
func BenchmarkDecide(b *testing.B) {
	s := &Scheduler{cache: newClusterCache()}
	for i := range 1000 {
		name := fmt.Sprintf("n-%d", i)
		s.cache.setNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{corev1.LabelHostname: name, corev1.LabelTopologyZone: fmt.Sprintf("z-%d", i%3)}},
			Status: corev1.NodeStatus{
				Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("256Gi"),
					corev1.ResourcePods: resource.MustParse("110")},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			}})
	}
	owner := func(i int) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID(fmt.Sprint("rs-", i%200)), Controller: ptr.To(true)}}
	}
	for i := range 20000 {
		p := podReq(fmt.Sprintf("p-%d", i), "", func(p *corev1.Pod) { p.OwnerReferences = owner(i) })
		p.Spec.NodeName = fmt.Sprintf("n-%d", i%1000)
		s.cache.setPod(p)
	}
	cand := newCandidate(podReq("new", "", func(p *corev1.Pod) { p.OwnerReferences = owner(7) }))
	b.ResetTimer()
	for b.Loop() {
		if best, _, _ := s.decide(cand); best == "" {
			b.Fatal("no node")
		}
	}
}

// TestReplicasSpreadAcrossZones: with one replica in zone a, the next goes
// to the empty node of zone b rather than the empty node of zone a, as the
// default zone constraint (maxSkew 5, ScheduleAnyway) scores it.
func TestReplicasSpreadAcrossZones(t *testing.T) {
	rs := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-web", Controller: ptr.To(true)}}
	zoned := func(name, zone string) *corev1.Node {
		return node(name, "4", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = zone })
	}
	for range 20 {
		s := &Scheduler{cache: newClusterCache()}
		for _, n := range []*corev1.Node{zoned("a1", "a"), zoned("a2", "a"), zoned("b1", "b")} {
			s.cache.setNode(n)
		}
		first := podReq("web-1", "", func(p *corev1.Pod) { p.OwnerReferences = rs })
		first.Spec.NodeName = "a1"
		s.cache.setPod(first)
		if best, _, _ := s.decide(newCandidate(podReq("web-2", "", func(p *corev1.Pod) { p.OwnerReferences = rs }))); best != "b1" {
			t.Fatalf("second replica on %s, want b1 (the other zone)", best)
		}
	}
}

// TestZoneCountsFollowPodsAndNodes checks the incremental per-zone counts
// against what a recount would give.
func TestZoneCountsFollowPodsAndNodes(t *testing.T) {
	rs := []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs-web", Controller: ptr.To(true)}}
	c := newClusterCache()
	zoned := func(name, zone string) *corev1.Node {
		return node(name, "4", func(n *corev1.Node) { n.Labels[corev1.LabelTopologyZone] = zone })
	}
	c.setNode(zoned("a1", "a"))
	c.setNode(zoned("b1", "b"))
	for i, on := range []string{"a1", "a1", "b1"} {
		p := podReq(fmt.Sprint("web-", i), "", func(p *corev1.Pod) { p.OwnerReferences = rs })
		p.Spec.NodeName = on
		c.setPod(p)
	}
	count := func(zone string) int {
		counts := c.groupZones["rs-web"]
		if id := c.zoneIDs[zone]; id < len(counts) {
			return counts[id]
		}
		return 0
	}
	if count("a") != 2 || count("b") != 1 {
		t.Fatalf("zone counts a=%d b=%d, want 2 and 1", count("a"), count("b"))
	}
	c.setNode(zoned("a1", "b")) // relabelled: its pods move with it
	if count("a") != 0 || count("b") != 3 {
		t.Errorf("after relabel a=%d b=%d, want 0 and 3", count("a"), count("b"))
	}
	c.removePod("default/web-2")
	c.deleteNode("a1")
	if _, ok := c.groupZones["rs-web"]; ok {
		t.Errorf("counts left after every pod went: %v", c.groupZones)
	}
}

// TestScorePreferences: PreferNoSchedule taints and preferred node affinity
// weigh as TaintToleration (3) and NodeAffinity (2) do in the default
// profile.
func TestScorePreferences(t *testing.T) {
	soft := func(n *corev1.Node) {
		n.Spec.Taints = []corev1.Taint{{Key: "spot", Value: "true", Effect: corev1.TaintEffectPreferNoSchedule}}
	}
	decide := func(a *corev1.Node, pod *corev1.Pod) map[string]int {
		got := map[string]int{}
		for range 50 {
			s := &Scheduler{cache: newClusterCache()}
			s.cache.setNode(a)
			s.cache.setNode(node("b", "4", nil))
			best, _, _ := s.decide(newCandidate(pod))
			got[best]++
		}
		return got
	}
	if got := decide(node("a", "4", soft), podReq("p", "", nil)); got["b"] != 50 {
		t.Errorf("a PreferNoSchedule taint should send pods elsewhere: %v", got)
	}
	tolerant := podReq("p", "", func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "spot", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectPreferNoSchedule}}
	})
	if got := decide(node("a", "4", soft), tolerant); got["a"] == 0 || got["b"] == 0 {
		t.Errorf("a tolerated taint should not count: %v", got)
	}
	prefers := podReq("p", "", func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{
			Weight: 10, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"z-a"}}}}}}}}
	})
	if got := decide(node("a", "4", nil), prefers); got["a"] != 50 {
		t.Errorf("preferred node affinity should win: %v", got)
	}
}
