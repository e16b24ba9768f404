package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// world is the objects a random sequence of events left, as the informers'
// caches would hold them.
type world struct {
	pods       map[string]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	policies   map[string]*networkingv1.NetworkPolicy
	host       []netip.Addr
}

func (w *world) input() Input {
	return Input{NodeName: "n1", HostAddrs: w.host, Pods: slices.Collect(maps.Values(w.pods)),
		Namespaces: slices.Collect(maps.Values(w.namespaces)), Policies: slices.Collect(maps.Values(w.policies))}
}

// gen makes random objects from small pools, so that selectors match,
// addresses are claimed twice, identities appear and go, and named ports
// resolve differently from pod to pod.
type gen struct{ r *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g gen) labelSet(keys map[string][]string) map[string]string {
	l := map[string]string{}
	for k, vs := range keys {
		if g.r.IntN(3) > 0 {
			l[k] = vs[g.r.IntN(len(vs))]
		}
	}
	return l
}

var (
	podLabels = map[string][]string{"app": {"a", "b", "c"}, "tier": {"1", "2"}}
	nsLabels  = map[string][]string{"team": {"red", "blue"}, "env": {"x"}}
	nsNames   = []string{"ns0", "ns1", "ns2"}
)

func (g gen) pod() *corev1.Pod {
	ns := g.pick(nsNames...)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p" + strconv.Itoa(g.r.IntN(8)), Labels: g.labelSet(podLabels)},
		Spec:   corev1.PodSpec{NodeName: g.pick("n1", "n1", "n2")},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0." + strconv.Itoa(1+g.r.IntN(16))}}
	switch g.r.IntN(10) {
	case 0:
		p.Status.Phase = corev1.PodSucceeded
	case 1:
		p.Status.PodIP = ""
	case 2:
		p.Spec.HostNetwork = true
	}
	var ports []corev1.ContainerPort
	for range g.r.IntN(3) {
		cp := corev1.ContainerPort{Name: g.pick("http", "dns", "metrics"), ContainerPort: int32(8000 + g.r.IntN(4))}
		if g.r.IntN(3) == 0 {
			cp.Protocol = corev1.ProtocolUDP
		}
		ports = append(ports, cp)
	}
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	return p
}

func (g gen) selector(keys map[string][]string) *metav1.LabelSelector {
	s := &metav1.LabelSelector{}
	switch g.r.IntN(4) {
	case 0: // everything
	case 1:
		s.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "tier", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"2"}}}
	default:
		s.MatchLabels = g.labelSet(keys)
	}
	return s
}

func (g gen) peer() networkingv1.NetworkPolicyPeer {
	switch g.r.IntN(5) {
	case 0:
		blocks := []networkingv1.IPBlock{{CIDR: "10.244.0.0/24", Except: []string{"10.244.0.8/29"}}, {CIDR: "10.244.0.0/28"},
			{CIDR: "0.0.0.0/0", Except: []string{"10.244.0.0/16"}}, {CIDR: "10.244.0.4/30"}}
		b := blocks[g.r.IntN(len(blocks))]
		return networkingv1.NetworkPolicyPeer{IPBlock: &b}
	case 1:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.selector(nsLabels)}
	case 2:
		return networkingv1.NetworkPolicyPeer{NamespaceSelector: g.selector(nsLabels), PodSelector: g.selector(podLabels)}
	default:
		return networkingv1.NetworkPolicyPeer{PodSelector: g.selector(podLabels)}
	}
}

func (g gen) ports() []networkingv1.NetworkPolicyPort {
	var out []networkingv1.NetworkPolicyPort
	for range g.r.IntN(3) {
		var p networkingv1.NetworkPolicyPort
		if g.r.IntN(3) == 0 {
			p.Protocol = ptr.To(corev1.ProtocolUDP)
		}
		switch g.r.IntN(4) {
		case 0: // every port
		case 1:
			p.Port = ptr.To(intstr.FromString(g.pick("http", "dns")))
		case 2:
			p.Port = ptr.To(intstr.FromInt32(int32(8000 + g.r.IntN(4))))
			p.EndPort = ptr.To(int32(8003 + g.r.IntN(30)))
		default:
			p.Port = ptr.To(intstr.FromInt32(int32(8000 + g.r.IntN(4))))
		}
		out = append(out, p)
	}
	return out
}

