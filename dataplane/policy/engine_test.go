package policy

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

func pod(ns, name, node, ip string, l map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
		Spec:   corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip}}
}

func namespace(name string, l map[string]string) *corev1.Namespace {
	if l == nil {
		l = map[string]string{}
	}
	l["kubernetes.io/metadata.name"] = name
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func sel(kv ...string) *metav1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &metav1.LabelSelector{MatchLabels: m}
}

func np(ns string, podSel *metav1.LabelSelector, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *podSel, PolicyTypes: types, Ingress: in, Egress: eg}}
}

func tcp(p int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(p))}
}

// The cluster of the tests: a/x and b/x on this node (n1), c/y on n1,
// d/y on n2; namespace y is team=blue.
func cluster() Input {
	return Input{NodeName: "n1", HostAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.1")},
		Namespaces: []*corev1.Namespace{namespace("x", nil), namespace("y", map[string]string{"team": "blue"})},
		Pods: []*corev1.Pod{
			pod("x", "a", "n1", "10.244.0.1", map[string]string{"app": "a"}, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
			pod("x", "b", "n1", "10.244.0.2", map[string]string{"app": "b"}, corev1.ContainerPort{Name: "http", ContainerPort: 8081}),
			pod("y", "c", "n1", "10.244.0.3", map[string]string{"app": "c"}),
			pod("y", "d", "n2", "10.244.1.4", map[string]string{"app": "b"}, corev1.ContainerPort{Name: "dns", ContainerPort: 5353, Protocol: corev1.ProtocolUDP}),
		}}
}

// entries renders the desired entries with identities replaced by the
// label key they stand for, so the rows read without hash values.
func entries(d *Desired) []string {
	var out []string
	for e := range d.Entries {
		s := e.String()
		name := ""
		switch {
		case e.Identity == bpfobj.IdentityAny:
			name = "any"
		case e.Identity >= FirstCIDRIdentity:
			for p, id := range d.CIDR {
				if id == e.Identity {
					name = "cidr:" + p.String()
				}
			}
		default:
			name = strings.ReplaceAll(d.Labels[e.Identity], " ", ",")
		}
		s = strings.Replace(s, "id="+strconv.FormatUint(uint64(e.Identity), 10), name, 1)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestCompute(t *testing.T) {
	shared := NewCache()
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	for _, c := range []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
		isolated map[string]uint8 // local pod address → flags
		want     []string
	}{
		{name: "no policy: nobody isolated"},
		{name: "deny all ingress in x",
			policies: []*networkingv1.NetworkPolicy{np("x", sel(), ingress, nil, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1, "10.244.0.2": 1}},
		{name: "deny all egress of app=a",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), egress, nil, nil)},
			isolated: map[string]uint8{"10.244.0.1": 2}},
		{name: "egress rules without policyTypes isolate both ways",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), nil, nil,
				[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromInt32(53))}}}})},
			isolated: map[string]uint8{"10.244.0.1": 3},
			want:     []string{"10.244.0.1 egress any UDP/53"}},
		{name: "from a namespace by its labels, every port",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "blue")}}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1},
			want:     []string{"10.244.0.1 ingress y,app=b any", "10.244.0.1 ingress y,app=c any"}},
		{name: "pod selector alone is the policy's namespace",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "b")}}, Ports: []networkingv1.NetworkPolicyPort{tcp(8080)}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1},
			want:     []string{"10.244.0.1 ingress x,app=b TCP/8080"}},
		{name: "both selectors in one peer: pods of those namespaces only",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel(), PodSelector: sel("app", "b")}}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1},
			want:     []string{"10.244.0.1 ingress x,app=b any", "10.244.0.1 ingress y,app=b any"}},
		{name: "ipBlock with except: every policy prefix inside and not excepted",
			policies: []*networkingv1.NetworkPolicy{
				np("x", sel("app", "a"), ingress, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.244.1.0/24"}}}}}}, nil),
				// Another policy's prefix inside the block: its addresses
				// get its identity, which the block must allow too.
				np("y", sel("app", "c"), egress, nil, []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{
					{IPBlock: &networkingv1.IPBlock{CIDR: "10.244.0.0/16"}}}}}),
			},
			isolated: map[string]uint8{"10.244.0.1": 1, "10.244.0.3": 2},
			want: []string{"10.244.0.1 ingress cidr:10.0.0.0/8 any", "10.244.0.1 ingress cidr:10.244.0.0/16 any",
				// The except of the other policy is a prefix of the trie
				// inside this block: its addresses answer with it.
				"10.244.0.3 egress cidr:10.244.0.0/16 any", "10.244.0.3 egress cidr:10.244.1.0/24 any"}},
		{name: "named port, ingress: the selected pod's own number",
			policies: []*networkingv1.NetworkPolicy{np("x", sel(), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromString("http"))}}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1, "10.244.0.2": 1},
			want:     []string{"10.244.0.1 ingress any TCP/8080", "10.244.0.2 ingress any TCP/8081"}},
		{name: "named port, egress: the peer pods' numbers",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), egress, nil,
				[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel()}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(intstr.FromString("dns"))}}}})},
			isolated: map[string]uint8{"10.244.0.1": 2},
			want:     []string{"10.244.0.1 egress y,app=b UDP/5353"}},
		{name: "endPort as aligned blocks",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: ptr.To(intstr.FromInt32(8079)), EndPort: ptr.To[int32](8090)}}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1},
			want: []string{"10.244.0.1 ingress any TCP/8079", "10.244.0.1 ingress any TCP/8080-8087",
				"10.244.0.1 ingress any TCP/8088-8089", "10.244.0.1 ingress any TCP/8090"}},
		{name: "a protocol without a port",
			policies: []*networkingv1.NetworkPolicy{np("x", sel("app", "a"), ingress,
				[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolUDP)}}}}, nil)},
			isolated: map[string]uint8{"10.244.0.1": 1},
			want:     []string{"10.244.0.1 ingress any UDP/any"}},
		{name: "union of two policies; a remote pod is never an endpoint",
			policies: []*networkingv1.NetworkPolicy{
				np("y", sel(), ingress, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: sel("app", "c")}}}}, nil),
				np("y", sel("app", "c"), ingress, []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{tcp(80)}}}, nil),
			},
			isolated: map[string]uint8{"10.244.0.3": 1},
			want:     []string{"10.244.0.3 ingress any TCP/80", "10.244.0.3 ingress y,app=c any"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := cluster()
			in.Policies = c.policies
			d := Compute(in)
			// With a cache carried from the cases before (as the
			// controller's syncs carry it), the same answer.
			in.Cache = shared
			for i := range 2 { // the second reuses the first's conversions
				if got, want := entries(Compute(in)), entries(d); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("with a carried cache (%d): %v, want %v", i, got, want)
				}
			}
			got := entries(d)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			flags := map[string]uint8{}
			for a, ep := range d.Endpoints {
				flags[a.String()] = ep.Flags
			}
			if len(flags) != len(c.isolated) {
				t.Errorf("isolated %v, want %v", flags, c.isolated)
			}
			for a, f := range c.isolated {
				if flags[a] != f {
					t.Errorf("isolated %v, want %v", flags, c.isolated)
				}
			}
			// Every pod address is in the ipcache, and the node's own.
			for _, a := range []string{"10.244.0.1", "10.244.0.2", "10.244.0.3", "10.244.1.4"} {
				if d.IPCache[netip.MustParsePrefix(a+"/32")] < FirstPodIdentity {
					t.Errorf("ipcache has no identity for %s", a)
				}
			}
			if d.IPCache[netip.MustParsePrefix("198.51.100.1/32")] != bpfobj.IdentityHost {
				t.Error("the node's address is not the host identity")
			}
		})
	}
}

