// Package policy enforces Kubernetes NetworkPolicies in the node's BPF
// programs (bpf/include/policy.h), in Cilium's shape: each distinct pair of
// namespace and pod labels is a numeric security identity; the ipcache maps
// every pod address of the cluster (and the node's own addresses) to one;
// each isolated pod of this node has policy entries keyed by peer identity,
// direction, protocol and port. The Engine keeps the desired state as
// objects change, recomputing only what each change reaches, and names the
// keys it changed; Compute makes the same state from nothing (pure,
// table-tested, the reference the Engine is tested against); the Writer
// turns the difference from what the maps hold into ordered updates.
package policy

import (
	"fmt"
	"hash/fnv"
	"iter"
	"net/netip"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Identity ranges: pods get [FirstPodIdentity, FirstCIDRIdentity), ipBlock
// prefixes [FirstCIDRIdentity, 1<<31). Below FirstPodIdentity are the
// reserved ones (bpfobj.IdentityAny, IdentityHost, IdentityWorld).
const (
	FirstPodIdentity  = 256
	FirstCIDRIdentity = 1 << 24
	lastIdentity      = 1 << 31
)

// podIdentityEnd ends the range pod identities are hashed into; tests
// shrink it to make collisions common.
var podIdentityEnd uint32 = FirstCIDRIdentity

// Port prefix lengths of an Entry (bits of the port that count).
const (
	// AnyProtocol: every protocol and port (a rule without ports).
	AnyProtocol = -1
	// AnyPort: every port of the protocol (a port entry without a port).
	AnyPort = 0
	// ExactPort: the one port.
	ExactPort = 16
)

// Entry is one thing a local pod allows: a peer identity (bpfobj.IdentityAny
// for every peer), a direction, and a protocol and port range as a prefix
// (PortBits of the port count; AnyProtocol ignores Proto too).
type Entry struct {
	Pod      netip.Addr
	Identity uint32
	Dir      uint8
	Proto    uint8
	Port     uint16
	PortBits int8
}

func (e Entry) String() string {
	dir := "ingress"
	if e.Dir == bpfobj.DirEgress {
		dir = "egress"
	}
	port := "any"
	switch {
	case e.PortBits == AnyProtocol:
		return fmt.Sprintf("%s %s id=%d any", e.Pod, dir, e.Identity)
	case e.PortBits == ExactPort:
		port = fmt.Sprint(e.Port)
	case e.PortBits > 0:
		port = fmt.Sprintf("%d-%d", e.Port, uint32(e.Port)+(1<<(16-e.PortBits))-1)
	}
	return fmt.Sprintf("%s %s id=%d %s/%s", e.Pod, dir, e.Identity, protoName(e.Proto), port)
}

// Key is the entry as petrel_policy holds it.
func (e Entry) Key() bpfobj.PolicyKey {
	k := bpfobj.PolicyKey{EpAddr: bpfobj.AddrKey(e.Pod), Identity: e.Identity, Dir: e.Dir}
	if e.PortBits == AnyProtocol {
		k.Prefixlen = bpfobj.PolicyPrefixAnyProto
		return k
	}
	k.Proto = e.Proto
	k.Prefixlen = bpfobj.PolicyPrefixAnyPort + uint32(e.PortBits)
	if e.PortBits > 0 {
		k.Dport = bpfobj.PortKey(e.Port &^ (1<<(16-e.PortBits) - 1))
	}
	return k
}

// EntryOf reads a petrel_policy key back.
func EntryOf(k bpfobj.PolicyKey) Entry {
	e := Entry{Pod: bpfobj.AddrOf(k.EpAddr), Identity: k.Identity, Dir: k.Dir}
	if k.Prefixlen <= bpfobj.PolicyPrefixAnyProto {
		e.PortBits = AnyProtocol
		return e
	}
	e.Proto = k.Proto
	e.PortBits = int8(k.Prefixlen - bpfobj.PolicyPrefixAnyPort)
	e.Port = bpfobj.PortOf(k.Dport)
	return e
}

// Endpoint is a local pod's isolation.
type Endpoint struct {
	Identity uint32
	Flags    uint8 // bpfobj.EndpointIngressIsolated | EndpointEgressIsolated
}

// Desired is what the maps should hold.
type Desired struct {
	// IPCache: pod addresses (/32) and the node's own (bpfobj.IdentityHost).
	IPCache map[netip.Prefix]uint32
	// CIDR: the prefixes of ipBlocks, excepts included.
	CIDR map[netip.Prefix]uint32
	// Endpoints: local pods some policy isolates.
	Endpoints map[netip.Addr]Endpoint
	// Entries: what isolated local pods allow.
	Entries map[Entry]struct{}
	// Labels names each pod identity ("ns" plus sorted labels), for people.
	Labels map[uint32]string
}

// Input is what the engine reads: the caches' objects and the node.
type Input struct {
	NodeName string
	// HostAddrs are the node's own addresses: always allowed.
	HostAddrs  []netip.Addr
	Pods       []*corev1.Pod
	Namespaces []*corev1.Namespace
	Policies   []*networkingv1.NetworkPolicy
	// Cache, when set, keeps converted label selectors from one Compute to
	// the next (the informers' objects are immutable, so a selector's
	// address names its content); nil converts them afresh.
	Cache *Cache
}

// Cache carries what one Compute can hand the next: the conversions of
// the selectors of objects that are still there.
type Cache struct {
	selectors map[*metav1.LabelSelector]labels.Selector
	listKeys  map[*networkingv1.NetworkPolicyPeer]string
	// entries is how many entries the last Compute found: the next one's
	// map starts that big instead of growing to it.
	entries int
}

// NewCache is an empty Cache.
func NewCache() *Cache {
	return &Cache{selectors: map[*metav1.LabelSelector]labels.Selector{}, listKeys: map[*networkingv1.NetworkPolicyPeer]string{}}
}

// identityInfo is one pod identity: its namespace, labels and pods.
type identityInfo struct {
	id     uint32
	ns     string
	labels labels.Set
	pods   []*corev1.Pod
}

// labelKey is the canonical string of a namespace and label set.
func labelKey(ns string, l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(ns)
	for _, k := range keys {
		b.WriteString("\x00" + k + "=" + l[k])
	}
	return b.String()
}

// hashIdentity is where a key's identity is looked for first in [lo, hi):
// a hash, so that identities are the same on every node and across
// restarts without an allocator (collisions probe upward).
func hashIdentity(key string, lo, hi uint32) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return lo + h.Sum32()%(hi-lo)
}

