package scheduler

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func node(name string, cpu string, mut func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name, "zone": "z-" + name}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("4Gi"),
				corev1.ResourcePods: resource.MustParse("110")},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		}}
	if mut != nil {
		mut(n)
	}
	return n
}

func podReq(name, cpu string, mut func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}}
	if cpu != "" {
		p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
	if mut != nil {
		mut(p)
	}
	return p
}

func states(nodes ...*corev1.Node) map[string]*nodeState {
	out := map[string]*nodeState{}
	for _, n := range nodes {
		out[n.Name] = newNodeState(n)
	}
	return out
}

func TestFilters(t *testing.T) {
	cases := []struct {
		name   string
		node   *corev1.Node
		placed []*corev1.Pod
		pod    *corev1.Pod
		reason string // empty: fits
	}{
		{"fits", node("a", "2", nil), nil, podReq("p", "1", nil), ""},
		{"not ready", node("a", "2", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }), nil, podReq("p", "", nil), reasonNotReady},
		{"unschedulable", node("a", "2", func(n *corev1.Node) { n.Spec.Unschedulable = true }), nil, podReq("p", "", nil), reasonUnschedulable},
		{"cpu", node("a", "2", nil), []*corev1.Pod{podReq("x", "1500m", nil)}, podReq("p", "1", nil), "Insufficient cpu"},
		{"nodeSelector", node("a", "2", nil), nil, podReq("p", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), reasonSelector},
		{"required node affinity", node("a", "2", nil), nil, podReq("p", "", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"z-b"}}}}}}}}
		}), reasonSelector},
		{"untolerated taint", node("a", "2", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}), nil, podReq("p", "", nil), reasonTaint},
		{"tolerated taint", node("a", "2", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}), nil, podReq("p", "", func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}), ""},
		{"PreferNoSchedule does not filter", node("a", "2", func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule}}
		}), nil, podReq("p", "", nil), ""},
		{"host port taken", node("a", "2", nil), []*corev1.Pod{podReq("x", "", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{HostPort: 8080, ContainerPort: 80}}
		})}, podReq("p", "", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{HostPort: 8080, HostIP: "10.0.0.1", ContainerPort: 80}}
		}), reasonHostPort},
		{"anti-affinity on hostname", node("a", "2", nil), []*corev1.Pod{podReq("x", "", func(p *corev1.Pod) { p.Labels["app"] = "web" })},
			podReq("p", "", func(p *corev1.Pod) {
				p.Labels["app"] = "web"
				p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, TopologyKey: corev1.LabelHostname}}}}
			}), reasonAntiAffinity},
		{"pods limit", node("a", "2", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourcePods] = resource.MustParse("1") }),
			[]*corev1.Pod{podReq("x", "", nil)}, podReq("p", "", nil), "Insufficient pods"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			all := states(c.node)
			for _, p := range c.placed {
				all[c.node.Name].add(newPodInfo(p))
			}
			ok, why := fits(newCandidate(c.pod), all[c.node.Name], all)
			if c.reason == "" && !ok {
				t.Errorf("does not fit: %s", why)
			}
			if c.reason != "" && (ok || !strings.HasPrefix(why, c.reason)) {
				t.Errorf("fits=%v why=%q, want %q", ok, why, c.reason)
			}
		})
	}
}

func TestScoreSpreadsReplicasAndPrefersRoom(t *testing.T) {
	owner := []metav1.OwnerReference{{UID: "rs-1", Controller: ptr.To(true), Kind: "ReplicaSet", Name: "web", APIVersion: "apps/v1"}}
	replica := func(name string) *corev1.Pod {
		return podReq(name, "100m", func(p *corev1.Pod) { p.OwnerReferences = owner })
	}
	// Decisions break ties at random: each case is decided many times.
	decideOn := func(setup func(c *clusterCache), pod *corev1.Pod) map[string]int {
		got := map[string]int{}
		for range 50 {
			s := &Scheduler{cache: newClusterCache()}
			s.cache.setNode(node("a", "4", nil))
			s.cache.setNode(node("b", "4", nil))
			setup(s.cache)
			best, _, _ := s.decide(newCandidate(pod))
			got[best]++
		}
		return got
	}
	place := func(c *clusterCache, p *corev1.Pod, on string) {
		p.Spec.NodeName = on
		c.setPod(p)
	}
	if got := decideOn(func(c *clusterCache) { place(c, replica("r1"), "a") }, replica("r2")); got["b"] != 50 {
		t.Errorf("a second replica should go to the empty node: %v", got)
	}
	if got := decideOn(func(c *clusterCache) { place(c, podReq("big", "3", nil), "a") }, podReq("p", "100m", nil)); got["b"] != 50 {
		t.Errorf("least allocated should win: %v", got)
	}
	// Pods that request nothing still count as 100m and 200Mi.
	if got := decideOn(func(c *clusterCache) { place(c, podReq("x", "", nil), "a") }, podReq("p", "", nil)); got["b"] != 50 {
		t.Errorf("a pod with no requests should count on its node: %v", got)
	}
	// Equal nodes: either may win.
	if got := decideOn(func(*clusterCache) {}, podReq("p", "", nil)); got["a"] == 0 || got["b"] == 0 {
		t.Errorf("ties between equal nodes are always broken the same way: %v", got)
	}
}

