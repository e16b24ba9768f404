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
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
)

// The truth-table method of Kubernetes' own NetworkPolicy tests: three
// namespaces of three pods, and for each policy (or set of policies) the
// whole reachability matrix — every pod to every pod, TCP 8080 and UDP
// 9000 — checked against what the test's own model of the Kubernetes
// semantics says. Each pod probes its whole row at once (/probe of the test
// server, asked from the node, which policy always lets in); a TCP answer
// counts only when the right pod names itself.

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

var npCells = []cell{{corev1.ProtocolTCP, 8080}, {corev1.ProtocolUDP, 9000}}

func npTestPod(name string) *corev1.Pod {
	p := testPod(name, map[string]string{"pod": name})
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{
		{Name: "serve-http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "echo-udp", ContainerPort: 9000, Protocol: corev1.ProtocolUDP},
	}
	return p
}

func TestNetworkPolicy(t *testing.T) {
	u := startPodCluster(t)
	cs := u.Clientset()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	nsObjs := map[string]*corev1.Namespace{}
	for _, ns := range npNamespaces {
		o, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
			Labels: map[string]string{"ns": ns}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nsObjs[ns] = o
		for _, name := range npPodNames {
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, npTestPod(name), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	var pods []*npPod
	byName := map[string]*npPod{}
	for _, ns := range npNamespaces {
		for _, name := range npPodNames {
			p := waitServing(t, ctx, cs, ns, name)
			np := &npPod{ns: ns, name: name, ip: netip.MustParseAddr(p.Status.PodIP), pod: p}
			pods = append(pods, np)
			byName[np.String()] = np
		}
	}
	podCIDR := netip.PrefixFrom(pods[0].ip, 16).Masked()
	m := &npModel{cs: cs, pods: pods, namespaces: nsObjs}

	port := func(proto corev1.Protocol, p intstr.IntOrString, end *int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: ptr.To(proto), Port: ptr.To(p), EndPort: end}
	}
	podSel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"pod": name}}
	}
	nsSel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"ns": name}}
	}
	all := &metav1.LabelSelector{}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	policy := func(ns, name string, sel *metav1.LabelSelector, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, eg []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel, PolicyTypes: types, Ingress: in, Egress: eg}}
	}
	zb := byName["z/b"].ip.String() + "/32"

	scenarios := []struct {
		name     string
		policies []*networkingv1.NetworkPolicy
	}{
		{"no policy", nil},
		{"deny all ingress in x", []*networkingv1.NetworkPolicy{policy("x", "deny-in", all, ingress, nil, nil)}},
		{"deny all egress in y", []*networkingv1.NetworkPolicy{policy("y", "deny-out", all, egress, nil, nil)}},
		{"x/a from namespace y", []*networkingv1.NetworkPolicy{policy("x", "from-y", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}}}, nil)}},
		{"x/a from pods b in namespace z (both selectors)", []*networkingv1.NetworkPolicy{policy("x", "from-zb", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("z"), PodSelector: podSel("b")}}}}, nil)}},
		{"x from its own pods c (pod selector alone)", []*networkingv1.NetworkPolicy{policy("x", "from-c", all, ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: podSel("c")}}}}, nil)}},
		{"y/a from an ipBlock except z/b", []*networkingv1.NetworkPolicy{policy("y", "cidr", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: podCIDR.String(), Except: []string{zb}}}}}}, nil)}},
		{"z/a on its named TCP port only", []*networkingv1.NetworkPolicy{policy("z", "named", podSel("a"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolTCP, intstr.FromString("serve-http"), nil)}}}, nil)}},
		{"z/b on TCP 8000-8090 and UDP 9001-9100 (endPort)", []*networkingv1.NetworkPolicy{policy("z", "range", podSel("b"), ingress,
			[]networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{
				port(corev1.ProtocolTCP, intstr.FromInt32(8000), ptr.To[int32](8090)),
				port(corev1.ProtocolUDP, intstr.FromInt32(9001), ptr.To[int32](9100))}}}, nil)}},
		{"x egress to DNS only", []*networkingv1.NetworkPolicy{policy("x", "dns-only", all, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{
				port(corev1.ProtocolUDP, intstr.FromInt32(53), nil), port(corev1.ProtocolTCP, intstr.FromInt32(53), nil)}}})}},
		{"union: y/b from namespace x, and from z/c", []*networkingv1.NetworkPolicy{
			policy("y", "from-x", podSel("b"), ingress, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("x")}}}}, nil),
			policy("y", "from-zc", podSel("b"), ingress, []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("z"), PodSelector: podSel("c")}}}}, nil)}},
		{"z egress to namespace x on UDP by name", []*networkingv1.NetworkPolicy{policy("z", "to-x-udp", all, egress, nil,
			[]networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("x")}},
				Ports: []networkingv1.NetworkPolicyPort{port(corev1.ProtocolUDP, intstr.FromString("echo-udp"), nil)}}})}},
		{"both directions: y isolated ingress, x/b egress only to y", []*networkingv1.NetworkPolicy{
			policy("y", "deny-in", all, ingress, nil, nil),
			policy("x", "b-to-y", podSel("b"), egress, nil, []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: nsSel("y")}}}})}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			applyPolicies(t, ctx, cs, sc.policies)
			m.policies = sc.policies
			checkMatrix(t, m, 20*time.Second)
		})
	}

	t.Run("DNS works under egress to DNS only", func(t *testing.T) {
		applyPolicies(t, ctx, cs, scenarios[9].policies)
		m.policies = scenarios[9].policies
		checkMatrix(t, m, 20*time.Second)
		got := hostGet(t, "http://"+byName["x/a"].ip.String()+":8080/dns?name=kubernetes.default.svc.cluster.local")
		if _, err := netip.ParseAddr(strings.TrimSpace(got)); err != nil {
			t.Errorf("x/a resolving kubernetes.default: %q", got)
		}
	})

	t.Run("an open connection outlives a new deny, new ones are dropped and shown by petrelctl monitor", func(t *testing.T) {
		applyPolicies(t, ctx, cs, nil)
		from, to := byName["x/b"], byName["y/a"]
		id := strings.TrimSpace(hostGet(t, "http://"+from.ip.String()+":8080/hold?addr="+to.ip.String()+":9000"))
		if got := hostGet(t, "http://"+from.ip.String()+":8080/hold?id="+id+"&msg=before"); got != "before" {
			t.Fatalf("held connection before the policy: %q", got)
		}
		mon := startMonitor(t, u)
		deny := []*networkingv1.NetworkPolicy{policy("y", "deny-in", all, ingress, nil, nil)}
		applyPolicies(t, ctx, cs, deny)
		m.policies = deny
		checkMatrix(t, m, 20*time.Second)
		// Established connections keep going (conntrack), as with
		// iptables-based plugins: docs/design.md says so.
		if got := hostGet(t, "http://"+from.ip.String()+":8080/hold?id="+id+"&msg=after"); got != "after" {
			t.Errorf("held connection after the deny: %q", got)
		}
		// The matrix's denied probes were reported with both pods' names.
		ev := mon.waitFor(t, func(e map[string]any) bool {
			return e["source"] == "x/b" && e["destination"] == "y/a" && e["reason"] == "policy-denied-ingress"
		})
		t.Logf("petrelctl monitor: %v", ev)
	})
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
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// checkMatrix probes the whole matrix until it is what the model says, or
// the time is up; then it reports every wrong cell.
func checkMatrix(t *testing.T, m *npModel, within time.Duration) {
	t.Helper()
	want := m.matrix()
	deadline := time.Now().Add(within)
	for {
		got := probeMatrix(t, m.pods)
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

// probeMatrix asks every pod for its row, all pods at once.
func probeMatrix(t *testing.T, pods []*npPod) map[string]bool {
	t.Helper()
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
					target := fmt.Sprintf("%s:%s:%d", strings.ToLower(string(c.proto)), to.ip, c.port)
					q.Add("t", target)
					keys[target] = cellKey(from, to, c)
					want[target] = "echo"
					if c.proto == corev1.ProtocolTCP {
						want[target] = to.name
					}
				}
			}
			c := &http.Client{Timeout: 10 * time.Second}
			resp, err := c.Get("http://" + from.ip.String() + ":8080/probe?" + q.Encode())
			if err != nil {
				t.Errorf("probe from %s: %v", from, err)
				return
			}
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
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

func startMonitor(t *testing.T, u *cluster.Up) *monitor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, cluster.Petrelctl(t), "monitor", "--type", "drop", "-o", "json", "--node-name", u.NodeName)
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
	t.Fatalf("petrelctl monitor showed no such drop; it showed %d events: %v", len(m.events), m.events)
	return nil
}