// allocate gives each key an identity in [lo, hi), in sorted key order so
// that collisions resolve the same way wherever the same keys are seen.
func allocate(keys []string, lo, hi uint32) map[string]uint32 {
	sort.Strings(keys)
	taken := map[uint32]bool{}
	out := make(map[string]uint32, len(keys))
	for _, k := range keys {
		if uint32(len(taken)) >= hi-lo {
			break // the range is full (2^24 label sets): the rest get none
		}
		id := hashIdentity(k, lo, hi)
		for taken[id] {
			id++
			if id >= hi {
				id = lo
			}
		}
		taken[id] = true
		out[k] = id
	}
	return out
}

// podIP is the pod's IPv4 address, invalid when it has none (or uses the
// host's network, whose address is the node's).
func podIP(p *corev1.Pod) netip.Addr {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return netip.Addr{}
	}
	for _, ip := range p.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil && a.Is4() {
			return a
		}
	}
	if a, err := netip.ParseAddr(p.Status.PodIP); err == nil && a.Is4() {
		return a
	}
	return netip.Addr{}
}

// podKey names a pod: the order in which pods claiming the same address
// are ranked.
func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// addressOwners are the pods that have an address, one per address: when
// two claim one (a deleted pod still in the cache while its address is
// reused), the smaller namespace/name wins, so every node and the
// incremental Engine pick the same one.
func addressOwners(pods []*corev1.Pod) []*corev1.Pod {
	owner := make(map[netip.Addr]*corev1.Pod, len(pods))
	for _, p := range pods {
		a := podIP(p)
		if !a.IsValid() {
			continue
		}
		if o, ok := owner[a]; !ok || podKey(p) < podKey(o) {
			owner[a] = p
		}
	}
	out := make([]*corev1.Pod, 0, len(owner))
	for _, p := range owner {
		out = append(out, p)
	}
	return out
}

