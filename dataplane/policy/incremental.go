package policy

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Delta names the keys of the desired state that one Flush may have
// changed: the writer looks only at them.
type Delta struct {
	// All: any key may have changed (a first or bulk Flush, which records
	// none of them); the writer compares everything.
	All       bool
	IPCache   map[netip.Prefix]struct{}
	CIDR      map[netip.Prefix]struct{}
	Endpoints map[netip.Addr]struct{}
	Entries   map[Entry]struct{}
}

func newDelta() *Delta {
	return &Delta{IPCache: map[netip.Prefix]struct{}{}, CIDR: map[netip.Prefix]struct{}{},
		Endpoints: map[netip.Addr]struct{}{}, Entries: map[Entry]struct{}{}}
}

// Len is how many keys the delta names.
func (d *Delta) Len() int { return len(d.IPCache) + len(d.CIDR) + len(d.Endpoints) + len(d.Entries) }

// merge adds o's keys to d.
func (d *Delta) merge(o *Delta) {
	d.All = d.All || o.All
	maps.Copy(d.IPCache, o.IPCache)
	maps.Copy(d.CIDR, o.CIDR)
	maps.Copy(d.Endpoints, o.Endpoints)
	maps.Copy(d.Entries, o.Entries)
}

// bulkIdentities is how many identities may appear or go in one Flush
// before it stops looking for the policies each one concerns and
// recomputes them all (a node's first sync, a namespace created whole).
const bulkIdentities = 64

// Engine keeps the desired state of one node's maps as Pods, Namespaces,
// NetworkPolicies and the node's addresses change, recomputing only what a
// change can reach: a policy's own entries when it changes; the policies
// whose peers may select an identity when the identity appears or goes;
// the policies whose namespace selectors answer differently for a
// relabelled namespace; a local pod's entries from the policies of its
// namespace when its labels, address or ports change. Each Flush returns
// the keys it changed, so that the writer compares only those. It holds
// what Compute would return for the same objects (a property the tests
// check), and is not safe for concurrent use.
type Engine struct {
	node string
	host map[netip.Addr]struct{}

	pods   map[string]*corev1.Pod                // every pod told, by namespace/name
	claims map[netip.Addr]map[string]*corev1.Pod // the pods that claim each address
	owner  map[netip.Addr]*owned                 // the pod each address belongs to

	idents   map[string]*identity // by label key
	byID     map[uint32]*identity
	probed   int                                    // identities not at their hash (a collision moved them)
	nsLocal  map[string]map[*identity]struct{}      // identities with pods on this node, by namespace
	nsLabels map[string]labels.Set                  // namespaces' labels (absent: not there)
	policies map[string]*policyRec                  // by namespace/name
	byNS     map[string]map[*policyRec]struct{}     // policies by namespace
	nsSel    map[*policyRec]struct{}                // policies with a namespace selector in a peer
	cidrPols map[*policyRec]struct{}                // policies with an ipBlock peer
	prefixes map[netip.Prefix]int                   // ipBlock prefixes, by how many policies name them
	named    map[uint32]map[*policyRec]struct{}     // identity → policies with egress named ports resolved by its pods
	anyNamed map[*policyRec]struct{}                // policies with egress named ports resolved by every pod
	podPols  map[netip.Addr]map[*policyRec]struct{} // local address → policies that gave it entries

	d         *Desired
	entryRefs map[Entry]int32          // entries by how many (policy, pod) pairs give them
	isoRefs   map[netip.Addr]*[2]int32 // ingress, egress isolation by how many policies

	// What changed since the last Flush.
	touchedIdents map[*identity]struct{}
	touchedAddrs  map[netip.Addr]struct{} // ipcache entries to look at
	touchedLocal  map[netip.Addr]struct{} // local addresses whose pod changed
	touchedEps    map[netip.Addr]struct{} // endpoints to look at
	nsOld         map[string]labels.Set   // namespaces relabelled, with their labels before
	dirty         map[*policyRec]struct{} // policies to recompute whole
	gone          []*policyRec            // policies whose entries must go
	cidrChanged   bool
	delta         *Delta

	// scratch collects one pair's entries.
	scratch map[Entry]struct{}
}

