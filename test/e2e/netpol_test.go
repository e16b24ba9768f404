package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
)

// The truth-table method of Kubernetes' own NetworkPolicy tests: three
// namespaces of three pods, and for each policy (or set of policies) the
// whole reachability matrix — every pod to every pod, TCP 8080 and 9000,
// UDP 9000 and 9001 — checked against what the test's own model of the
// Kubernetes semantics says. Each pod probes its whole row at once (/probe
// of the test server, asked from the pod's node, which policy always lets
// in); a TCP 8080 answer counts only when the right pod names itself. The
// same table runs on one node (TestNetworkPolicy) and across three nodes
// on two segments (TestMultiNode/NetworkPolicy).
//
// SCTP is not in the table: this machine's kernel has no SCTP
// (CONFIG_IP_SCTP is not set; socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP)
// fails with EPROTONOSUPPORT), so no pod can serve it. Policy entries for
// SCTP are covered by the engine's unit tests.

var npNamespaces = []string{"x", "y", "z"}
var npPodNames = []string{"a", "b", "c"}

// npPod is one pod of the table.
type npPod struct {
	ns, name string
	ip       netip.Addr
	pod      *corev1.Pod
}

func (p *npPod) String() string { return p.ns + "/" + p.name }

// cell is one probe: a protocol and port from one pod to another.
type cell struct {
	proto corev1.Protocol
	port  int32
}

// npCells: two ports of each protocol the kernel has.
var npCells = []cell{{corev1.ProtocolTCP, 8080}, {corev1.ProtocolTCP, 9000}, {corev1.ProtocolUDP, 9000}, {corev1.ProtocolUDP, 9001}}

func npTestPod(name string) *corev1.Pod {
	p := testPod(name, map[string]string{"pod": name})
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "serve-http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "echo-tcp", ContainerPort: 9000, Protocol: corev1.ProtocolTCP},
		{Name: "echo-udp", ContainerPort: 9000, Protocol: corev1.ProtocolUDP},
		{Name: "echo-udp2", ContainerPort: 9001, Protocol: corev1.ProtocolUDP},
	}
	return p
}

// npTable is the truth table's cluster: its pods, the model, and how to
// reach a pod's test server from the pod's own node.
type npTable struct {
	*npModel
	ctx    context.Context
	byName map[string]*npPod
	// get GETs url from the node of pod from.
	get func(from *npPod, url string) (string, error)
}

// setupNPTable creates the namespaces and pods (place, when not nil, binds
// pod i of namespace j to a node) and waits for them.
func setupNPTable(t *testing.T, ctx context.Context, cs kubernetes.Interface, place func(i, j int) string) *npTable {
	t.Helper()
	nsObjs := map[string]*corev1.Namespace{}
	for j, ns := range npNamespaces {
		o, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"ns": ns}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nsObjs[ns] = o
		for i, name := range npPodNames {
			pod := npTestPod(name)
			if place != nil {
				pod.Spec.NodeName = place(i, j)
			}
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	tb := &npTable{ctx: ctx, byName: map[string]*npPod{}, npModel: &npModel{cs: cs, namespaces: nsObjs}}
	for _, ns := range npNamespaces {
		for _, name := range npPodNames {
			p := waitServing(t, ctx, cs, ns, name)
			np := &npPod{ns: ns, name: name, ip: netip.MustParseAddr(p.Status.PodIP), pod: p}
			tb.pods = append(tb.pods, np)
			tb.byName[np.String()] = np
		}
	}
	return tb
}

// npScenario is one row of the table: the policies, and for the dynamic
// ones what to do after they are applied (change labels, update a policy)
// with the model changed to match.
type npScenario struct {
	name     string
	policies []*networkingv1.NetworkPolicy
	// then, when set, runs after the first check and changes the cluster
	// and the model; the matrix is checked again after it.
	then func(t *testing.T, tb *npTable)
}

func npPort(proto *corev1.Protocol, p *intstr.IntOrString, end *int32) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: proto, Port: p, EndPort: end}
}

func npPolicy(ns, name string, sel *metav1.LabelSelector, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel, PolicyTypes: types, Ingress: in, Egress: eg}}
}