// Pods with the same namespace and labels share an identity, on every node
// and across restarts (a hash, with collisions probed in sorted order).
func TestIdentitiesAreSharedAndStable(t *testing.T) {
	in := cluster()
	in.Pods = append(in.Pods, pod("x", "a2", "n2", "10.244.1.9", map[string]string{"app": "a"}))
	d1, d2 := Compute(in), Compute(in)
	a, a2 := d1.IPCache[netip.MustParsePrefix("10.244.0.1/32")], d1.IPCache[netip.MustParsePrefix("10.244.1.9/32")]
	if a != a2 || a != d2.IPCache[netip.MustParsePrefix("10.244.0.1/32")] {
		t.Errorf("identities %d %d %d", a, a2, d2.IPCache[netip.MustParsePrefix("10.244.0.1/32")])
	}
	if b := d1.IPCache[netip.MustParsePrefix("10.244.0.2/32")]; b == a {
		t.Error("different labels, same identity")
	}
	ids := allocate([]string{"k1", "k2", "k3"}, 10, 13)
	if len(ids) != 3 {
		t.Fatal(ids)
	}
	seen := map[uint32]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("collision not resolved: %v", ids)
		}
		seen[id] = true
	}
}

func TestPortBlocks(t *testing.T) {
	for _, c := range []struct {
		first, last uint16
		want        int
	}{{80, 80, 1}, {0, 65535, 1}, {1, 65535, 16}, {8000, 8100, 4}, {65535, 65535, 1}} {
		blocks := portBlocks(c.first, c.last)
		if len(blocks) != c.want {
			t.Errorf("%d-%d: %v", c.first, c.last, blocks)
		}
		// The blocks cover the range exactly.
		next := uint32(c.first)
		for _, b := range blocks {
			if uint32(b.port) != next {
				t.Fatalf("%d-%d: gap at %d: %v", c.first, c.last, next, blocks)
			}
			next += 1 << (16 - b.bits)
		}
		if next != uint32(c.last)+1 {
			t.Errorf("%d-%d: ends at %d", c.first, c.last, next)
		}
	}
}