// owned is an address's pod and its identity.
type owned struct {
	pod   *corev1.Pod
	ident *identity
}

// identity is one pod identity of the engine and its pods.
type identity struct {
	key    string
	id     uint32 // 0 until a Flush allocates it
	ns     string
	labels labels.Set
	pods   map[netip.Addr]*corev1.Pod
	local  int
}

// policyRec is a policy with its selectors converted, and what its last
// computation gave each local pod.
type policyRec struct {
	key               string
	ns                string
	podSel            labels.Selector
	ingress, egress   bool
	rules             []ruleRec
	prefixes          []netip.Prefix
	contrib           map[netip.Addr]contribution
	namedIDs          map[uint32]struct{}
	anyNamed          bool
	hasNS, hasIPBlock bool
}

type contribution struct {
	entries []Entry
	flags   uint8
}

// ruleRec is one ingress or egress rule.
type ruleRec struct {
	dir   uint8
	key   string // what its peer list says (peerListKey)
	empty bool   // every peer
	peers []peerRec
	ports []networkingv1.NetworkPolicyPort
	named bool // an egress rule with a named port
}

type peerRec struct {
	ipBlock bool
	block   netip.Prefix // invalid: a block that matches nothing
	except  []netip.Prefix
	nsSel   labels.Selector // nil: the policy's own namespace
	podSel  labels.Selector // nil: every pod
}

// NewEngine is an engine for node with nothing told yet.
func NewEngine(node string) *Engine {
	e := &Engine{node: node, host: map[netip.Addr]struct{}{},
		pods: map[string]*corev1.Pod{}, claims: map[netip.Addr]map[string]*corev1.Pod{}, owner: map[netip.Addr]*owned{},
		idents: map[string]*identity{}, byID: map[uint32]*identity{}, nsLocal: map[string]map[*identity]struct{}{},
		nsLabels: map[string]labels.Set{}, policies: map[string]*policyRec{}, byNS: map[string]map[*policyRec]struct{}{},
		nsSel: map[*policyRec]struct{}{}, cidrPols: map[*policyRec]struct{}{}, prefixes: map[netip.Prefix]int{},
		named: map[uint32]map[*policyRec]struct{}{}, anyNamed: map[*policyRec]struct{}{}, podPols: map[netip.Addr]map[*policyRec]struct{}{},
		d: &Desired{IPCache: map[netip.Prefix]uint32{}, CIDR: map[netip.Prefix]uint32{}, Endpoints: map[netip.Addr]Endpoint{},
			Entries: map[Entry]struct{}{}, Labels: map[uint32]string{}},
		entryRefs: map[Entry]int32{}, isoRefs: map[netip.Addr]*[2]int32{}, scratch: map[Entry]struct{}{}}
	e.reset()
	return e
}

// reset forgets what changed since the last Flush.
func (e *Engine) reset() {
	e.touchedIdents = map[*identity]struct{}{}
	e.touchedAddrs = map[netip.Addr]struct{}{}
	e.touchedLocal = map[netip.Addr]struct{}{}
	e.touchedEps = map[netip.Addr]struct{}{}
	e.nsOld = map[string]labels.Set{}
	e.dirty = map[*policyRec]struct{}{}
	e.gone = nil
	e.cidrChanged = false
	e.delta = newDelta()
}

// Desired is the state as of the last Flush. It is the engine's own: read
// it, do not change it, and do not keep it across calls.
func (e *Engine) Desired() *Desired { return e.d }

// SetHostAddrs tells the node's own addresses.
func (e *Engine) SetHostAddrs(addrs []netip.Addr) {
	next := map[netip.Addr]struct{}{}
	for _, a := range addrs {
		if a.Is4() {
			next[a] = struct{}{}
		}
	}
	for a := range e.host {
		if _, ok := next[a]; !ok {
			e.touchedAddrs[a] = struct{}{}
		}
	}
	for a := range next {
		if _, ok := e.host[a]; !ok {
			e.touchedAddrs[a] = struct{}{}
		}
	}
	e.host = next
}