// npScenarios are the table's policy sets (more than 25 with the dynamic
// ones and the two that hold connections and resolve names).
func npScenarios(tb *npTable) []npScenario {
	tcp, udp := ptr.To(corev1.ProtocolTCP), ptr.To(corev1.ProtocolUDP)
	num := func(n int32) *intstr.IntOrString { return ptr.To(intstr.FromInt32(n)) }
	named := func(n string) *intstr.IntOrString { return ptr.To(intstr.FromString(n)) }
	podSel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"pod": name}}
	}
	nsSel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": name}}
	}
	all := &metav1.LabelSelector{}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	policy := npPolicy
	from := func(peers ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyIngressRule {
		return []networkingv1.NetworkPolicyIngressRule{{From: peers}}
	}
	to := func(peers ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyEgressRule {
		return []networkingv1.NetworkPolicyEgressRule{{To: peers}}
	}
	host := func(name string) string { return tb.byName[name].ip.String() + "/32" }
	podCIDR := netip.PrefixFrom(tb.pods[0].ip, 16).Masked().String()

	return []npScenario{
		{name: "no policy"},
		{name: "deny all ingress in x", policies: []*networkingv1.NetworkPolicy{policy("x", "deny-in", all, ingress, nil, nil)}},
		{name: "deny all egress in y", policies: []*networkingv1.NetworkPolicy{policy("y", "deny-out", all, egress, nil, nil)}},
		{name: "deny all ingress and egress in z", policies: []*networkingv1.NetworkPolicy{policy("z", "deny-all", all, both, nil, nil)}},
		{name: "x/a from namespace y", policies: []*networkingv1.NetworkPolicy{policy("x", "from-y", podSel("a"), ingress,
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("y")}), nil)}},
		{name: "x/a from pods b in namespace z (both selectors)", policies: []*networkingv1.NetworkPolicy{policy("x", "from-zb", podSel("a"), ingress,
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("z"), PodSelector: podSel("b")}), nil)}},
		{name: "x from its own pods c (pod selector alone)", policies: []*networkingv1.NetworkPolicy{policy("x", "from-c", all, ingress,
			from(networkingv1.NetworkPolicyPeer{PodSelector: podSel("c")}), nil)}},
		{name: "x/b from pods a of every namespace (empty namespace selector)", policies: []*networkingv1.NetworkPolicy{policy("x", "from-any-a", podSel("b"), ingress,
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: all, PodSelector: podSel("a")}), nil)}},
		{name: "y from namespaces other than y (NotIn)", policies: []*networkingv1.NetworkPolicy{policy("y", "not-y", all, ingress,
			from(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "ns", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"y"}}}}}), nil)}},
		{name: "z/c from its own pods a and b (In)", policies: []*networkingv1.NetworkPolicy{policy("z", "from-ab", podSel("c"), ingress,
			from(networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "pod", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}}}), nil)}},
		{name: "y/a from an ipBlock except z/b", policies: []*networkingv1.NetworkPolicy{policy("y", "cidr", podSel("a"), ingress,
			from(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: podCIDR, Except: []string{host("z/b")}}}), nil)}},
		{name: "x/a from everything but the pod network (ipBlock 0.0.0.0/0 except it)", policies: []*networkingv1.NetworkPolicy{policy("x", "outside-only", podSel("a"), ingress,
			from(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{podCIDR}}}), nil)}},
		{name: "x egress to an ipBlock except y/a and z/c", policies: []*networkingv1.NetworkPolicy{policy("x", "to-cidr", all, egress, nil,
			to(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: podCIDR, Except: []string{host("y/a"), host("z/c")}}}))}},
		{name: "z/a on its named TCP port only", policies: []*networkingv1.NetworkPolicy{policy("z", "named", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, named("serve-http"), nil)}}}, nil)}},
		{name: "z/a on port 9000 with no protocol (TCP by default)", policies: []*networkingv1.NetworkPolicy{policy("z", "default-proto", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{npPort(nil, num(9000), nil)}}}, nil)}},
		{name: "y/c on every UDP port (protocol without a port)", policies: []*networkingv1.NetworkPolicy{policy("y", "any-udp", podSel("c"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{npPort(udp, nil, nil)}}}, nil)}},
		{name: "z/b on TCP 8000-8090 and UDP 9001-9100 (endPort)", policies: []*networkingv1.NetworkPolicy{policy("z", "range", podSel("b"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
				npPort(tcp, num(8000), ptr.To[int32](8090)), npPort(udp, num(9001), ptr.To[int32](9100))}}}, nil)}},
		{name: "x egress to TCP 8081-9000 only (endPort on egress)", policies: []*networkingv1.NetworkPolicy{policy("x", "egress-range", all, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, num(8081), ptr.To[int32](9000))}}})}},
		{name: "x egress to DNS only", policies: npDNSOnly()},
		{name: "union: y/b from namespace x, and from z/c", policies: []*networkingv1.NetworkPolicy{
			policy("y", "from-x", podSel("b"), ingress, from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("x")}), nil),
			policy("y", "from-zc", podSel("b"), ingress, from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("z"), PodSelector: podSel("c")}), nil)}},
		{name: "union: deny all in x, and all ingress to x/a (an empty rule)", policies: []*networkingv1.NetworkPolicy{
			policy("x", "deny-all", all, both, nil, nil),
			policy("x", "a-open", podSel("a"), ingress, []networkingv1.NetworkPolicyIngressRule{{}}, nil)}},
		{name: "two rules: x/a from y on UDP, from z on TCP 8080", policies: []*networkingv1.NetworkPolicy{policy("x", "two-rules", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}, Ports: []networkingv1.NetworkPolicyPort{npPort(udp, nil, nil)}},
				{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("z")}}, Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, num(8080), nil)}}}, nil)}},
		{name: "z egress to namespace x on UDP by name", policies: []*networkingv1.NetworkPolicy{policy("z", "to-x-udp", all, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("x")}},
				Ports: []networkingv1.NetworkPolicyPort{npPort(udp, named("echo-udp2"), nil)}}})}},
		{name: "y/a egress to the named TCP port of namespace x's pods", policies: []*networkingv1.NetworkPolicy{policy("y", "to-x-http", podSel("a"), egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("x")}},
				Ports: []networkingv1.NetworkPolicyPort{npPort(tcp, named("serve-http"), nil)}}})}},
		{name: "both directions: y isolated ingress, x/b egress only to y", policies: []*networkingv1.NetworkPolicy{
			policy("y", "deny-in", all, ingress, nil, nil),
			policy("x", "b-to-y", podSel("b"), egress, nil, to(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("y")}))}},
		{name: "both ends must allow: y/a open to all, z denies all egress", policies: []*networkingv1.NetworkPolicy{
			policy("y", "open", podSel("a"), ingress, []networkingv1.NetworkPolicyIngressRule{{}}, nil),
			policy("z", "deny-out", all, egress, nil, nil)}},
		{name: "policyTypes left out: x/c with egress rules is isolated both ways", policies: []*networkingv1.NetworkPolicy{
			policy("x", "defaulted", podSel("c"), nil, nil, to(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("z")}))}},
		{name: "a policy that selects no pod changes nothing", policies: []*networkingv1.NetworkPolicy{policy("y", "nobody", podSel("nobody"), both, nil, nil)}},
		{name: "namespace labels change: x from namespaces team=blue, then z joins the team",
			policies: []*networkingv1.NetworkPolicy{policy("x", "from-blue", all, ingress,
				from(networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "blue"}}}), nil)},
			then: func(t *testing.T, tb *npTable) { tb.labelNamespace(t, "z", "team", "blue") }},
		{name: "pod labels change: z/a from pods role=client, then y/b gets the role",
			policies: []*networkingv1.NetworkPolicy{policy("z", "from-clients", podSel("a"), ingress,
				from(networkingv1.NetworkPolicyPeer{NamespaceSelector: all, PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"role": "client"}}}), nil)},
			then: func(t *testing.T, tb *npTable) { tb.labelPod(t, "y/b", "role", "client") }},
		{name: "a policy updated in place: y/c from namespace x, then from namespace z on UDP",
			policies: []*networkingv1.NetworkPolicy{policy("y", "moving", podSel("c"), ingress, from(networkingv1.NetworkPolicyPeer{NamespaceSelector: nsSel("x")}), nil)},
			then: func(t *testing.T, tb *npTable) {
				p := policy("y", "moving", podSel("c"), ingress, []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("z")}}, Ports: []networkingv1.NetworkPolicyPort{npPort(udp, nil, nil)}}}, nil)
				tb.updatePolicy(t, p)
			}},
	}
}