// Compute is the desired state of the maps for one node, from nothing: the
// reference the incremental Engine is tested against, and what tools that
// read the maps use to name identities.
func Compute(in Input) *Desired {
	cache := in.Cache
	if cache == nil {
		cache = NewCache()
	}
	d := &Desired{IPCache: make(map[netip.Prefix]uint32, len(in.Pods)+len(in.HostAddrs)), CIDR: map[netip.Prefix]uint32{},
		Endpoints: map[netip.Addr]Endpoint{}, Entries: make(map[Entry]struct{}, cache.entries), Labels: map[uint32]string{}}

	// Pod identities.
	pods := addressOwners(in.Pods)
	byKey := map[string]*identityInfo{}
	for _, p := range pods {
		k := labelKey(p.Namespace, p.Labels)
		info := byKey[k]
		if info == nil {
			info = &identityInfo{ns: p.Namespace, labels: labels.Set(p.Labels)}
			byKey[k] = info
		}
		info.pods = append(info.pods, p)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	ids := allocate(keys, FirstPodIdentity, podIdentityEnd)
	idents := make([]*identityInfo, 0, len(byKey))
	for k, info := range byKey {
		info.id = ids[k]
		idents = append(idents, info)
		d.Labels[info.id] = strings.ReplaceAll(k, "\x00", " ")
		for _, p := range info.pods {
			d.IPCache[netip.PrefixFrom(podIP(p), 32)] = info.id
		}
	}
	sort.Slice(idents, func(i, j int) bool { return idents[i].id < idents[j].id })
	for _, a := range in.HostAddrs {
		if a.Is4() {
			d.IPCache[netip.PrefixFrom(a, 32)] = bpfobj.IdentityHost
		}
	}

	// ipBlock prefixes.
	prefixSet := map[string]netip.Prefix{}
	for _, np := range in.Policies {
		for _, peer := range allPeers(np) {
			if peer.IPBlock == nil {
				continue
			}
			for _, c := range append([]string{peer.IPBlock.CIDR}, peer.IPBlock.Except...) {
				if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
					p = p.Masked()
					prefixSet[p.String()] = p
				}
			}
		}
	}
	pkeys := make([]string, 0, len(prefixSet))
	for k := range prefixSet {
		pkeys = append(pkeys, k)
	}
	cids := allocate(pkeys, FirstCIDRIdentity, lastIdentity)
	for k, p := range prefixSet {
		d.CIDR[p] = cids[k]
	}

	nsLabels := map[string]labels.Set{}
	for _, ns := range in.Namespaces {
		nsLabels[ns.Name] = labels.Set(ns.Labels)
	}
	e := &evaluator{idents: idents, nsLabels: nsLabels, cidr: d.CIDR, allPods: slices.Values(pods),
		prev: cache, next: NewCache(), peerCache: map[string][]peer{}}

	// Local pods by identity: a policy's pod selector is matched once per
	// identity of its namespace, not once per pod.
	type localPod struct {
		pod *corev1.Pod
		ip  netip.Addr
	}
	local := map[*identityInfo][]localPod{}
	byNS := map[string][]*identityInfo{}
	for _, info := range idents {
		for _, p := range info.pods {
			if p.Spec.NodeName == in.NodeName {
				local[info] = append(local[info], localPod{p, podIP(p)})
			}
		}
		if len(local[info]) > 0 {
			byNS[info.ns] = append(byNS[info.ns], info)
		}
	}
	add := func(en Entry) { d.Entries[en] = struct{}{} }
	for _, np := range in.Policies {
		ingress, egress := policyTypes(np)
		for _, info := range byNS[np.Namespace] {
			if !e.selects(&np.Spec.PodSelector, info.labels) {
				continue
			}
			for _, lp := range local[info] {
				ep := d.Endpoints[lp.ip]
				ep.Identity = info.id
				if ingress {
					ep.Flags |= bpfobj.EndpointIngressIsolated
					for _, r := range np.Spec.Ingress {
						ruleEntries(add, lp.pod, lp.ip, bpfobj.DirIngress, e.peers(np.Namespace, r.From), r.Ports, e.allPods)
					}
				}
				if egress {
					ep.Flags |= bpfobj.EndpointEgressIsolated
					for _, r := range np.Spec.Egress {
						ruleEntries(add, lp.pod, lp.ip, bpfobj.DirEgress, e.peers(np.Namespace, r.To), r.Ports, e.allPods)
					}
				}
				if ep.Flags != 0 {
					d.Endpoints[lp.ip] = ep
				}
			}
		}
	}
	// What the next Compute may reuse: this one's conversions only, so
	// objects that went are forgotten.
	*cache = *e.next
	cache.entries = len(d.Entries)
	return d
}

// policyTypes are the directions a policy isolates, with the API's
// defaulting: Ingress always, Egress when it has egress rules.
func policyTypes(np *networkingv1.NetworkPolicy) (ingress, egress bool) {
	if len(np.Spec.PolicyTypes) == 0 {
		return true, len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		switch t {
		case networkingv1.PolicyTypeIngress:
			ingress = true
		case networkingv1.PolicyTypeEgress:
			egress = true
		}
	}
	return ingress, egress
}