// SetPod tells the pod named key (namespace/name) as it is now; nil: it
// is gone.
func (e *Engine) SetPod(key string, p *corev1.Pod) {
	old := e.pods[key]
	if old == nil && p == nil {
		return
	}
	var oldIP, newIP netip.Addr
	if old != nil {
		oldIP = podIP(old)
	}
	if p != nil {
		newIP = podIP(p)
		e.pods[key] = p
	} else {
		delete(e.pods, key)
	}
	if oldIP.IsValid() {
		delete(e.claims[oldIP], key)
		if len(e.claims[oldIP]) == 0 {
			delete(e.claims, oldIP)
		}
	}
	if newIP.IsValid() {
		c := e.claims[newIP]
		if c == nil {
			c = map[string]*corev1.Pod{}
			e.claims[newIP] = c
		}
		c[key] = p
	}
	if oldIP.IsValid() {
		e.settle(oldIP)
	}
	if newIP.IsValid() && newIP != oldIP {
		e.settle(newIP)
	}
}

// settle gives address a to the pod that wins it now.
func (e *Engine) settle(a netip.Addr) {
	var win *corev1.Pod
	winKey := ""
	for k, p := range e.claims[a] {
		if win == nil || k < winKey {
			win, winKey = p, k
		}
	}
	cur := e.owner[a]
	if cur != nil && cur.pod == win {
		return
	}
	if cur != nil && win != nil && samePolicyView(cur.pod, win) {
		// A status update or the like: nothing policy reads changed.
		cur.pod = win
		cur.ident.pods[a] = win
		return
	}
	if cur != nil {
		e.unown(a, cur)
	}
	if win != nil {
		e.own(a, win)
	}
}

func (e *Engine) isLocal(p *corev1.Pod) bool { return p.Spec.NodeName == e.node }

func (e *Engine) own(a netip.Addr, p *corev1.Pod) {
	k := labelKey(p.Namespace, p.Labels)
	id := e.idents[k]
	if id == nil {
		id = &identity{key: k, ns: p.Namespace, labels: labels.Set(p.Labels), pods: map[netip.Addr]*corev1.Pod{}}
		e.idents[k] = id
	}
	id.pods[a] = p
	e.owner[a] = &owned{pod: p, ident: id}
	e.touchedIdents[id] = struct{}{}
	e.touchedAddrs[a] = struct{}{}
	if e.isLocal(p) {
		if id.local++; id.local == 1 {
			set := e.nsLocal[id.ns]
			if set == nil {
				set = map[*identity]struct{}{}
				e.nsLocal[id.ns] = set
			}
			set[id] = struct{}{}
		}
		e.touchedLocal[a] = struct{}{}
	}
}

func (e *Engine) unown(a netip.Addr, o *owned) {
	id := o.ident
	delete(id.pods, a)
	delete(e.owner, a)
	e.touchedIdents[id] = struct{}{}
	e.touchedAddrs[a] = struct{}{}
	if e.isLocal(o.pod) {
		if id.local--; id.local == 0 {
			delete(e.nsLocal[id.ns], id)
			if len(e.nsLocal[id.ns]) == 0 {
				delete(e.nsLocal, id.ns)
			}
		}
		e.touchedLocal[a] = struct{}{}
	}
}

// samePolicyView reports whether two versions of a pod at one address
// look the same to policy: namespace, name, labels, node and ports.
func samePolicyView(a, b *corev1.Pod) bool {
	if a.Namespace != b.Namespace || a.Name != b.Name || a.Spec.NodeName != b.Spec.NodeName || !maps.Equal(a.Labels, b.Labels) {
		return false
	}
	return slices.EqualFunc(a.Spec.Containers, b.Spec.Containers, func(x, y corev1.Container) bool {
		return slices.Equal(x.Ports, y.Ports)
	})
}