// npDNSOnly lets every pod of x send DNS, and nothing else.
func npDNSOnly() []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{npPolicy("x", "dns-only", &metav1.LabelSelector{}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}, nil,
		[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{
			npPort(ptr.To(corev1.ProtocolUDP), ptr.To(intstr.FromInt32(53)), nil), npPort(ptr.To(corev1.ProtocolTCP), ptr.To(intstr.FromInt32(53)), nil)}}})}
}

// run checks every scenario: the matrix after its policies, and again
// after its change when it has one. Labels a scenario changes are put back.
func (tb *npTable) run(t *testing.T, scenarios []npScenario) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			tb.apply(t, sc.policies)
			tb.check(t)
			if sc.then != nil {
				sc.then(t, tb)
				tb.check(t)
			}
		})
	}
}

// apply makes the policies of the table exactly these, in the cluster and
// in the model.
func (tb *npTable) apply(t *testing.T, policies []*networkingv1.NetworkPolicy) {
	t.Helper()
	applyPolicies(t, tb.ctx, tb.cs, policies)
	tb.policies = policies
}

func (tb *npTable) check(t *testing.T) {
	t.Helper()
	checkMatrix(t, tb, 20*time.Second)
}

// labelNamespace sets a label of a namespace (the model's copy too) and
// takes it off again when the test ends.
func (tb *npTable) labelNamespace(t *testing.T, ns, key, value string) {
	t.Helper()
	set := func(v *string) {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			o, err := tb.cs.CoreV1().Namespaces().Get(tb.ctx, ns, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if v == nil {
				delete(o.Labels, key)
			} else {
				o.Labels[key] = *v
			}
			if o, err = tb.cs.CoreV1().Namespaces().Update(tb.ctx, o, metav1.UpdateOptions{}); err == nil {
				tb.namespaces[ns] = o
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(&value)
	t.Cleanup(func() { set(nil) })
}

// labelPod sets a label of a pod (the model's copy too) and takes it off
// again when the test ends.
func (tb *npTable) labelPod(t *testing.T, name, key, value string) {
	t.Helper()
	p := tb.byName[name]
	set := func(v *string) {
		// The kubelet writes the pod's status meanwhile: retry on conflict.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			o, err := tb.cs.CoreV1().Pods(p.ns).Get(tb.ctx, p.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if v == nil {
				delete(o.Labels, key)
			} else {
				o.Labels[key] = *v
			}
			if o, err = tb.cs.CoreV1().Pods(p.ns).Update(tb.ctx, o, metav1.UpdateOptions{}); err == nil {
				p.pod = o
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	set(&value)
	t.Cleanup(func() { set(nil) })
}

// updatePolicy replaces a policy of the table in place (an Update, not a
// delete and create).
func (tb *npTable) updatePolicy(t *testing.T, p *networkingv1.NetworkPolicy) {
	t.Helper()
	cur, err := tb.cs.NetworkingV1().NetworkPolicies(p.Namespace).Get(tb.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec = *p.Spec.DeepCopy()
	if _, err := tb.cs.NetworkingV1().NetworkPolicies(p.Namespace).Update(tb.ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out []*networkingv1.NetworkPolicy
	for _, q := range tb.policies {
		if q.Namespace == p.Namespace && q.Name == p.Name {
			q = p
		}
		out = append(out, q)
	}
	tb.policies = out
}

func TestNetworkPolicy(t *testing.T) {
	// --trace: allowed connections are reported too (monitor --type trace).
	u := startPodCluster(t, "--trace")
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tb := setupNPTable(t, ctx, cs, nil)
	tb.get = func(_ *npPod, u string) (string, error) { return hostGetErr(u) }
	byName := tb.byName

	tb.run(t, npScenarios(tb))

	t.Run("DNS works under egress to DNS only", func(t *testing.T) {
		tb.apply(t, npDNSOnly())
		tb.check(t)
		got := hostGet(t, "http://"+byName["x/a"].ip.String()+":8080/dns?name=kubernetes.default.svc.cluster.local")
		if _, err := netip.ParseAddr(strings.TrimSpace(got)); err != nil {
			t.Errorf("x/a resolving kubernetes.default: %q", got)
		}
	})

	t.Run("an open connection outlives a new deny, new ones are dropped and shown by petrelctl monitor", func(t *testing.T) {
		tb.apply(t, nil)
		from, to := byName["x/b"], byName["y/a"]
		id := strings.TrimSpace(hostGet(t, "http://"+from.ip.String()+":8080/hold?addr="+to.ip.String()+":9000"))
		if got := hostGet(t, "http://"+from.ip.String()+":8080/hold?id="+id+"&msg=before"); got != "before" {
			t.Fatalf("held connection before the policy: %q", got)
		}
		// One monitor for both kinds: readers of one ring buffer share
		// its events.
		mon := startMonitor(t, u, "all")
		tb.apply(t, []*networkingv1.NetworkPolicy{npPolicy("y", "deny-in", &metav1.LabelSelector{}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, nil, nil)})
		tb.check(t)
		// Established connections keep going (conntrack), as with
		// iptables-based plugins: docs/design.md says so.
		if got := hostGet(t, "http://"+from.ip.String()+":8080/hold?id="+id+"&msg=after"); got != "after" {
			t.Errorf("held connection after the deny: %q", got)
		}
		// The matrix's denied probes were reported with both pods' names.
		ev := mon.waitFor(t, func(e map[string]any) bool {
			return e["source"] == "x/b" && e["destination"] == "y/a" && e["reason"] == "policy-denied-ingress" &&
				e["type"] == "drop" && e["ingressVerdict"] == "denied"
		})
		t.Logf("petrelctl monitor, a drop: %v", ev)
		// ... and the allowed ones (x → z, nobody isolated) as traces.
		ev = mon.waitFor(t, func(e map[string]any) bool {
			return e["type"] == "trace" && e["source"] == "x/b" && e["destination"] == "z/a" && e["reason"] == "policy-allowed" &&
				e["egressVerdict"] == "not-isolated" && e["ingressVerdict"] == "not-isolated"
		})
		t.Logf("petrelctl monitor, a trace: %v", ev)

		// What y/a's maps allow: isolated for ingress, nothing allowed.
		out, err := u.Petrelctl(ctx, "bpf", "policy", "list", "y/a", "-o", "json")
		if err != nil {
			t.Fatalf("petrelctl bpf policy list y/a: %v\n%s", err, out)
		}
		var rows []struct {
			Pod             string            `json:"pod"`
			IngressIsolated bool              `json:"ingressIsolated"`
			EgressIsolated  bool              `json:"egressIsolated"`
			Allows          []json.RawMessage `json:"allows"`
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].Pod != "y/a" || !rows[0].IngressIsolated ||
			rows[0].EgressIsolated || len(rows[0].Allows) != 0 {
			t.Errorf("petrelctl bpf policy list y/a (%v):\n%s", err, out)
		}

		// The verdicts in the node's /metrics.
		metrics := hostGet(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", u.MetricsPort))
		for _, want := range []string{`petrel_policy_verdicts_total{direction="ingress",reason="policy",verdict="denied"}`,
			`petrel_policy_verdicts_total{direction="egress",reason="not-isolated",verdict="allowed"}`} {
			if n := metricValue(metrics, want); n <= 0 {
				t.Errorf("%s = %v, want > 0", want, n)
			}
		}

		// Drops are not Events: y/a's events are its lifecycle only.
		evs, err := cs.CoreV1().Events("y").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=a"})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs.Items) > 10 {
			var reasons []string
			for _, e := range evs.Items {
				reasons = append(reasons, fmt.Sprintf("%s×%d", e.Reason, e.Count))
			}
			t.Errorf("y/a has %d events after hundreds of drops: %v", len(evs.Items), reasons)
		}
	})
}

// metricValue is the value of one sample (name and labels as exposed), -1
// when it is missing.
func metricValue(text, sample string) float64 {
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, sample+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// applyPolicies makes the policies of the table exactly these.
func applyPolicies(t *testing.T, ctx context.Context, cs kubernetes.Interface, policies []*networkingv1.NetworkPolicy) {
	t.Helper()
	for _, ns := range npNamespaces {
		if err := cs.NetworkingV1().NetworkPolicies(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range policies {
		if _, err := cs.NetworkingV1().NetworkPolicies(p.Namespace).Create(ctx, p.DeepCopy(), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func hostGet(t *testing.T, u string) string {
	t.Helper()
	got, err := hostGetErr(u)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// hostGetErr GETs u from the test's own network namespace.
func hostGetErr(u string) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", u, err)
	}
	return string(b), nil
}

// checkMatrix probes the whole matrix until it is what the model says, or
// the time is up; then it reports every wrong cell.
func checkMatrix(t *testing.T, tb *npTable, within time.Duration) {
	t.Helper()
	m := tb.npModel
	want := m.matrix()
	deadline := time.Now().Add(within)
	for {
		got := probeMatrix(t, tb)
		var wrong []string
		for k, w := range want {
			if got[k] != w {
				wrong = append(wrong, fmt.Sprintf("%s: got %v, want %v", k, got[k], w))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(wrong)
			t.Fatalf("%d of %d cells wrong:\n%s\npods: %s", len(wrong), len(want), strings.Join(wrong, "\n"), m.describe())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func cellKey(from, to *npPod, c cell) string {
	return fmt.Sprintf("%s → %s %s/%d", from, to, c.proto, c.port)
}

// target is a /probe target: kind (tcp, tcpecho, udp), address and port.
func target(kind string, to *npPod, c cell) string {
	return fmt.Sprintf("%s:%s:%d", kind, to.ip, c.port)
}

// probeMatrix asks every pod for its row, all pods at once.
func probeMatrix(t *testing.T, tb *npTable) map[string]bool {
	t.Helper()
	pods := tb.pods
	out := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, from := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := url.Values{"timeout": {"1s"}}
			want := map[string]string{} // target → the answer that counts
			keys := map[string]string{}
			for _, to := range pods {
				for _, c := range npCells {
					// TCP 8080 is HTTP (the answer names the pod); the
					// other ports echo.
					kind, answer := "udp", "echo"
					switch {
					case c.proto == corev1.ProtocolTCP && c.port == 8080:
						kind, answer = "tcp", to.name
					case c.proto == corev1.ProtocolTCP:
						kind = "tcpecho"
					}
					tg := target(kind, to, c)
					q.Add("t", tg)
					keys[tg] = cellKey(from, to, c)
					want[tg] = answer
				}
			}
			body, err := tb.get(from, "http://"+from.ip.String()+":8080/probe?"+q.Encode())
			if err != nil {
				t.Errorf("probe from %s: %v", from, err)
				return
			}
			sc := bufio.NewScanner(strings.NewReader(body))
			for sc.Scan() {
				target, answer, _ := strings.Cut(sc.Text(), " ")
				mu.Lock()
				out[keys[target]] = answer == want[target]
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// npModel is the test's own reading of the NetworkPolicy semantics, over
// pods rather than identities: what the matrix must be.
type npModel struct {
	cs         kubernetes.Interface
	pods       []*npPod
	namespaces map[string]*corev1.Namespace
	policies   []*networkingv1.NetworkPolicy
}

// describe says how each pod's container fares, for a failure's message.
func (m *npModel) describe() string {
	var out []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range m.pods {
		got, err := m.cs.CoreV1().Pods(p.ns).Get(ctx, p.name, metav1.GetOptions{})
		if err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p, err))
			continue
		}
		for _, c := range got.Status.ContainerStatuses {
			s := fmt.Sprintf("%s: ready=%v restarts=%d", p, c.Ready, c.RestartCount)
			if t := c.LastTerminationState.Terminated; t != nil {
				s += fmt.Sprintf(" last exit %d (%s) %s", t.ExitCode, t.Reason, t.Message)
			}
			out = append(out, s)
		}
	}
	return strings.Join(out, "; ")
}

func (m *npModel) matrix() map[string]bool {
	out := map[string]bool{}
	for _, from := range m.pods {
		for _, to := range m.pods {
			for _, c := range npCells {
				// A pod reaches itself over loopback: no policy applies.
				out[cellKey(from, to, c)] = from == to || (m.allows(from, to, c, networkingv1.PolicyTypeEgress) && m.allows(from, to, c, networkingv1.PolicyTypeIngress))
			}
		}
	}
	return out
}

// allows: the egress policies of from (dir Egress) or the ingress
// policies of to (dir Ingress) let the connection through.
func (m *npModel) allows(from, to *npPod, c cell, dir networkingv1.PolicyType) bool {
	self, peer := to, from
	if dir == networkingv1.PolicyTypeEgress {
		self, peer = from, to
	}
	isolated := false
	for _, p := range m.policies {
		if p.Namespace != self.ns || !matches(&p.Spec.PodSelector, self.pod.Labels) || !hasType(p, dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range p.Spec.Ingress {
				if m.peersMatch(p.Namespace, r.From, peer) && portsMatch(r.Ports, to, c) {
					return true
				}
			}
		} else {
			for _, r := range p.Spec.Egress {
				if m.peersMatch(p.Namespace, r.To, peer) && portsMatch(r.Ports, to, c) {
					return true
				}
			}
		}
	}
	return !isolated
}

func hasType(p *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(p.Spec.PolicyTypes) == 0 {
		return dir == networkingv1.PolicyTypeIngress || len(p.Spec.Egress) > 0
	}
	for _, t := range p.Spec.PolicyTypes {
		if t == dir {
			return true
		}
	}
	return false
}

func matches(sel *metav1.LabelSelector, l map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(l))
}

func (m *npModel) peersMatch(ns string, peers []networkingv1.NetworkPolicyPeer, p *npPod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, pr := range peers {
		if pr.IPBlock != nil {
			block := netip.MustParsePrefix(pr.IPBlock.CIDR)
			in := block.Contains(p.ip)
			for _, x := range pr.IPBlock.Except {
				if netip.MustParsePrefix(x).Contains(p.ip) {
					in = false
				}
			}
			if in {
				return true
			}
			continue
		}
		if pr.NamespaceSelector != nil {
			if !matches(pr.NamespaceSelector, m.namespaces[p.ns].Labels) {
				continue
			}
		} else if p.ns != ns {
			continue
		}
		if pr.PodSelector == nil || matches(pr.PodSelector, p.pod.Labels) {
			return true
		}
	}
	return false
}

// portsMatch: the rule's ports allow c to pod to (named ports are to's).
func portsMatch(ports []networkingv1.NetworkPolicyPort, to *npPod, c cell) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if proto != c.proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		if p.Port.Type == intstr.String {
			for _, cp := range to.pod.Spec.Containers[0].Ports {
				if cp.Name == p.Port.StrVal && cp.Protocol == proto && cp.ContainerPort == c.port {
					return true
				}
			}
			continue
		}
		end := p.Port.IntVal
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if c.port >= p.Port.IntVal && c.port <= end {
			return true
		}
	}
	return false
}

// monitor is `petrelctl monitor -o json` running for a test.
type monitor struct {
	mu     sync.Mutex
	events []map[string]any
}

func startMonitor(t *testing.T, u *cluster.Up, typ string) *monitor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, cluster.Petrelctl(t), "monitor", "--type", typ, "-o", "json", "--node-name", u.NodeName)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+u.Kubeconfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	m := &monitor{}
	go func() {
		dec := json.NewDecoder(out)
		for {
			var e map[string]any
			if err := dec.Decode(&e); err != nil {
				return
			}
			m.mu.Lock()
			m.events = append(m.events, e)
			m.mu.Unlock()
		}
	}()
	return m
}

func (m *monitor) waitFor(t *testing.T, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		for _, e := range m.events {
			if match(e) {
				m.mu.Unlock()
				return e
			}
		}
		m.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	t.Fatalf("petrelctl monitor showed no such event; it showed %d events: %v", len(m.events), m.events)
	return nil
}
