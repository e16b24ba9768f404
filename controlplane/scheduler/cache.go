package scheduler

import (
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// podInfo is a pod with what scheduling needs of it computed once.
type podInfo struct {
	pod      *corev1.Pod
	requests corev1.ResourceList
	ports    []string
	owner    string
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	return &podInfo{pod: pod, requests: resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}),
		ports: hostPorts(pod), owner: controllerUID(pod)}
}

func hasAntiAffinity(p *corev1.Pod) bool {
	a := p.Spec.Affinity
	return a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

// candidate is the pod being scheduled with its node matcher built once.
type candidate struct {
	*podInfo
	affinity nodeaffinity.RequiredNodeAffinity
}

func newCandidate(pod *corev1.Pod) *candidate {
	return &candidate{podInfo: newPodInfo(pod), affinity: nodeaffinity.GetRequiredNodeAffinity(pod)}
}

// nodeState is a node and what is placed on it, kept up to date by events
// so that a decision costs a pass over the nodes, not over every pod.
type nodeState struct {
	node         *corev1.Node
	requested    corev1.ResourceList
	pods         map[string]*podInfo
	hostPorts    map[string]int // "proto/ip/port" → pods using it
	owners       map[string]int // controller UID → pods of it
	antiAffinity int            // pods with required anti-affinity terms
}

func newNodeState(node *corev1.Node) *nodeState {
	return &nodeState{node: node, requested: corev1.ResourceList{}, pods: map[string]*podInfo{},
		hostPorts: map[string]int{}, owners: map[string]int{}}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (n *nodeState) add(pi *podInfo) {
	for name, q := range pi.requests {
		cur := n.requested[name]
		cur.Add(q)
		n.requested[name] = cur
	}
	n.pods[podKey(pi.pod)] = pi
	for _, p := range pi.ports {
		n.hostPorts[p]++
	}
	if pi.owner != "" {
		n.owners[pi.owner]++
	}
	if hasAntiAffinity(pi.pod) {
		n.antiAffinity++
	}
}

func (n *nodeState) remove(key string) {
	pi, ok := n.pods[key]
	if !ok {
		return
	}
	delete(n.pods, key)
	for name, q := range pi.requests {
		cur := n.requested[name]
		cur.Sub(q)
		n.requested[name] = cur
	}
	for _, p := range pi.ports {
		if n.hostPorts[p]--; n.hostPorts[p] <= 0 {
			delete(n.hostPorts, p)
		}
	}
	if pi.owner != "" {
		if n.owners[pi.owner]--; n.owners[pi.owner] <= 0 {
			delete(n.owners, pi.owner)
		}
	}
	if hasAntiAffinity(pi.pod) {
		n.antiAffinity--
	}
}

// clusterCache holds every node's state, fed by informer events and by the
// scheduler's own bindings (assumed until the informer shows them).
type clusterCache struct {
	mu      sync.Mutex
	nodes   map[string]*nodeState
	order   []string          // node names, sorted: decisions are repeatable
	podNode map[string]string // pod key → node it counts on
	pending map[string]*podInfo
}

func newClusterCache() *clusterCache {
	return &clusterCache{nodes: map[string]*nodeState{}, podNode: map[string]string{}, pending: map[string]*podInfo{}}
}

func (c *clusterCache) setNode(n *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.nodes[n.Name]; ok {
		st.node = n
		return
	}
	st := newNodeState(n)
	c.nodes[n.Name] = st
	// Pods seen bound to this node before the node itself.
	for key, pi := range c.pending {
		if pi.pod.Spec.NodeName == n.Name {
			st.add(pi)
			c.podNode[key] = n.Name
			delete(c.pending, key)
		}
	}
	c.reorder()
}

func (c *clusterCache) deleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.nodes[name]; ok {
		for key, pi := range st.pods {
			delete(c.podNode, key)
			c.pending[key] = pi
		}
		delete(c.nodes, name)
		c.reorder()
	}
}

func (c *clusterCache) reorder() {
	c.order = c.order[:0]
	for name := range c.nodes {
		c.order = append(c.order, name)
	}
	sort.Strings(c.order)
}

// setPod records a pod bound (or assumed) to its node; terminal pods free
// what they held.
func (c *clusterCache) setPod(p *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := podKey(p)
	c.removeLocked(key)
	if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return
	}
	pi := newPodInfo(p)
	if st, ok := c.nodes[p.Spec.NodeName]; ok {
		st.add(pi)
		c.podNode[key] = p.Spec.NodeName
	} else {
		c.pending[key] = pi
	}
}

func (c *clusterCache) removePod(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(key)
}

func (c *clusterCache) removeLocked(key string) {
	if node, ok := c.podNode[key]; ok {
		if st := c.nodes[node]; st != nil {
			st.remove(key)
		}
		delete(c.podNode, key)
	}
	delete(c.pending, key)
}

// has says whether the pod already counts on a node (bound or assumed).
func (c *clusterCache) has(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.podNode[key]
	return ok
}