// SetNamespace tells the namespace as it is now; nil: it is gone.
func (e *Engine) SetNamespace(name string, ns *corev1.Namespace) {
	old, had := e.nsLabels[name]
	var next labels.Set
	if ns != nil {
		next = labels.Set(ns.Labels)
		if next == nil {
			next = labels.Set{}
		}
	}
	if had == (ns != nil) && maps.Equal(old, next) {
		return
	}
	if _, ok := e.nsOld[name]; !ok {
		e.nsOld[name] = old
	}
	if ns != nil {
		e.nsLabels[name] = next
	} else {
		delete(e.nsLabels, name)
	}
}

// SetPolicy tells the policy named key (namespace/name) as it is now; nil:
// it is gone.
func (e *Engine) SetPolicy(key string, np *networkingv1.NetworkPolicy) {
	if old := e.policies[key]; old != nil {
		delete(e.policies, key)
		delete(e.byNS[old.ns], old)
		if len(e.byNS[old.ns]) == 0 {
			delete(e.byNS, old.ns)
		}
		delete(e.nsSel, old)
		delete(e.cidrPols, old)
		delete(e.dirty, old)
		for _, p := range old.prefixes {
			if e.prefixes[p]--; e.prefixes[p] == 0 {
				delete(e.prefixes, p)
				e.cidrChanged = true
			}
		}
		e.gone = append(e.gone, old)
	}
	if np == nil {
		return
	}
	rec := newPolicyRec(key, np)
	e.policies[key] = rec
	set := e.byNS[rec.ns]
	if set == nil {
		set = map[*policyRec]struct{}{}
		e.byNS[rec.ns] = set
	}
	set[rec] = struct{}{}
	if rec.hasNS {
		e.nsSel[rec] = struct{}{}
	}
	if rec.hasIPBlock {
		e.cidrPols[rec] = struct{}{}
	}
	for _, p := range rec.prefixes {
		if e.prefixes[p]++; e.prefixes[p] == 1 {
			e.cidrChanged = true
		}
	}
	e.dirty[rec] = struct{}{}
}

// selectorOf converts a label selector; an invalid one (only a bug gets
// past the API's validation) matches nothing.
func selectorOf(sel *metav1.LabelSelector) labels.Selector {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return labels.Nothing()
	}
	return s
}

func newPolicyRec(key string, np *networkingv1.NetworkPolicy) *policyRec {
	rec := &policyRec{key: key, ns: np.Namespace, podSel: selectorOf(&np.Spec.PodSelector), contrib: map[netip.Addr]contribution{}}
	rec.ingress, rec.egress = policyTypes(np)
	seen := map[netip.Prefix]bool{}
	addRule := func(dir uint8, list []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
		r := ruleRec{dir: dir, key: peerListKey(np.Namespace, list, selectorOf), empty: len(list) == 0, ports: ports}
		for _, port := range ports {
			if dir == bpfobj.DirEgress && port.Port != nil && port.Port.StrVal != "" {
				r.named = true
			}
		}
		for _, pr := range list {
			var p peerRec
			if pr.IPBlock != nil {
				p.ipBlock = true
				rec.hasIPBlock = true
				if b, err := netip.ParsePrefix(pr.IPBlock.CIDR); err == nil && b.Addr().Is4() {
					p.block = b.Masked()
				}
				for _, x := range pr.IPBlock.Except {
					if xp, err := netip.ParsePrefix(x); err == nil {
						p.except = append(p.except, xp.Masked())
					}
				}
				for _, c := range append([]string{pr.IPBlock.CIDR}, pr.IPBlock.Except...) {
					if cp, err := netip.ParsePrefix(c); err == nil && cp.Addr().Is4() && !seen[cp.Masked()] {
						seen[cp.Masked()] = true
						rec.prefixes = append(rec.prefixes, cp.Masked())
					}
				}
			} else {
				if pr.NamespaceSelector != nil {
					p.nsSel = selectorOf(pr.NamespaceSelector)
					rec.hasNS = true
				}
				if pr.PodSelector != nil {
					p.podSel = selectorOf(pr.PodSelector)
				}
			}
			r.peers = append(r.peers, p)
		}
		rec.rules = append(rec.rules, r)
	}
	for _, r := range np.Spec.Ingress {
		addRule(bpfobj.DirIngress, r.From, r.Ports)
	}
	for _, r := range np.Spec.Egress {
		addRule(bpfobj.DirEgress, r.To, r.Ports)
	}
	return rec
}