func allPeers(np *networkingv1.NetworkPolicy) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, r := range np.Spec.Ingress {
		out = append(out, r.From...)
	}
	for _, r := range np.Spec.Egress {
		out = append(out, r.To...)
	}
	return out
}

// evaluator answers the questions of one Compute; it converts each label
// selector once and resolves each rule's peers once (a rule selecting many
// local pods is asked once per pod), which is what keeps a sync at 1,000
// policies over 1,000 pods in milliseconds.
type evaluator struct {
	idents   []*identityInfo
	nsLabels map[string]labels.Set
	cidr     map[netip.Prefix]uint32
	allPods  iter.Seq[*corev1.Pod]
	// prev holds the previous Compute's conversions (selectors by their
	// address in the objects, peer-list keys by the address of the list's
	// first peer); next collects this one's, for the next.
	prev, next *Cache
	// peerCache caches peers() by what the list says (many policies
	// repeat the same peers).
	peerCache map[string][]peer
}

// selector is sel converted, once.
func (e *evaluator) selector(sel *metav1.LabelSelector) labels.Selector {
	if s, ok := e.next.selectors[sel]; ok {
		return s
	}
	s, ok := e.prev.selectors[sel]
	if !ok {
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel); err != nil {
			s = labels.Nothing()
		}
	}
	e.next.selectors[sel] = s
	return s
}

// peersKey is what a peer list of a policy in ns says, as a string.
func (e *evaluator) peersKey(ns string, list []networkingv1.NetworkPolicyPeer) string {
	return peerListKey(ns, list, e.selector)
}

// peerListKey is what a peer list of a policy in ns says, as a string:
// lists that say the same resolve to the same peers.
func peerListKey(ns string, list []networkingv1.NetworkPolicyPeer, conv func(*metav1.LabelSelector) labels.Selector) string {
	var b strings.Builder
	for _, pr := range list {
		switch {
		case pr.IPBlock != nil:
			b.WriteString("ip:" + pr.IPBlock.CIDR + "-" + strings.Join(pr.IPBlock.Except, ","))
		case pr.NamespaceSelector != nil:
			b.WriteString("ns:" + conv(pr.NamespaceSelector).String())
		default:
			b.WriteString("in:" + ns)
		}
		if pr.IPBlock == nil && pr.PodSelector != nil {
			b.WriteString("|pod:" + conv(pr.PodSelector).String())
		}
		b.WriteByte(0)
	}
	return b.String()
}

// selects reports whether the selector matches, converting it once; an
// invalid selector matches nothing (the API validates them, so only a bug
// gets here).
func (e *evaluator) selects(sel *metav1.LabelSelector, l map[string]string) bool {
	return e.selector(sel).Matches(labels.Set(l))
}

// peer is one identity a rule allows, with the pods behind it (nil: any
// pod may be behind it, for egress named ports).
type peer struct {
	id   uint32
	pods iter.Seq[*corev1.Pod]
}

// peers are the identities a rule's peer list allows: every peer when the
// list is empty.
func (e *evaluator) peers(ns string, list []networkingv1.NetworkPolicyPeer) []peer {
	if len(list) == 0 {
		return []peer{{id: bpfobj.IdentityAny}}
	}
	key, ok := e.next.listKeys[&list[0]]
	if !ok {
		if key, ok = e.prev.listKeys[&list[0]]; !ok {
			key = e.peersKey(ns, list)
		}
		e.next.listKeys[&list[0]] = key
	}
	if out, ok := e.peerCache[key]; ok {
		return out
	}
	out := e.resolvePeers(ns, list)
	e.peerCache[key] = out
	return out
}