func TestCacheAccounting(t *testing.T) {
	c := newClusterCache()
	early := podReq("early", "1", nil)
	early.Spec.NodeName = "a"
	c.setPod(early) // seen before its node
	c.setNode(node("a", "4", nil))
	st := c.nodes["a"]
	if q := st.requested[corev1.ResourceCPU]; q != 1000 || len(st.pods) != 1 || st.reqCPU != 1000 || st.podCount != 1 {
		t.Fatalf("pod seen before its node not counted: %v (summary %+v)", st.requested, st.nodeSummary)
	}
	again := early.DeepCopy()
	c.setPod(again) // the informer confirming an assumed pod: counted once
	if q := st.requested[corev1.ResourceCPU]; q != 1000 {
		t.Errorf("pod counted twice: %d m", q)
	}
	done := early.DeepCopy()
	done.Status.Phase = corev1.PodSucceeded
	c.setPod(done)
	if q := st.requested[corev1.ResourceCPU]; q != 0 || len(st.pods) != 0 || st.reqCPU != 0 || st.podCount != 0 {
		t.Errorf("a finished pod still holds %d m (summary %+v)", q, st.nodeSummary)
	}
	cordoned := node("a", "4", nil)
	cordoned.Spec.Unschedulable = true
	cordoned.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}
	c.setNode(cordoned)
	if !st.unschedulable || !st.tainted || st.allocCPU != 4000 || !st.hasCPU {
		t.Errorf("a node update is not in the summary: %+v", st.nodeSummary)
	}
	if feasibleToFind(50) != 50 || feasibleToFind(1000) != 420 || feasibleToFind(100000) != 5000 {
		t.Errorf("feasibleToFind = %d %d %d", feasibleToFind(50), feasibleToFind(1000), feasibleToFind(100000))
	}
}

func TestCacheKeepsNodesInNameOrder(t *testing.T) {
	c := newClusterCache()
	for _, name := range []string{"m", "c", "x", "a", "p"} {
		c.setNode(node(name, "1", nil))
	}
	c.setNode(node("c", "2", nil)) // an update does not add the node twice
	c.deleteNode("x")
	c.deleteNode("gone")
	var got []string
	for _, st := range c.order {
		got = append(got, st.node.Name)
	}
	if strings.Join(got, ",") != "a,c,m,p" || len(c.nodes) != 4 {
		t.Errorf("order %v, %d nodes", got, len(c.nodes))
	}
}

func TestMayFitMore(t *testing.T) {
	base := node("a", "4", nil)
	for _, tc := range []struct {
		name string
		mut  func(*corev1.Node)
		want bool
	}{
		{"heartbeat only", func(n *corev1.Node) {
			n.Status.Conditions[0].LastHeartbeatTime = metav1.Now()
			n.Status.Images = []corev1.ContainerImage{{Names: []string{"img"}}}
		}, false},
		{"became not ready", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }, true},
		{"cordoned", func(n *corev1.Node) { n.Spec.Unschedulable = true }, true},
		{"taint added", func(n *corev1.Node) { n.Spec.Taints = []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}} }, true},
		{"label added", func(n *corev1.Node) { n.Labels["disk"] = "ssd" }, true},
		{"allocatable grew", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse("8") }, true},
		{"same allocatable written another way", func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse("4000m") }, false},
	} {
		cur := base.DeepCopy()
		tc.mut(cur)
		if got := mayFitMore(base, cur); got != tc.want {
			t.Errorf("%s: mayFitMore = %v, want %v", tc.name, got, tc.want)
		}
	}
}