// peerSelects reports whether a pod peer of a policy in ns selects the
// identity.
func (e *Engine) peerSelects(ns string, p *peerRec, id *identity) bool {
	if p.ipBlock {
		return false
	}
	if p.nsSel != nil {
		if !p.nsSel.Matches(e.nsLabels[id.ns]) {
			return false
		}
	} else if id.ns != ns {
		return false
	}
	return p.podSel == nil || p.podSel.Matches(id.labels)
}

// Flush recomputes what the changes told since the last Flush reach and
// returns the keys of the desired state it changed.
func (e *Engine) Flush() *Delta {
	created, removed, full := e.settleIdentities()
	if e.cidrChanged {
		e.reallocateCIDR()
	}
	for _, rec := range e.gone {
		e.removePolicy(rec)
	}
	if full {
		e.delta.All = true
	}
	switch {
	case full:
		for _, rec := range e.policies {
			e.dirty[rec] = struct{}{}
		}
		for p := range e.d.IPCache {
			e.touchedAddrs[p.Addr()] = struct{}{}
		}
		for a := range e.owner {
			e.touchedAddrs[a] = struct{}{}
		}
		e.d.Labels = map[uint32]string{}
		for _, id := range e.idents {
			e.d.Labels[id.id] = strings.ReplaceAll(id.key, "\x00", " ")
		}
	case len(created)+len(removed) > bulkIdentities:
		for _, rec := range e.policies {
			e.dirty[rec] = struct{}{}
		}
		e.delta.All = true
	default:
		e.dirtyForIdentities(created, removed)
	}
	e.dirtyForNamedPorts(removed)
	e.dirtyForNamespaces()
	if e.cidrChanged {
		for rec := range e.cidrPols {
			e.dirty[rec] = struct{}{}
		}
	}

	if len(e.dirty) > len(e.policies)/2 && len(e.dirty) > bulkIdentities {
		// Most of the state is rewritten: recording each key costs more
		// than the writer comparing them all.
		e.delta.All = true
	}
	cache := map[string][]peer{}
	for rec := range e.dirty {
		e.removePolicy(rec)
		for id := range e.nsLocal[rec.ns] {
			if !rec.podSel.Matches(id.labels) {
				continue
			}
			for a, p := range id.pods {
				if e.isLocal(p) {
					e.computePair(rec, a, p, cache)
				}
			}
		}
	}
	for a := range e.touchedLocal {
		for rec := range e.podPols[a] {
			if _, ok := e.dirty[rec]; !ok {
				e.removePair(rec, a)
			}
		}
		o := e.owner[a]
		if o == nil || !e.isLocal(o.pod) {
			continue
		}
		for rec := range e.byNS[o.pod.Namespace] {
			if _, ok := e.dirty[rec]; ok || !rec.podSel.Matches(o.ident.labels) {
				continue
			}
			e.computePair(rec, a, o.pod, cache)
		}
	}
	for a := range e.touchedAddrs {
		e.settleIPCache(a)
	}
	for a := range e.touchedEps {
		e.settleEndpoint(a)
	}
	d := e.delta
	e.reset()
	return d
}