func (e *evaluator) resolvePeers(ns string, list []networkingv1.NetworkPolicyPeer) []peer {
	var out []peer
	seen := map[uint32]bool{}
	add := func(p peer) {
		if !seen[p.id] {
			seen[p.id] = true
			out = append(out, p)
		}
	}
	for _, pr := range list {
		if pr.IPBlock != nil {
			block, err := netip.ParsePrefix(pr.IPBlock.CIDR)
			if err != nil || !block.Addr().Is4() {
				continue
			}
			var except []netip.Prefix
			for _, x := range pr.IPBlock.Except {
				if p, err := netip.ParsePrefix(x); err == nil {
					except = append(except, p.Masked())
				}
			}
			// Every prefix inside the block and outside its excepts: the
			// trie answers an address with its longest prefix, which is one
			// of them exactly when the address is in the block and not in
			// an except.
			for p, id := range e.cidr {
				if !within(p, block.Masked()) {
					continue
				}
				excluded := false
				for _, x := range except {
					if within(p, x) {
						excluded = true
						break
					}
				}
				if !excluded {
					add(peer{id: id})
				}
			}
			continue
		}
		for _, info := range e.idents {
			if pr.NamespaceSelector != nil {
				if !e.selects(pr.NamespaceSelector, e.nsLabels[info.ns]) {
					continue
				}
			} else if info.ns != ns {
				continue
			}
			if pr.PodSelector != nil && !e.selects(pr.PodSelector, info.labels) {
				continue
			}
			add(peer{id: info.id, pods: slices.Values(info.pods)})
		}
	}
	return out
}

// within reports whether prefix p lies inside q.
func within(p, q netip.Prefix) bool {
	return p.Bits() >= q.Bits() && q.Contains(p.Addr())
}

// ruleEntries hands add the entries of one ingress or egress rule, whose
// peers resolved to peers, of a policy selecting local pod p at ip;
// allPods are the pods an egress named port is looked up in when the peer
// may be any pod.
func ruleEntries(add func(Entry), p *corev1.Pod, ip netip.Addr, dir uint8, peers []peer, ports []networkingv1.NetworkPolicyPort, allPods iter.Seq[*corev1.Pod]) {
	for _, pr := range peers {
		if len(ports) == 0 {
			add(Entry{Pod: ip, Identity: pr.id, Dir: dir, PortBits: AnyProtocol})
			continue
		}
		for _, port := range ports {
			proto := uint8(6)
			if port.Protocol != nil {
				proto = protoNumber(*port.Protocol)
			}
			switch {
			case port.Port == nil:
				add(Entry{Pod: ip, Identity: pr.id, Dir: dir, Proto: proto, PortBits: AnyPort})
			case port.Port.Type == intstr.String:
				// A named port: the receiving pod's. For ingress that is p;
				// for egress the peer's pods (any pod for every peer).
				owners := slices.Values([]*corev1.Pod{p})
				if dir == bpfobj.DirEgress {
					owners = pr.pods
					if owners == nil {
						owners = allPods
					}
				}
				for _, n := range namedPorts(owners, port.Port.StrVal, proto) {
					add(Entry{Pod: ip, Identity: pr.id, Dir: dir, Proto: proto, Port: n, PortBits: ExactPort})
				}
			default:
				first := uint16(port.Port.IntVal)
				last := first
				if port.EndPort != nil && *port.EndPort > port.Port.IntVal {
					last = uint16(*port.EndPort)
				}
				for _, r := range portBlocks(first, last) {
					add(Entry{Pod: ip, Identity: pr.id, Dir: dir, Proto: proto, Port: r.port, PortBits: r.bits})
				}
			}
		}
	}
}

// namedPorts are the numbers the pods give a port name for proto.
func namedPorts(pods iter.Seq[*corev1.Pod], name string, proto uint8) []uint16 {
	seen := map[uint16]bool{}
	var out []uint16
	for p := range pods {
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				pp := uint8(6)
				if cp.Protocol != "" {
					pp = protoNumber(cp.Protocol)
				}
				if cp.Name == name && pp == proto && !seen[uint16(cp.ContainerPort)] {
					seen[uint16(cp.ContainerPort)] = true
					out = append(out, uint16(cp.ContainerPort))
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type portBlock struct {
	port uint16
	bits int8
}

// portBlocks covers first..last with the fewest aligned power-of-two
// blocks (at most 30 for any range of 16-bit ports): each is one prefix of
// the LPM trie.
func portBlocks(first, last uint16) []portBlock {
	var out []portBlock
	for p := uint32(first); p <= uint32(last); {
		size := uint32(1)
		bits := int8(16)
		for bits > 0 {
			next := size << 1
			if p&(next-1) != 0 || p+next-1 > uint32(last) {
				break
			}
			size = next
			bits--
		}
		out = append(out, portBlock{port: uint16(p), bits: bits})
		p += size
	}
	return out
}

func protoNumber(p corev1.Protocol) uint8 {
	switch p {
	case corev1.ProtocolUDP:
		return 17
	case corev1.ProtocolSCTP:
		return 132
	}
	return 6
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 132:
		return "SCTP"
	}
	return fmt.Sprint(p)
}