func (g gen) policy() *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: g.pick(nsNames...), Name: "np" + strconv.Itoa(g.r.IntN(6))},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *g.selector(podLabels)}}
	peers := func() []networkingv1.NetworkPolicyPeer {
		var out []networkingv1.NetworkPolicyPeer
		for range g.r.IntN(3) {
			out = append(out, g.peer())
		}
		return out
	}
	for range g.r.IntN(3) {
		np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{From: peers(), Ports: g.ports()})
	}
	for range g.r.IntN(3) {
		np.Spec.Egress = append(np.Spec.Egress, networkingv1.NetworkPolicyEgressRule{To: peers(), Ports: g.ports()})
	}
	switch g.r.IntN(4) {
	case 0:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	case 1:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	case 2:
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	}
	return np
}

// step changes one object of w at random and tells e.
func (g gen) step(w *world, e *Engine) string {
	switch n := g.r.IntN(20); {
	case n < 8:
		p := g.pod()
		k := p.Namespace + "/" + p.Name
		if g.r.IntN(4) == 0 {
			delete(w.pods, k)
			e.SetPod(k, nil)
			return "delete pod " + k
		}
		if old := w.pods[k]; old != nil && g.r.IntN(3) == 0 {
			// A status-only update: a new object, the same for policy.
			p = old.DeepCopy()
			p.ResourceVersion += "1"
		}
		w.pods[k] = p
		e.SetPod(k, p)
		return "set pod " + k
	case n < 11:
		name := g.pick(nsNames...)
		if g.r.IntN(4) == 0 {
			delete(w.namespaces, name)
			e.SetNamespace(name, nil)
			return "delete namespace " + name
		}
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: g.labelSet(nsLabels)}}
		w.namespaces[name] = ns
		e.SetNamespace(name, ns)
		return "set namespace " + name
	case n < 19:
		np := g.policy()
		k := np.Namespace + "/" + np.Name
		if g.r.IntN(4) == 0 {
			delete(w.policies, k)
			e.SetPolicy(k, nil)
			return "delete policy " + k
		}
		w.policies[k] = np
		e.SetPolicy(k, np)
		return "set policy " + k
	default:
		w.host = nil
		for _, a := range []string{"10.244.0.3", "198.51.100.1"} {
			if g.r.IntN(2) == 0 {
				w.host = append(w.host, netip.MustParseAddr(a))
			}
		}
		e.SetHostAddrs(w.host)
		return "set host addresses"
	}
}

// applied is what a writer that looks only at a delta's keys would leave
// in the maps.
func applied(cur, d *Desired, delta *Delta) {
	if delta.All {
		cur.IPCache, cur.CIDR, cur.Endpoints, cur.Entries = maps.Clone(d.IPCache), maps.Clone(d.CIDR), maps.Clone(d.Endpoints), maps.Clone(d.Entries)
		return
	}
	for p := range delta.IPCache {
		if v, ok := d.IPCache[p]; ok {
			cur.IPCache[p] = v
		} else {
			delete(cur.IPCache, p)
		}
	}
	for p := range delta.CIDR {
		if v, ok := d.CIDR[p]; ok {
			cur.CIDR[p] = v
		} else {
			delete(cur.CIDR, p)
		}
	}
	for a := range delta.Endpoints {
		if v, ok := d.Endpoints[a]; ok {
			cur.Endpoints[a] = v
		} else {
			delete(cur.Endpoints, a)
		}
	}
	for en := range delta.Entries {
		if _, ok := d.Entries[en]; ok {
			cur.Entries[en] = struct{}{}
		} else {
			delete(cur.Entries, en)
		}
	}
}

// diff says how got and want differ, "" when they hold the same.
func diff(got, want *Desired, labels bool) string {
	var out []string
	add := func(what string, g, w map[string]string) {
		for k, v := range w {
			if g[k] != v {
				out = append(out, fmt.Sprintf("%s %s: got %q, want %q", what, k, g[k], v))
			}
		}
		for k, v := range g {
			if _, ok := w[k]; !ok {
				out = append(out, fmt.Sprintf("%s %s: got %q, want none", what, k, v))
			}
		}
	}
	str := func(m any) map[string]string {
		out := map[string]string{}
		switch m := m.(type) {
		case map[netip.Prefix]uint32:
			for k, v := range m {
				out[k.String()] = fmt.Sprint(v)
			}
		case map[netip.Addr]Endpoint:
			for k, v := range m {
				out[k.String()] = fmt.Sprint(v)
			}
		case map[Entry]struct{}:
			for k := range m {
				out[k.String()] = "present"
			}
		case map[uint32]string:
			for k, v := range m {
				out[fmt.Sprint(k)] = v
			}
		}
		return out
	}
	add("ipcache", str(got.IPCache), str(want.IPCache))
	add("cidr", str(got.CIDR), str(want.CIDR))
	add("endpoint", str(got.Endpoints), str(want.Endpoints))
	add("entry", str(got.Entries), str(want.Entries))
	if labels {
		add("labels", str(got.Labels), str(want.Labels))
	}
	sort.Strings(out)
	if len(out) > 12 {
		out = append(out[:12], fmt.Sprintf("... and %d more", len(out)-12))
	}
	s := ""
	for _, l := range out {
		s += "\n  " + l
	}
	return s
}