// settleIdentities gives new identities their numbers and drops empty
// ones. full: a collision moved an existing identity's number, so every
// entry must be recomputed.
func (e *Engine) settleIdentities() (created, removed []*identity, full bool) {
	realloc := false
	var added []*identity
	for id := range e.touchedIdents {
		switch {
		case len(id.pods) == 0 && id.id != 0:
			delete(e.idents, id.key)
			delete(e.byID, id.id)
			delete(e.d.Labels, id.id)
			if id.id != hashIdentity(id.key, FirstPodIdentity, podIdentityEnd) {
				e.probed--
			}
			removed = append(removed, id)
			realloc = realloc || e.probed > 0
		case len(id.pods) == 0:
			delete(e.idents, id.key) // came and went within one Flush
		case id.id == 0:
			added = append(added, id)
		}
	}
	for _, id := range added {
		h := hashIdentity(id.key, FirstPodIdentity, podIdentityEnd)
		if e.probed == 0 && e.byID[h] == nil && !realloc {
			id.id = h
			e.byID[h] = id
		} else {
			realloc = true
		}
		created = append(created, id)
	}
	if realloc {
		// Collisions resolve in sorted key order, as in Compute: only a
		// fresh allocation over every key gives the same numbers.
		keys := slices.Collect(maps.Keys(e.idents))
		ids := allocate(keys, FirstPodIdentity, podIdentityEnd)
		e.byID = map[uint32]*identity{}
		e.probed = 0
		for k, id := range e.idents {
			n := ids[k]
			if id.id != 0 && id.id != n {
				full = true
			}
			id.id = n
			e.byID[n] = id
			if n != hashIdentity(k, FirstPodIdentity, podIdentityEnd) {
				e.probed++
			}
		}
	}
	for _, id := range created {
		e.d.Labels[id.id] = strings.ReplaceAll(id.key, "\x00", " ")
	}
	if full {
		// Every identity's entries are suspect: drop every policy's, the
		// caller recomputes them all.
		for _, rec := range e.policies {
			e.removePolicy(rec)
		}
		for _, id := range e.idents {
			for a := range id.pods {
				e.touchedAddrs[a] = struct{}{}
			}
		}
	}
	return created, removed, full
}

// dirtyForIdentities marks the policies whose peers select an identity
// that appeared or went.
func (e *Engine) dirtyForIdentities(created, removed []*identity) {
	if len(created)+len(removed) == 0 {
		return
	}
	for _, rec := range e.policies {
		if _, ok := e.dirty[rec]; ok {
			continue
		}
	rules:
		for i := range rec.rules {
			r := &rec.rules[i]
			for j := range r.peers {
				for _, id := range append(created, removed...) {
					if e.peerSelects(rec.ns, &r.peers[j], id) {
						e.dirty[rec] = struct{}{}
						break rules
					}
				}
			}
		}
	}
}

// dirtyForNamedPorts marks the policies whose egress named ports were
// resolved by pods of an identity whose pods changed.
func (e *Engine) dirtyForNamedPorts(removed []*identity) {
	if len(e.touchedIdents) == 0 {
		return
	}
	for rec := range e.anyNamed {
		e.dirty[rec] = struct{}{}
	}
	for id := range e.touchedIdents {
		for rec := range e.named[id.id] {
			e.dirty[rec] = struct{}{}
		}
	}
	for _, id := range removed {
		for rec := range e.named[id.id] {
			e.dirty[rec] = struct{}{}
		}
	}
}

// dirtyForNamespaces marks the policies whose namespace selectors answer
// differently for a relabelled (or new, or deleted) namespace.
func (e *Engine) dirtyForNamespaces() {
	for name, old := range e.nsOld {
		next := e.nsLabels[name]
		for rec := range e.nsSel {
			if _, ok := e.dirty[rec]; ok {
				continue
			}
		rules:
			for i := range rec.rules {
				for _, p := range rec.rules[i].peers {
					if p.nsSel != nil && p.nsSel.Matches(old) != p.nsSel.Matches(next) {
						e.dirty[rec] = struct{}{}
						break rules
					}
				}
			}
		}
	}
}

