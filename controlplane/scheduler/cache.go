package scheduler

import (
	"slices"
	"sort"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// podInfo is a pod with what scheduling needs of it computed once;
// requests are in milli-units, as plain integers are cheap to add up.
type podInfo struct {
	pod      *corev1.Pod
	requests map[corev1.ResourceName]int64
	ports    []string
	owner    string
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	milli := make(map[corev1.ResourceName]int64, len(req))
	for name, q := range req {
		milli[name] = q.MilliValue()
	}
	return &podInfo{pod: pod, requests: milli, ports: hostPorts(pod), owner: controllerUID(pod)}
}

func hasAntiAffinity(p *corev1.Pod) bool {
	a := p.Spec.Affinity
	return a != nil && a.PodAntiAffinity != nil && len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0
}

// candidate is the pod being scheduled with what every node check needs
// computed once: decisions look at hundreds of nodes.
type candidate struct {
	*podInfo
	affinity       nodeaffinity.RequiredNodeAffinity
	needsAffinity  bool                  // a nodeSelector or required node affinity to match
	requestNames   []corev1.ResourceName // non-zero requests, sorted
	requestAmounts []int64               // their amounts, in the same order
	cpu, memory    int64                 // requests, for scoring
	podAffinity    bool                  // inter-pod (anti-)affinity terms of its own
}

func newCandidate(pod *corev1.Pod) *candidate {
	c := &candidate{podInfo: newPodInfo(pod), affinity: nodeaffinity.GetRequiredNodeAffinity(pod)}
	a := pod.Spec.Affinity
	c.needsAffinity = len(pod.Spec.NodeSelector) > 0 || (a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil)
	c.podAffinity = a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil)
	for name, q := range c.requests {
		if q != 0 {
			c.requestNames = append(c.requestNames, name)
		}
	}
	sort.Slice(c.requestNames, func(i, j int) bool { return c.requestNames[i] < c.requestNames[j] })
	for _, name := range c.requestNames {
		c.requestAmounts = append(c.requestAmounts, c.requests[name])
	}
	c.cpu, c.memory = c.requests[corev1.ResourceCPU], c.requests[corev1.ResourceMemory]
	return c
}

// nodeState is a node and what is placed on it, kept up to date by events
// so that a decision costs a pass over the nodes, not over every pod.
type nodeState struct {
	nodeSummary
	node         *corev1.Node
	allocatable  map[corev1.ResourceName]int64 // milli-units
	requested    map[corev1.ResourceName]int64 // milli-units
	pods         map[string]*podInfo
	hostPorts    map[string]int // "proto/ip/port" → pods using it
	owners       map[string]int // controller UID → pods of it
	antiAffinity int            // pods with required anti-affinity terms
}

// nodeSummary is what a decision reads of every node it passes, copied out
// of the Node object and the resource maps: at a thousand nodes a
// decision's filter spent most of its time on cache misses following those
// pointers, not on the checks themselves.
type nodeSummary struct {
	ready, unschedulable, tainted bool
	hasCPU, hasMemory, hasPods    bool
	allocCPU, allocMemory         int64 // milli-units
	allocPods                     int64 // milli-units, as the map holds them
	reqCPU, reqMemory             int64 // milli-units
	podCount                      int
}

// amounts is the node's allocatable amount of a resource, whether it has
// any, and how much its pods request.
func (n *nodeState) amounts(name corev1.ResourceName) (have int64, ok bool, used int64) {
	switch name {
	case corev1.ResourceCPU:
		return n.allocCPU, n.hasCPU, n.reqCPU
	case corev1.ResourceMemory:
		return n.allocMemory, n.hasMemory, n.reqMemory
	}
	have, ok = n.allocatable[name]
	return have, ok, n.requested[name]
}

func newNodeState(node *corev1.Node) *nodeState {
	n := &nodeState{requested: map[corev1.ResourceName]int64{}, pods: map[string]*podInfo{},
		hostPorts: map[string]int{}, owners: map[string]int{}}
	n.setNode(node)
	return n
}

// setNode takes a new version of the node, with what checks read of it
// computed once.
func (n *nodeState) setNode(node *corev1.Node) {
	n.node, n.ready = node, nodeReady(node)
	n.unschedulable, n.tainted = node.Spec.Unschedulable, len(node.Spec.Taints) > 0
	n.allocatable = make(map[corev1.ResourceName]int64, len(node.Status.Allocatable))
	for name, q := range node.Status.Allocatable {
		n.allocatable[name] = q.MilliValue()
	}
	n.allocCPU, n.hasCPU = n.allocatable[corev1.ResourceCPU]
	n.allocMemory, n.hasMemory = n.allocatable[corev1.ResourceMemory]
	n.allocPods, n.hasPods = n.allocatable[corev1.ResourcePods]
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (n *nodeState) add(pi *podInfo) {
	for name, q := range pi.requests {
		n.requested[name] += q
	}
	n.reqCPU, n.reqMemory = n.requested[corev1.ResourceCPU], n.requested[corev1.ResourceMemory]
	n.pods[podKey(pi.pod)] = pi
	n.podCount = len(n.pods)
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
	n.podCount = len(n.pods)
	for name, q := range pi.requests {
		n.requested[name] -= q
	}
	n.reqCPU, n.reqMemory = n.requested[corev1.ResourceCPU], n.requested[corev1.ResourceMemory]
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
	order   []*nodeState      // by node name: decisions are repeatable
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
		st.setNode(n)
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
	i, _ := slices.BinarySearchFunc(c.order, n.Name, byName)
	c.order = slices.Insert(c.order, i, st)
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
		if i, found := slices.BinarySearchFunc(c.order, name, byName); found {
			c.order = slices.Delete(c.order, i, i+1)
		}
	}
}

// byName orders the nodes of clusterCache.order: by name, so that the place
// a decision starts from means the same node from one decision to the next.
func byName(st *nodeState, name string) int { return strings.Compare(st.node.Name, name) }

// setPod records a pod bound (or assumed) to its node; terminal pods free
// what they held.
func (c *clusterCache) setPod(p *corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := podKey(p)
	terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	// Status updates of a placed pod are most events: what it requests
	// and where it sits do not change, so only the object is swapped.
	if node, ok := c.podNode[key]; ok && node == p.Spec.NodeName && !terminal {
		if pi := c.nodes[node].pods[key]; pi != nil {
			pi.pod = p
			return
		}
	}
	c.removeLocked(key)
	if p.Spec.NodeName == "" || terminal {
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
