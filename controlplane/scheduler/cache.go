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
	// nzCPU and nzMemory are the requests with kube-scheduler's defaults
	// for containers that ask for none: what scoring counts.
	nzCPU, nzMemory int64
	ports           []string
	group           string // see spreadGroup
}

func newPodInfo(pod *corev1.Pod) *podInfo {
	req := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	milli := make(map[corev1.ResourceName]int64, len(req))
	for name, q := range req {
		milli[name] = q.MilliValue()
	}
	nz := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{NonMissingContainerRequests: nonZeroRequests})
	return &podInfo{pod: pod, requests: milli, nzCPU: nz.Cpu().MilliValue(), nzMemory: nz.Memory().MilliValue(),
		ports: hostPorts(pod), group: spreadGroup(pod.OwnerReferences)}
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
	cpu, memory    int64                 // requests, for BalancedAllocation
	podAffinity    bool                  // inter-pod (anti-)affinity terms of its own
	// preferred are its preferred node affinity terms, nil if none.
	preferred *nodeaffinity.PreferredSchedulingTerms
	// preferNoScheduleTolerations are its tolerations that can tolerate
	// a PreferNoSchedule taint, as TaintToleration's PreScore keeps them.
	preferNoScheduleTolerations []corev1.Toleration
	// volumeNodes are the node affinities of its bound volumes.
	volumeNodes []*nodeaffinity.LazyErrorNodeSelector
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
	if a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		// Terms that do not parse score nothing, as Kubernetes' validation
		// would have refused them.
		if terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution); err == nil {
			c.preferred = terms
		}
	}
	for _, t := range pod.Spec.Tolerations {
		if t.Effect == "" || t.Effect == corev1.TaintEffectPreferNoSchedule {
			c.preferNoScheduleTolerations = append(c.preferNoScheduleTolerations, t)
		}
	}
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
	groups       map[string]int // spread group → pods of it
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
	nzCPU, nzMemory               int64 // milli-units, non-zero requests
	podCount                      int
	zone                          string // topology.kubernetes.io/zone
	zoneID                        int    // the cache's number for zone; 0: none
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
		hostPorts: map[string]int{}, groups: map[string]int{}}
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
	n.zone = node.Labels[corev1.LabelTopologyZone]
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

func (n *nodeState) add(pi *podInfo) {
	for name, q := range pi.requests {
		n.requested[name] += q
	}
	n.reqCPU, n.reqMemory = n.requested[corev1.ResourceCPU], n.requested[corev1.ResourceMemory]
	n.nzCPU, n.nzMemory = n.nzCPU+pi.nzCPU, n.nzMemory+pi.nzMemory
	n.pods[podKey(pi.pod)] = pi
	n.podCount = len(n.pods)
	for _, p := range pi.ports {
		n.hostPorts[p]++
	}
	if pi.group != "" {
		n.groups[pi.group]++
	}
	if hasAntiAffinity(pi.pod) {
		n.antiAffinity++
	}
}

// remove takes the pod off the node and returns it, or nil if it was not
// there.
func (n *nodeState) remove(key string) *podInfo {
	pi, ok := n.pods[key]
	if !ok {
		return nil
	}
	delete(n.pods, key)
	n.podCount = len(n.pods)
	for name, q := range pi.requests {
		n.requested[name] -= q
	}
	n.reqCPU, n.reqMemory = n.requested[corev1.ResourceCPU], n.requested[corev1.ResourceMemory]
	n.nzCPU, n.nzMemory = n.nzCPU-pi.nzCPU, n.nzMemory-pi.nzMemory
	for _, p := range pi.ports {
		if n.hostPorts[p]--; n.hostPorts[p] <= 0 {
			delete(n.hostPorts, p)
		}
	}
	if pi.group != "" {
		if n.groups[pi.group]--; n.groups[pi.group] <= 0 {
			delete(n.groups, pi.group)
		}
	}
	if hasAntiAffinity(pi.pod) {
		n.antiAffinity--
	}
	return pi
}

// clusterCache holds every node's state, fed by informer events and by the
// scheduler's own bindings (assumed until the informer shows them).
type clusterCache struct {
	mu      sync.Mutex
	nodes   map[string]*nodeState
	order   []*nodeState      // by node name: decisions are repeatable
	podNode map[string]string // pod key → node it counts on
	pending map[string]*podInfo
	// zoneIDs numbers the zones seen, from 1, so that per-zone counts are
	// slices: a decision reads one per node it passes.
	zoneIDs map[string]int
	// groupZones counts the pods of each spread group in each zone (by
	// zone number), kept as pods come and go so that the default zone
	// spreading costs an index per node, not a pass over every pod.
	groupZones map[string][]int
}

func newClusterCache() *clusterCache {
	return &clusterCache{nodes: map[string]*nodeState{}, podNode: map[string]string{}, pending: map[string]*podInfo{},
		zoneIDs: map[string]int{}, groupZones: map[string][]int{}}
}

// place counts the pod on the node.
func (c *clusterCache) place(st *nodeState, pi *podInfo) {
	st.add(pi)
	c.podNode[podKey(pi.pod)] = st.node.Name
	c.countZone(st.zoneID, pi.group, 1)
}

func (c *clusterCache) countZone(zoneID int, group string, delta int) {
	if zoneID == 0 || group == "" {
		return
	}
	counts := c.groupZones[group]
	if len(counts) <= zoneID {
		counts = append(counts, make([]int, zoneID+1-len(counts))...)
	}
	counts[zoneID] += delta
	for _, n := range counts {
		if n > 0 {
			c.groupZones[group] = counts
			return
		}
	}
	delete(c.groupZones, group)
}

// numberZone gives the node's zone its number.
func (c *clusterCache) numberZone(st *nodeState) {
	st.zoneID = 0
	if st.zone == "" {
		return
	}
	id, ok := c.zoneIDs[st.zone]
	if !ok {
		id = len(c.zoneIDs) + 1
		c.zoneIDs[st.zone] = id
	}
	st.zoneID = id
}

func (c *clusterCache) setNode(n *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st, ok := c.nodes[n.Name]; ok {
		old := st.zoneID
		st.setNode(n)
		c.numberZone(st)
		if st.zoneID != old {
			for group, count := range st.groups {
				c.countZone(old, group, -count)
				c.countZone(st.zoneID, group, count)
			}
		}
		return
	}
	st := newNodeState(n)
	c.numberZone(st)
	c.nodes[n.Name] = st
	// Pods seen bound to this node before the node itself.
	for key, pi := range c.pending {
		if pi.pod.Spec.NodeName == n.Name {
			c.place(st, pi)
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
			c.countZone(st.zoneID, pi.group, -1)
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
		c.place(st, pi)
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
			if pi := st.remove(key); pi != nil {
				c.countZone(st.zoneID, pi.group, -1)
			}
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