// reallocateCIDR numbers the ipBlock prefixes afresh (there are few; every
// policy with an ipBlock is recomputed after).
func (e *Engine) reallocateCIDR() {
	keys := make([]string, 0, len(e.prefixes))
	byKey := make(map[string]netip.Prefix, len(e.prefixes))
	for p := range e.prefixes {
		keys = append(keys, p.String())
		byKey[p.String()] = p
	}
	ids := allocate(keys, FirstCIDRIdentity, lastIdentity)
	for p := range e.d.CIDR {
		if _, ok := e.prefixes[p]; !ok {
			delete(e.d.CIDR, p)
			e.delta.CIDR[p] = struct{}{}
		}
	}
	for k, id := range ids {
		p := byKey[k]
		if old, ok := e.d.CIDR[p]; !ok || old != id {
			e.d.CIDR[p] = id
			e.delta.CIDR[p] = struct{}{}
		}
	}
}

// resolve is the peers a rule of rec allows now; cache holds this Flush's
// resolutions by what the peer list says.
func (e *Engine) resolve(rec *policyRec, r *ruleRec, cache map[string][]peer) []peer {
	if r.empty {
		return []peer{{id: bpfobj.IdentityAny}}
	}
	if out, ok := cache[r.key]; ok {
		return out
	}
	var out []peer
	seen := map[uint32]bool{}
	for i := range r.peers {
		p := &r.peers[i]
		if p.ipBlock {
			if !p.block.IsValid() {
				continue
			}
			for c, id := range e.d.CIDR {
				if !within(c, p.block) || seen[id] {
					continue
				}
				excluded := false
				for _, x := range p.except {
					if within(c, x) {
						excluded = true
						break
					}
				}
				if !excluded {
					seen[id] = true
					out = append(out, peer{id: id})
				}
			}
			continue
		}
		for _, id := range e.idents {
			if !seen[id.id] && e.peerSelects(rec.ns, p, id) {
				seen[id.id] = true
				out = append(out, peer{id: id.id, pods: maps.Values(id.pods)})
			}
		}
	}
	cache[r.key] = out
	return out
}

// allPods are the pods that own an address.
func (e *Engine) allPods(yield func(*corev1.Pod) bool) {
	for _, o := range e.owner {
		if !yield(o.pod) {
			return
		}
	}
}

// computePair adds what rec gives local pod p at a.
func (e *Engine) computePair(rec *policyRec, a netip.Addr, p *corev1.Pod, cache map[string][]peer) {
	e.removePair(rec, a)
	var c contribution
	set := e.scratch
	clear(set)
	add := func(en Entry) { set[en] = struct{}{} }
	for i := range rec.rules {
		r := &rec.rules[i]
		if (r.dir == bpfobj.DirIngress && !rec.ingress) || (r.dir == bpfobj.DirEgress && !rec.egress) {
			continue
		}
		peers := e.resolve(rec, r, cache)
		if r.named {
			e.noteNamed(rec, r, peers)
		}
		ruleEntries(add, p, a, r.dir, peers, r.ports, e.allPods)
	}
	if rec.ingress {
		c.flags |= bpfobj.EndpointIngressIsolated
	}
	if rec.egress {
		c.flags |= bpfobj.EndpointEgressIsolated
	}
	if c.flags == 0 {
		return
	}
	c.entries = make([]Entry, 0, len(set))
	for en := range set {
		c.entries = append(c.entries, en)
		if e.entryRefs[en]++; e.entryRefs[en] == 1 {
			e.d.Entries[en] = struct{}{}
			if !e.delta.All {
				e.delta.Entries[en] = struct{}{}
			}
		}
	}
	refs := e.isoRefs[a]
	if refs == nil {
		refs = &[2]int32{}
		e.isoRefs[a] = refs
	}
	if c.flags&bpfobj.EndpointIngressIsolated != 0 {
		refs[0]++
	}
	if c.flags&bpfobj.EndpointEgressIsolated != 0 {
		refs[1]++
	}
	e.touchedEps[a] = struct{}{}
	rec.contrib[a] = c
	pp := e.podPols[a]
	if pp == nil {
		pp = map[*policyRec]struct{}{}
		e.podPols[a] = pp
	}
	pp[rec] = struct{}{}
}

