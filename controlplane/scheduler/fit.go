package scheduler

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
)

// hostPorts are the "protocol/hostIP/port" keys of the host ports the pod
// holds on its node, as the NodePorts filter sees them, with two additions
// that make the scheduler agree with what Petrel's node does:
//   - init containers' ports (sidecars'): the node's proxy serves their
//     hostPorts too, so two pods that clash through one are never placed
//     together;
//   - a hostNetwork pod's containerPort when hostPort is unset: Kubernetes'
//     API defaulting sets hostPort to containerPort for such pods, and the
//     process binds that port on the node itself whatever the spec says.
//
// An empty or unspecified hostIP is 0.0.0.0, which clashes with every IP.
func hostPorts(pod *corev1.Pod) []string {
	var out []string
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, p := range c.Ports {
				port := p.HostPort
				if port == 0 && pod.Spec.HostNetwork {
					port = p.ContainerPort
				}
				if port <= 0 {
					continue
				}
				ip := p.HostIP
				if a, err := netip.ParseAddr(ip); ip == "" || (err == nil && a.IsUnspecified()) {
					ip = "0.0.0.0"
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out = append(out, fmt.Sprintf("%s/%s/%d", proto, ip, port))
			}
		}
	}
	return out
}

// Reasons a node does not fit, in the words `kubectl describe` users know.
const (
	reasonNotReady      = "node(s) were not ready"
	reasonUnschedulable = "node(s) were unschedulable"
	reasonSelector      = "node(s) didn't match Pod's node affinity/selector"
	reasonTaint         = "node(s) had untolerated taint"
	reasonHostPort      = "node(s) didn't have free ports for the requested pod ports"
	reasonAntiAffinity  = "node(s) didn't match pod anti-affinity rules"
	reasonAffinity      = "node(s) didn't match pod affinity rules"
)

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// fits says whether the candidate can go on n, and if not, why.
func fits(c *candidate, n *nodeState, all map[string]*nodeState) (bool, string) {
	pod := c.pod
	node := n.node
	if !n.ready {
		return false, reasonNotReady
	}
	if n.unschedulable && !toleratesUnschedulable(pod) {
		return false, reasonUnschedulable
	}
	if c.needsAffinity {
		if ok, _ := c.affinity.Match(node); !ok {
			return false, reasonSelector
		}
	}
	noScheduleOrExecute := func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}
	if n.tainted {
		if taint, bad := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, noScheduleOrExecute, false); bad {
			return false, reasonTaint + " {" + taint.Key + ": " + taint.Value + "}"
		}
	}
	if len(c.volumeNodes) > 0 && !volumesFit(c, node) {
		return false, reasonVolumeNode
	}
	for _, p := range c.ports {
		if n.hostPorts[p] > 0 || wildcardConflict(p, n.hostPorts) {
			return false, reasonHostPort
		}
	}
	if r := insufficient(c, n); r != "" {
		return false, "Insufficient " + r
	}
	if c.podAffinity || n.antiAffinity > 0 {
		if ok, why := interPodAffinity(pod, n, all); !ok {
			return false, why
		}
	}
	return true, ""
}

func toleratesUnschedulable(pod *corev1.Pod) bool {
	for _, t := range pod.Spec.Tolerations {
		if (t.Key == corev1.TaintNodeUnschedulable || t.Key == "") && (t.Effect == corev1.TaintEffectNoSchedule || t.Effect == "") &&
			(t.Operator == corev1.TolerationOpExists || t.Key == corev1.TaintNodeUnschedulable) {
			return true
		}
	}
	return false
}

// wildcardConflict: a port on 0.0.0.0 clashes with the same port on any IP.
func wildcardConflict(p string, used map[string]int) bool {
	parts := strings.SplitN(p, "/", 3)
	for u := range used {
		up := strings.SplitN(u, "/", 3)
		if up[0] == parts[0] && up[2] == parts[2] && (up[1] == "0.0.0.0" || parts[1] == "0.0.0.0") {
			return true
		}
	}
	return false
}

// insufficient names the first resource the node lacks for the candidate,
// or "".
func insufficient(c *candidate, n *nodeState) string {
	if n.hasPods && int64(n.podCount+1)*1000 > n.allocPods {
		return "pods"
	}
	for i, name := range c.requestNames {
		have, ok, used := n.amounts(name)
		if !ok || used+c.requestAmounts[i] > have {
			return string(name)
		}
	}
	return ""
}

// interPodAffinity checks required pod affinity and anti-affinity on their
// topology keys, both the incoming pod's terms and existing pods'
// anti-affinity against it.
func interPodAffinity(pod *corev1.Pod, n *nodeState, all map[string]*nodeState) (bool, string) {
	sameDomain := func(key string) []*corev1.Pod {
		value, ok := n.node.Labels[key]
		if !ok {
			return nil
		}
		var out []*corev1.Pod
		for _, other := range all {
			if other.node.Labels[key] == value {
				for _, pi := range other.pods {
					out = append(out, pi.pod)
				}
			}
		}
		return out
	}
	matches := func(term corev1.PodAffinityTerm, owner, candidate *corev1.Pod) bool {
		sel, err := metav1LabelSelector(term)
		if err != nil {
			return false
		}
		nss := term.Namespaces
		if len(nss) == 0 && term.NamespaceSelector == nil {
			nss = []string{owner.Namespace}
		}
		inNS := term.NamespaceSelector != nil && len(nss) == 0
		for _, ns := range nss {
			if ns == candidate.Namespace {
				inNS = true
			}
		}
		return inNS && sel.Matches(labels.Set(candidate.Labels))
	}
	if a := pod.Spec.Affinity; a != nil {
		if a.PodAntiAffinity != nil {
			for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				for _, other := range sameDomain(term.TopologyKey) {
					if matches(term, pod, other) {
						return false, reasonAntiAffinity
					}
				}
			}
		}
		if a.PodAffinity != nil {
			for _, term := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				found := false
				for _, other := range sameDomain(term.TopologyKey) {
					if matches(term, pod, other) {
						found = true
						break
					}
				}
				// The first pod of a group that selects itself may go anywhere.
				if !found && !(matches(term, pod, pod) && noneAnywhere(term, pod, all, matches)) {
					return false, reasonAffinity
				}
			}
		}
	}
	for _, pi := range n.pods {
		other := pi.pod
		if other.Spec.Affinity == nil || other.Spec.Affinity.PodAntiAffinity == nil {
			continue
		}
		for _, term := range other.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if _, ok := n.node.Labels[term.TopologyKey]; ok && matches(term, other, pod) {
				return false, reasonAntiAffinity
			}
		}
	}
	return true, ""
}

func noneAnywhere(term corev1.PodAffinityTerm, pod *corev1.Pod, all map[string]*nodeState, matches func(corev1.PodAffinityTerm, *corev1.Pod, *corev1.Pod) bool) bool {
	for _, n := range all {
		for _, pi := range n.pods {
			if matches(term, pod, pi.pod) {
				return false
			}
		}
	}
	return true
}

func metav1LabelSelector(term corev1.PodAffinityTerm) (labels.Selector, error) {
	if term.LabelSelector == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(term.LabelSelector)
}