// TestEngineMatchesCompute drives the engine with random event sequences
// and checks, after every Flush, that it holds what Compute makes of the
// same objects from nothing, and that a writer looking only at the keys
// each Flush names reaches the same maps.
func TestEngineMatchesCompute(t *testing.T) {
	for _, c := range []struct {
		name string
		end  uint32 // of the pod identity range
	}{{"wide identity range", FirstCIDRIdentity}, {"collisions", FirstPodIdentity + 48}} {
		t.Run(c.name, func(t *testing.T) {
			defer func(end uint32) { podIdentityEnd = end }(podIdentityEnd)
			podIdentityEnd = c.end
			seeds := 60
			if testing.Short() {
				seeds = 10
			}
			for seed := range seeds {
				g := gen{rand.New(rand.NewPCG(uint64(seed), 20))}
				w := &world{pods: map[string]*corev1.Pod{}, namespaces: map[string]*corev1.Namespace{}, policies: map[string]*networkingv1.NetworkPolicy{}}
				e := NewEngine("n1")
				model := &Desired{IPCache: map[netip.Prefix]uint32{}, CIDR: map[netip.Prefix]uint32{}, Endpoints: map[netip.Addr]Endpoint{}, Entries: map[Entry]struct{}{}}
				var log []string
				for round := range 60 {
					for range 1 + g.r.IntN(4) {
						log = append(log, g.step(w, e))
					}
					delta := e.Flush()
					log = append(log, "flush")
					want := Compute(w.input())
					if s := diff(e.Desired(), want, true); s != "" {
						t.Fatalf("seed %d round %d: the engine differs from Compute:%s\nevents: %v", seed, round, s, log[max(0, len(log)-12):])
					}
					applied(model, e.Desired(), delta)
					if s := diff(model, want, false); s != "" {
						t.Fatalf("seed %d round %d: the delta misses keys:%s", seed, round, s)
					}
				}
			}
		})
	}
}

// TestEngineTouchesLittle checks that a change reaches only what it can
// change: one policy edited among many names only its own entries.
func TestEngineTouchesLittle(t *testing.T) {
	in := benchInput()
	e := NewEngine(in.NodeName)
	for _, p := range in.Pods {
		e.SetPod(p.Namespace+"/"+p.Name, p)
	}
	for _, ns := range in.Namespaces {
		e.SetNamespace(ns.Name, ns)
	}
	for _, np := range in.Policies {
		e.SetPolicy(np.Namespace+"/"+np.Name, np)
	}
	e.Flush()
	before := Compute(in)
	np := in.Policies[7].DeepCopy()
	np.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp(9999)}
	e.SetPolicy(np.Namespace+"/"+np.Name, np)
	delta := e.Flush()
	after := Compute(in2(in, np))
	if s := diff(e.Desired(), after, true); s != "" {
		t.Errorf("after the edit:%s", s)
	}
	// The delta is exactly the entries that differ (the policy's old port
	// went, its new one came) and nothing else.
	changed := 0
	for en := range before.Entries {
		if _, ok := after.Entries[en]; !ok {
			changed++
		}
	}
	for en := range after.Entries {
		if _, ok := before.Entries[en]; !ok {
			changed++
		}
	}
	if changed == 0 || delta.All || len(delta.Entries) != changed || len(delta.IPCache)+len(delta.CIDR)+len(delta.Endpoints) != 0 {
		t.Errorf("delta: %d entries, %d ipcache, %d cidr, %d endpoints; want the %d entries that changed only",
			len(delta.Entries), len(delta.IPCache), len(delta.CIDR), len(delta.Endpoints), changed)
	}
}

// in2 is in with the policy named like np replaced by np.
func in2(in Input, np *networkingv1.NetworkPolicy) Input {
	out := in
	out.Policies = slices.Clone(in.Policies)
	for i, p := range out.Policies {
		if p.Namespace == np.Namespace && p.Name == np.Name {
			out.Policies[i] = np
		}
	}
	return out
}