// noteNamed remembers whose pods resolved rec's egress named ports.
func (e *Engine) noteNamed(rec *policyRec, r *ruleRec, peers []peer) {
	for _, p := range peers {
		if p.pods == nil {
			rec.anyNamed = true
			e.anyNamed[rec] = struct{}{}
			continue
		}
		if rec.namedIDs == nil {
			rec.namedIDs = map[uint32]struct{}{}
		}
		rec.namedIDs[p.id] = struct{}{}
		set := e.named[p.id]
		if set == nil {
			set = map[*policyRec]struct{}{}
			e.named[p.id] = set
		}
		set[rec] = struct{}{}
	}
	if r.empty {
		rec.anyNamed = true
		e.anyNamed[rec] = struct{}{}
	}
}

// removePolicy takes back everything rec gave.
func (e *Engine) removePolicy(rec *policyRec) {
	for a := range rec.contrib {
		e.removePair(rec, a)
	}
	for id := range rec.namedIDs {
		delete(e.named[id], rec)
		if len(e.named[id]) == 0 {
			delete(e.named, id)
		}
	}
	rec.namedIDs = nil
	if rec.anyNamed {
		delete(e.anyNamed, rec)
		rec.anyNamed = false
	}
}

// removePair takes back what rec gave the local pod at a.
func (e *Engine) removePair(rec *policyRec, a netip.Addr) {
	c, ok := rec.contrib[a]
	if !ok {
		return
	}
	delete(rec.contrib, a)
	for _, en := range c.entries {
		if e.entryRefs[en]--; e.entryRefs[en] == 0 {
			delete(e.entryRefs, en)
			delete(e.d.Entries, en)
			if !e.delta.All {
				e.delta.Entries[en] = struct{}{}
			}
		}
	}
	if refs := e.isoRefs[a]; refs != nil {
		if c.flags&bpfobj.EndpointIngressIsolated != 0 {
			refs[0]--
		}
		if c.flags&bpfobj.EndpointEgressIsolated != 0 {
			refs[1]--
		}
		if refs[0] == 0 && refs[1] == 0 {
			delete(e.isoRefs, a)
		}
	}
	e.touchedEps[a] = struct{}{}
	delete(e.podPols[a], rec)
	if len(e.podPols[a]) == 0 {
		delete(e.podPols, a)
	}
}

// settleIPCache makes the ipcache entry of a what the pods and the node's
// addresses say.
func (e *Engine) settleIPCache(a netip.Addr) {
	p := netip.PrefixFrom(a, 32)
	var want uint32
	_, isHost := e.host[a]
	switch o := e.owner[a]; {
	case isHost:
		want = bpfobj.IdentityHost
	case o != nil:
		want = o.ident.id
	}
	old, had := e.d.IPCache[p]
	switch {
	case want == 0 && had:
		delete(e.d.IPCache, p)
		e.delta.IPCache[p] = struct{}{}
	case want != 0 && (!had || old != want):
		e.d.IPCache[p] = want
		e.delta.IPCache[p] = struct{}{}
	}
}

// settleEndpoint makes the isolation of local address a what the policies
// selecting its pod say.
func (e *Engine) settleEndpoint(a netip.Addr) {
	var want Endpoint
	if refs := e.isoRefs[a]; refs != nil {
		if refs[0] > 0 {
			want.Flags |= bpfobj.EndpointIngressIsolated
		}
		if refs[1] > 0 {
			want.Flags |= bpfobj.EndpointEgressIsolated
		}
	}
	old, had := e.d.Endpoints[a]
	if want.Flags == 0 {
		if had {
			delete(e.d.Endpoints, a)
			e.delta.Endpoints[a] = struct{}{}
		}
		return
	}
	if o := e.owner[a]; o != nil {
		want.Identity = o.ident.id
	}
	if !had || old != want {
		e.d.Endpoints[a] = want
		e.delta.Endpoints[a] = struct{}{}
	}
}