// benchInput is bench policy's load: 1,000 policies over 1,000 local pods
// in ten namespaces (three teams), each policy selecting one of 100 apps
// and admitting one tier of one team on one port.
func benchInput() Input {
	in := Input{NodeName: "n1"}
	for i := range 10 {
		in.Namespaces = append(in.Namespaces, namespace("ns-"+strconv.Itoa(i), map[string]string{"team": "t" + strconv.Itoa(i%3)}))
	}
	for i := range 1000 {
		in.Pods = append(in.Pods, pod("ns-"+strconv.Itoa(i%10), "p-"+strconv.Itoa(i), "n1", netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i%250 + 1)}).String(),
			map[string]string{"app": "a-" + strconv.Itoa(i%100), "tier": "t" + strconv.Itoa(i%5)}))
	}
	for k := range 1000 {
		p := np("ns-"+strconv.Itoa(k%10), sel("app", "a-"+strconv.Itoa(k%100)), nil, []networkingv1.NetworkPolicyIngressRule{{
			From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: sel("team", "t"+strconv.Itoa(k%3)), PodSelector: sel("tier", "t"+strconv.Itoa(k%5))}},
			Ports: []networkingv1.NetworkPolicyPort{tcp(int32(8000 + k%50))}}}, nil)
		p.Name = "p-" + strconv.Itoa(k)
		in.Policies = append(in.Policies, p)
	}
	return in
}

// BenchmarkCompute1000 is a whole sync's work at 1,000 policies over 1,000
// local pods (bench policy's load): what every change cost before the
// incremental Engine.
func BenchmarkCompute1000(b *testing.B) {
	in := benchInput()
	// As the controller synced: the selectors' conversions carried over.
	in.Cache = NewCache()
	b.ResetTimer()
	for range b.N {
		if d := Compute(in); len(d.Entries) == 0 {
			b.Fatal("no entries")
		}
	}
}

// loadedEngine is an engine told benchInput and flushed.
func loadedEngine(in Input) *Engine {
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
	return e
}

// BenchmarkEngineFirstSync1000 is a node's first sync at the load: every
// object told, one Flush.
func BenchmarkEngineFirstSync1000(b *testing.B) {
	in := benchInput()
	for range b.N {
		if e := loadedEngine(in); len(e.Desired().Entries) == 0 {
			b.Fatal("no entries")
		}
	}
}

// BenchmarkEnginePolicyChange1000 is what a changed policy costs at the
// load (bench policy's change: one policy's port flips).
func BenchmarkEnginePolicyChange1000(b *testing.B) {
	in := benchInput()
	e := loadedEngine(in)
	open, closed := in.Policies[7], in.Policies[7].DeepCopy()
	closed.Spec.Ingress[0].Ports = []networkingv1.NetworkPolicyPort{tcp(9999)}
	key := open.Namespace + "/" + open.Name
	b.ResetTimer()
	for i := range b.N {
		np := open
		if i%2 == 0 {
			np = closed
		}
		e.SetPolicy(key, np)
		if d := e.Flush(); len(d.Entries) == 0 {
			b.Fatal("nothing changed")
		}
	}
}

// BenchmarkEnginePodChurn1000 is what a local pod's relabel costs at the
// load: it leaves one identity (and its policies) for a new one.
func BenchmarkEnginePodChurn1000(b *testing.B) {
	in := benchInput()
	e := loadedEngine(in)
	p := in.Pods[7]
	moved := p.DeepCopy()
	moved.Labels = map[string]string{"app": "a-8", "tier": "t3", "extra": "x"}
	b.ResetTimer()
	for i := range b.N {
		q := p
		if i%2 == 0 {
			q = moved
		}
		e.SetPod(p.Namespace+"/"+p.Name, q)
		e.Flush()
	}
}
