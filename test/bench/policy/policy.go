// Package policy is the policy suite of petrelctl bench: NetworkPolicy in
// BPF against no policy and against the same policies as iptables + ipset
// rules, and how long a policy change takes to be judged.
package policy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
	"github.com/petrel-project/petrel/dataplane/policy"
	"github.com/petrel-project/petrel/test/bench"
	"github.com/petrel-project/petrel/topology"
)

// Options configure the policy suite.
type Options struct {
	// Petrelctl runs the connection workers (bench dataplane-worker).
	Petrelctl string
	// Policies and Pods are the synthetic load: Policies NetworkPolicies
	// over Pods pods, all of them on the measured node (the worst case for
	// its maps).
	Policies, Pods int
	// Duration is the length of each connections/s run, Throughput of each
	// iperf3 run.
	Duration, Throughput time.Duration
	Concurrency          int
	// Rounds is how many times each figure is measured (the median is kept).
	Rounds int
	// Changes is how many policy changes are timed for the programming
	// latency.
	Changes  int
	Progress io.Writer
}

// Addresses of the suite's two real pods (inside the node namespace only).
var (
	pbClient = netip.MustParseAddr("10.251.0.1")
	pbServer = netip.MustParseAddr("10.251.0.2")
)

const (
	pbConnPort  = 8080
	pbIperfPort = 5201
	pbNode      = "bench"
)

// policyEnv is a node namespace with two pod namespaces on veths, as the
// CNI wires pods: /32 addresses, a link-local gateway, /32 routes on the
// node. With tc_pod attached, pod to pod goes by bpf_redirect_peer and
// NetworkPolicy is judged in BPF; detached, the node's kernel routes it
// through netfilter, where the iptables + ipset rules judge it.
type policyEnv struct {
	id                   string
	node, client, server string
	hostC, hostS         string // host-side veths in node
	macC, macS           net.HardwareAddr
	pinDir               string
	maps                 *bpfobj.PolicyMaps
	writer               *policy.Writer
	srv, iperfSrv        *exec.Cmd
	cleanups             []func()
}

func (e *policyEnv) close() {
	for i := len(e.cleanups) - 1; i >= 0; i-- {
		e.cleanups[i]()
	}
}

func linkMAC(ns, dev string) (net.HardwareAddr, error) {
	out, err := exec.Command("ip", "-n", ns, "-j", "link", "show", dev).Output()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s link show %s: %w", ns, dev, err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return nil, fmt.Errorf("ip -n %s link show %s: %q (%v)", ns, dev, out, err)
	}
	return net.ParseMAC(links[0].Address)
}

func newPolicyEnv(o Options) (*policyEnv, error) {
	id := strconv.Itoa(os.Getpid())
	e := &policyEnv{id: id, node: "petrel-pb-n-" + id, client: "petrel-pb-c-" + id, server: "petrel-pb-s-" + id,
		hostC: "pbc" + id, hostS: "pbs" + id}
	fail := func(err error) (*policyEnv, error) { e.close(); return nil, err }
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "bench policy: %v: cleaning up\n", s)
			e.close()
			os.Exit(1)
		case <-done:
		}
	}()
	e.cleanups = append(e.cleanups, func() { signal.Stop(sigs); close(done) })
	// The namespaces go last: with them their links, routes, rules and sets.
	for _, ns := range []string{e.node, e.client, e.server} {
		if err := bench.Exec("ip", "netns", "add", ns); err != nil {
			return fail(err)
		}
		e.cleanups = append(e.cleanups, func() { _ = bench.Exec("ip", "netns", "del", ns) })
	}
	steps := [][]string{}
	for _, p := range []struct {
		host, pod, ns string
		addr          netip.Addr
	}{{e.hostC, "pbcp" + id, e.client, pbClient}, {e.hostS, "pbsp" + id, e.server, pbServer}} {
		steps = append(steps,
			[]string{"link", "add", p.host, "type", "veth", "peer", "name", p.pod},
			[]string{"link", "set", p.host, "netns", e.node},
			[]string{"link", "set", p.pod, "netns", p.ns},
			[]string{"-n", p.ns, "link", "set", p.pod, "name", "eth0"},
			[]string{"-n", p.ns, "addr", "add", p.addr.String() + "/32", "dev", "eth0"},
			[]string{"-n", p.ns, "link", "set", "eth0", "up"},
			[]string{"-n", p.ns, "link", "set", "lo", "up"},
			[]string{"-n", p.ns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
			[]string{"-n", p.ns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
			[]string{"-n", e.node, "link", "set", p.host, "up"},
			[]string{"-n", e.node, "route", "add", p.addr.String() + "/32", "dev", p.host})
	}
	// The node has an address of its own, as a real one does: its ARP
	// requests to the pods come from it.
	steps = append(steps, []string{"-n", e.node, "link", "set", "lo", "up"}, []string{"-n", e.node, "addr", "add", "10.251.0.254/32", "dev", "lo"})
	for _, s := range steps {
		if err := bench.Exec("ip", s...); err != nil {
			return fail(err)
		}
	}
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.conf." + e.hostC + ".proxy_arp=1", "net.ipv4.conf." + e.hostS + ".proxy_arp=1"} {
		if err := bench.Exec("ip", "netns", "exec", e.node, "sysctl", "-qw", s); err != nil {
			return fail(err)
		}
	}
	var err error
	if e.macC, err = linkMAC(e.client, "eth0"); err != nil {
		return fail(err)
	}
	if e.macS, err = linkMAC(e.server, "eth0"); err != nil {
		return fail(err)
	}
	// The pods' gateway is their host veth, as the CNI sets it.
	for _, p := range []struct{ ns, host string }{{e.client, e.hostC}, {e.server, e.hostS}} {
		mac, err := linkMAC(e.node, p.host)
		if err != nil {
			return fail(err)
		}
		if err := bench.Exec("ip", "-n", p.ns, "neigh", "replace", "169.254.1.1", "lladdr", mac.String(), "dev", "eth0", "nud", "permanent"); err != nil {
			return fail(err)
		}
	}
	e.pinDir = filepath.Join(bpfobj.BPFFSRoot, "petrel-bench-pol-"+id)
	if err := bpfobj.LoadPodProgram(e.pinDir); err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, func() { _ = bpfobj.Remove(e.pinDir) })
	if e.maps, err = bpfobj.OpenPolicyMaps(e.pinDir, false); err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, e.maps.Close)
	if e.writer, err = policy.NewWriter(e.maps); err != nil {
		return fail(err)
	}

	// The servers: the connection worker and iperf3, on core 1.
	e.srv = exec.Command("ip", "netns", "exec", e.server, "taskset", "-c", "1", o.Petrelctl, "bench", "dataplane-worker",
		"--role", "server", "--listen", netip.AddrPortFrom(pbServer, pbConnPort).String())
	e.srv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := e.srv.StdoutPipe()
	e.srv.Stderr = os.Stderr
	if err := e.srv.Start(); err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, func() { _ = e.srv.Process.Kill(); _ = e.srv.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); strings.TrimSpace(line) != "ready" {
		return fail(fmt.Errorf("connection server did not start: %q", line))
	}
	e.iperfSrv = exec.Command("ip", "netns", "exec", e.server, "taskset", "-c", "1", "iperf3", "-s", "-B", pbServer.String(), "-p", strconv.Itoa(pbIperfPort))
	e.iperfSrv.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := e.iperfSrv.Start(); err != nil {
		return fail(err)
	}
	e.cleanups = append(e.cleanups, func() { _ = e.iperfSrv.Process.Kill(); _ = e.iperfSrv.Wait() })
	return e, nil
}

// attach puts tc_pod on both host veths (the BPF path); detach takes it
// off (the kernel path).
func (e *policyEnv) attach() error {
	return topology.InNetns(e.node, func() error {
		for _, p := range []struct {
			host string
			addr netip.Addr
			mac  net.HardwareAddr
		}{{e.hostC, pbClient, e.macC}, {e.hostS, pbServer, e.macS}} {
			ifc, err := net.InterfaceByName(p.host)
			if err != nil {
				return err
			}
			if err := bpfobj.AttachPod(e.pinDir, ifc, p.addr, p.mac); err != nil {
				return err
			}
		}
		return nil
	})
}

func (e *policyEnv) detach() error {
	for _, p := range []struct {
		host string
		addr netip.Addr
	}{{e.hostC, pbClient}, {e.hostS, pbServer}} {
		if err := bpfobj.DetachPod(e.pinDir, p.host, p.addr); err != nil {
			return err
		}
	}
	return nil
}

// connects runs the connection workload from the client pod (core 0).
func (e *policyEnv) connects(ctx context.Context, o Options, d time.Duration) (float64, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.client, "taskset", "-c", "0", o.Petrelctl, "bench", "dataplane-worker",
		"--role", "client", "--mode", "tcp", "--target", netip.AddrPortFrom(pbServer, pbConnPort).String(),
		"--concurrency", strconv.Itoa(o.Concurrency), "--duration", d.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("connection client: %w", err)
	}
	var r bench.WorkerResult
	if err := json.Unmarshal(out, &r); err != nil {
		return 0, fmt.Errorf("connection client output %q: %w", out, err)
	}
	if r.Ops == 0 || r.Errors > r.Ops/100 {
		return 0, fmt.Errorf("connection client: %d ok, %d errors: the path does not work", r.Ops, r.Errors)
	}
	return float64(r.Ops) / r.Seconds, nil
}

// streamCPU is the CPU iperf3 reports for its sender and receiver
// processes (user + system, the kernel's forwarding work done in their
// context included), in percent of one core over the run.
type streamCPU struct{ sender, receiver float64 }

// parseIperfCPU reads the CPU figures of an iperf3 -J report.
func parseIperfCPU(out []byte) (streamCPU, error) {
	var r struct {
		End struct {
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return streamCPU{}, fmt.Errorf("iperf3 CPU figures: %w", err)
	}
	return streamCPU{sender: r.End.CPU.Host, receiver: r.End.CPU.Remote}, nil
}

// throughput runs one iperf3 stream from the client pod (core 0): Gbit/s
// and the CPU of both ends.
func (e *policyEnv) throughput(ctx context.Context, o Options) (float64, streamCPU, error) {
	secs := strconv.Itoa(max(1, int(o.Throughput.Round(time.Second)/time.Second)))
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "exec", e.client, "taskset", "-c", "0", "iperf3", "-c", pbServer.String(),
			"-p", strconv.Itoa(pbIperfPort), "-t", secs, "-J").Output()
		gbps, err := bench.ParseIperf(out)
		if err == nil {
			cpu, err := parseIperfCPU(out)
			return gbps, cpu, err
		}
		if !errors.Is(err, bench.ErrIperfConnect) || time.Now().After(deadline) || ctx.Err() != nil {
			return 0, streamCPU{}, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// reachable says whether one new TCP connection from the client pod gets
// through within timeout.
func (e *policyEnv) reachable(timeout time.Duration) bool {
	var ok bool
	_ = topology.InNetns(e.client, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(pbServer, pbConnPort).String(), timeout)
		if err == nil {
			ok = true
			c.Close()
		}
		return nil
	})
	return ok
}

// toldObjects is what the bench has told the engine, so that a new load
// is told as the events between the two would be: only what changed.
type toldObjects struct {
	pods       map[string]*corev1.Pod
	namespaces map[string]*corev1.Namespace
	policies   map[string]*networkingv1.NetworkPolicy
}

func (t *toldObjects) tell(eng *policy.Engine, l *policyLoad) {
	t.pods = tellKind(t.pods, l.pods, func(o *corev1.Pod) string { return o.Namespace + "/" + o.Name }, eng.SetPod)
	t.namespaces = tellKind(t.namespaces, l.namespaces, func(o *corev1.Namespace) string { return o.Name }, eng.SetNamespace)
	t.policies = tellKind(t.policies, l.policies, func(o *networkingv1.NetworkPolicy) string { return o.Namespace + "/" + o.Name }, eng.SetPolicy)
}

// tellKind tells set the objects of next that are not in told (new or
// another version) and nil for those told that are not in next.
func tellKind[T comparable](told map[string]T, next []T, key func(T) string, set func(string, T)) map[string]T {
	out := make(map[string]T, len(next))
	var none T
	for _, o := range next {
		k := key(o)
		out[k] = o
		if told[k] != o {
			set(k, o)
		}
	}
	for k := range told {
		if _, ok := out[k]; !ok {
			set(k, none)
		}
	}
	return out
}

// policyLoad is the synthetic cluster: namespaces, pods and policies.
type policyLoad struct {
	namespaces []*corev1.Namespace
	pods       []*corev1.Pod
	policies   []*networkingv1.NetworkPolicy
}

func (l *policyLoad) input() policy.Input {
	return policy.Input{NodeName: pbNode, Pods: l.pods, Namespaces: l.namespaces, Policies: l.policies}
}

// syntheticLoad makes n policies over pods pods in ten namespaces (three
// teams), shaped like an application's: each policy selects one app and
// lets in the pods of one tier of one team on one port, one in ten also
// limits the app's egress to its team. Two of the policies isolate the real
// pods: the server admits the client on the measured ports, the client may
// send only to the server.
func syntheticLoad(n, pods int) *policyLoad {
	l := &policyLoad{}
	for i := range 10 {
		l.namespaces = append(l.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ns-%d", i),
			Labels: map[string]string{"team": fmt.Sprintf("t%d", i%3)}}})
	}
	l.namespaces = append(l.namespaces, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench", Labels: map[string]string{"team": "bench"}}})
	pod := func(ns, name string, ip netip.Addr, l map[string]string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: l},
			Spec:   corev1.PodSpec{NodeName: pbNode, Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip.String()}}
	}
	for i := range pods {
		ip := netip.AddrFrom4([4]byte{10, 252, byte(i / 250), byte(i%250 + 1)})
		l.pods = append(l.pods, pod(fmt.Sprintf("ns-%d", i%10), fmt.Sprintf("p-%d", i), ip,
			map[string]string{"app": fmt.Sprintf("a-%d", i%100), "tier": fmt.Sprintf("t%d", i%5)}))
	}
	l.pods = append(l.pods, pod("bench", "client", pbClient, map[string]string{"app": "client"}),
		pod("bench", "server", pbServer, map[string]string{"app": "server"}))
	tcp := ptr.To(corev1.ProtocolTCP)
	for k := range max(n-2, 0) {
		p := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", k%10), Name: fmt.Sprintf("pol-%d", k)},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a-%d", k%100)}},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", k%3)}},
						PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": fmt.Sprintf("t%d", k%5)}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: tcp, Port: ptr.To(intstr.FromInt32(int32(8000 + k%50)))}}}}}}
		if k%10 == 0 {
			p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			p.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": fmt.Sprintf("t%d", k%3)}}}}}}
		}
		l.policies = append(l.policies, p)
	}
	l.policies = append(l.policies, serverPolicy(true), &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "client-out"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"app": "server"}}}}}}}})
	return l
}

// serverPolicy isolates the server pod; open lets the client in on the
// measured ports, closed lets it in on another port only.
func serverPolicy(open bool) *networkingv1.NetworkPolicy {
	ports := []int32{pbConnPort, pbIperfPort}
	if !open {
		ports = []int32{9999}
	}
	var pp []networkingv1.NetworkPolicyPort
	for _, p := range ports {
		pp = append(pp, networkingv1.NetworkPolicyPort{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(p))})
	}
	return &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "server-in"},
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"app": "client"}}}}, Ports: pp}}}}
}

// iptablesRules translates the load into iptables-restore and ipset
// restore input, in the shape kube-router (and Calico's iptables mode)
// program: an ipset of the pods each policy selects and one of the peers
// each rule admits; from FORWARD, established connections pass first, then
// every policy's chain is tried (a jump guarded by its selected-pods set)
// and marks what it allows; a pod isolated in a direction whose mark is
// missing is dropped. Only what syntheticLoad uses is translated: pod and
// namespace selectors and TCP ports.
func iptablesRules(l *policyLoad) (rules, sets []byte) {
	nsLabels := map[string]labels.Set{}
	for _, ns := range l.namespaces {
		nsLabels[ns.Name] = ns.Labels
	}
	matching := func(ns string, peers []networkingv1.NetworkPolicyPeer) []string {
		var out []string
		for _, p := range l.pods {
			for _, pr := range peers {
				if pr.NamespaceSelector != nil {
					s, _ := metav1.LabelSelectorAsSelector(pr.NamespaceSelector)
					if !s.Matches(nsLabels[p.Namespace]) {
						continue
					}
				} else if p.Namespace != ns {
					continue
				}
				if pr.PodSelector != nil {
					s, _ := metav1.LabelSelectorAsSelector(pr.PodSelector)
					if !s.Matches(labels.Set(p.Labels)) {
						continue
					}
				}
				out = append(out, p.Status.PodIP)
				break
			}
		}
		return out
	}
	var r, s bytes.Buffer
	set := func(name string, ips []string) {
		fmt.Fprintf(&s, "create %s hash:ip family inet hashsize 1024 maxelem 65536\n", name)
		for _, ip := range ips {
			fmt.Fprintf(&s, "add %s %s\n", name, ip)
		}
	}
	var isoIn, isoOut []string
	r.WriteString("*filter\n:PB-FW - [0:0]\n:PB-IN - [0:0]\n:PB-OUT - [0:0]\n")
	var body bytes.Buffer
	for k, p := range l.policies {
		sel, _ := metav1.LabelSelectorAsSelector(&p.Spec.PodSelector)
		var selected []string
		for _, pod := range l.pods {
			if pod.Namespace == p.Namespace && sel.Matches(labels.Set(pod.Labels)) {
				selected = append(selected, pod.Status.PodIP)
			}
		}
		set(fmt.Sprintf("pb-sel-%d", k), selected)
		for _, t := range p.Spec.PolicyTypes {
			match, mark, chain := "src", "0x20000", fmt.Sprintf("PB-IN-%d", k)
			var rules [][]networkingv1.NetworkPolicyPeer
			var ports [][]networkingv1.NetworkPolicyPort
			if t == networkingv1.PolicyTypeIngress {
				isoIn = append(isoIn, selected...)
				for _, ru := range p.Spec.Ingress {
					rules, ports = append(rules, ru.From), append(ports, ru.Ports)
				}
				fmt.Fprintf(&body, "-A PB-IN -m set --match-set pb-sel-%d dst -j %s\n", k, chain)
			} else {
				match, mark, chain = "dst", "0x10000", fmt.Sprintf("PB-OUT-%d", k)
				isoOut = append(isoOut, selected...)
				for _, ru := range p.Spec.Egress {
					rules, ports = append(rules, ru.To), append(ports, ru.Ports)
				}
				fmt.Fprintf(&body, "-A PB-OUT -m set --match-set pb-sel-%d src -j %s\n", k, chain)
			}
			fmt.Fprintf(&r, ":%s - [0:0]\n", chain)
			for i, peers := range rules {
				peerSet := fmt.Sprintf("pb-%s-%d-%d", strings.ToLower(string(t))[:2], k, i)
				set(peerSet, matching(p.Namespace, peers))
				if len(ports[i]) == 0 {
					fmt.Fprintf(&body, "-A %s -m set --match-set %s %s -j MARK --set-xmark %s/%s\n", chain, peerSet, match, mark, mark)
				}
				for _, pp := range ports[i] {
					fmt.Fprintf(&body, "-A %s -p tcp --dport %d -m set --match-set %s %s -j MARK --set-xmark %s/%s\n",
						chain, pp.Port.IntVal, peerSet, match, mark, mark)
				}
			}
		}
	}
	set("pb-iso-in", isoIn)
	set("pb-iso-out", isoOut)
	r.Write(body.Bytes())
	r.WriteString("-A FORWARD -j PB-FW\n")
	r.WriteString("-A PB-FW -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n")
	r.WriteString("-A PB-FW -j PB-OUT\n-A PB-FW -j PB-IN\n")
	r.WriteString("-A PB-FW -m set --match-set pb-iso-out src -m mark ! --mark 0x10000/0x10000 -j DROP\n")
	r.WriteString("-A PB-FW -m set --match-set pb-iso-in dst -m mark ! --mark 0x20000/0x20000 -j DROP\n")
	r.WriteString("-A PB-FW -j ACCEPT\nCOMMIT\n")
	return r.Bytes(), s.Bytes()
}

// loadIptables loads the rules and sets into the node namespace.
func (e *policyEnv) loadIptables(l *policyLoad) (time.Duration, int, error) {
	rules, sets := iptablesRules(l)
	start := time.Now()
	cmd := exec.Command("ip", "netns", "exec", e.node, "ipset", "-exist", "restore")
	cmd.Stdin = bytes.NewReader(sets)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("ipset restore: %v: %s", err, out)
	}
	cmd = exec.Command("ip", "netns", "exec", e.node, "iptables-restore", "--noflush")
	cmd.Stdin = bytes.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, 0, fmt.Errorf("iptables-restore: %v: %s", err, out)
	}
	return time.Since(start), bytes.Count(rules, []byte("\n-A ")), nil
}

// mapMemoryOf sums what the kernel charges for maps (memlock in fdinfo).
func mapMemoryOf(maps ...interface{ FD() int }) (int64, error) {
	var total int64
	for _, m := range maps {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "memlock:"); ok {
				n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// Run measures NetworkPolicy in BPF: connections/s and throughput
// between two pods with no policy, with Policies policies over Pods pods
// loaded, and with the same policies as iptables + ipset rules on the
// kernel's path; and how long a policy change takes to be judged.
func Run(ctx context.Context, o Options) (*bench.Report, error) {
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "bench policy: "+format+"\n", args...)
		}
	}
	for _, tool := range []string{"ip", "iptables-restore", "ipset", "iperf3", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%s is not installed (make deps installs it)", tool)
		}
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("the policy suite needs root (network namespaces, BPF, iptables)")
	}
	e, err := newPolicyEnv(o)
	if err != nil {
		return nil, err
	}
	defer e.close()
	load := syntheticLoad(o.Policies, o.Pods)
	none := &policyLoad{namespaces: load.namespaces, pods: load.pods}
	rep := bench.NewReport("policy")

	type figures struct{ conns, gbps, sendCPU, recvCPU []float64 }
	samples := map[string]*figures{"bpf_none": {}, "bpf_loaded": {}, "kernel_none": {}, "iptables_loaded": {}}
	measure := func(name string) error {
		c, err := e.connects(ctx, o, o.Duration)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		g, cpu, err := e.throughput(ctx, o)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		samples[name].conns = append(samples[name].conns, c)
		samples[name].gbps = append(samples[name].gbps, g)
		samples[name].sendCPU = append(samples[name].sendCPU, cpu.sender)
		samples[name].recvCPU = append(samples[name].recvCPU, cpu.receiver)
		progress("  %s: %.0f connections/s, %.2f Gbit/s (sender CPU %.0f%%, receiver %.0f%%)", name, c, g, cpu.sender, cpu.receiver)
		return nil
	}
	// As the node's controller: one incremental engine, told each object
	// that changed (as the informers' events would), flushed and written
	// as a delta.
	eng := policy.NewEngine(pbNode)
	told := &toldObjects{}
	first := true
	var engineTime time.Duration // of the last apply: telling and flushing
	apply := func(l *policyLoad) (time.Duration, error) {
		start := time.Now()
		told.tell(eng, l)
		delta := eng.Flush()
		engineTime = time.Since(start)
		var err error
		if first {
			// As the node's first sync: every key against the pinned maps.
			_, err = e.writer.Apply(eng.Desired())
			first = false
		} else {
			_, err = e.writer.ApplyDelta(eng.Desired(), delta)
		}
		return time.Since(start), err
	}
	if err := e.attach(); err != nil {
		return nil, err
	}
	progress("warming up")
	if _, err := e.connects(ctx, o, time.Second); err != nil {
		return nil, err
	}
	var firstLoad, firstEngine time.Duration
	var iptRules int
	var iptLoad time.Duration
	for round := range max(o.Rounds, 1) {
		progress("round %d of %d: BPF without policy, BPF with %d policies, kernel without rules, iptables+ipset with %d policies", round+1, o.Rounds, o.Policies, o.Policies)
		if _, err := apply(none); err != nil {
			return nil, err
		}
		if err := measure("bpf_none"); err != nil {
			return nil, err
		}
		d, err := apply(load)
		if err != nil {
			return nil, err
		}
		if round == 0 {
			firstLoad, firstEngine = d, engineTime
		}
		if err := measure("bpf_loaded"); err != nil {
			return nil, err
		}
		if err := e.detach(); err != nil {
			return nil, err
		}
		if err := measure("kernel_none"); err != nil {
			return nil, err
		}
		d, n, err := e.loadIptables(load)
		if err != nil {
			return nil, err
		}
		iptLoad, iptRules = d, n
		if err := measure("iptables_loaded"); err != nil {
			return nil, err
		}
		if err := bench.Exec("ip", "netns", "exec", e.node, "iptables", "-F"); err != nil {
			return nil, err
		}
		for _, args := range [][]string{{"iptables", "-X"}, {"ipset", "destroy"}} {
			if err := bench.Exec("ip", append([]string{"netns", "exec", e.node}, args...)...); err != nil {
				return nil, err
			}
		}
		if err := e.attach(); err != nil {
			return nil, err
		}
	}
	med := func(v []float64) float64 { return bench.Median(append([]float64(nil), v...)) }
	bn, bl, kn, il := samples["bpf_none"], samples["bpf_loaded"], samples["kernel_none"], samples["iptables_loaded"]
	loaded := fmt.Sprintf("_%d_policies", o.Policies)
	rep.AddRatio("pod_to_pod_connects"+loaded, "connects/s", med(bl.conns), "no_policy", med(bn.conns), "higher", 0.95)
	rep.AddRatio("pod_to_pod_connects"+loaded, "connects/s", med(bl.conns), "iptables_ipset"+loaded, med(il.conns), "higher", 2)
	rep.AddRatio("pod_to_pod_throughput"+loaded, "Gbit/s", med(bl.gbps), "no_policy", med(bn.gbps), "higher", 0.95)
	rep.AddRatio("pod_to_pod_throughput"+loaded, "Gbit/s", med(bl.gbps), "iptables_ipset"+loaded, med(il.gbps), "higher", 2)
	rep.AddRatio("iptables_ipset_connects"+loaded, "connects/s", med(il.conns), "kernel_path_no_rules", med(kn.conns), "higher", 0)
	rep.AddRatio("iptables_ipset_throughput"+loaded, "Gbit/s", med(il.gbps), "kernel_path_no_rules", med(kn.gbps), "higher", 0)
	// What a stream costs on each path: whether it is bound by a core and
	// how much of that core each Gbit/s takes, sender and receiver (the
	// forwarding, BPF or netfilter, runs in the sender's context).
	for _, p := range []struct {
		name string
		f    *figures
	}{{"bpf_no_policy", bn}, {"bpf" + loaded, bl}, {"kernel_path_no_rules", kn}, {"iptables_ipset" + loaded, il}} {
		rep.Add("throughput_sender_cpu_"+p.name, "% of a core", med(p.f.sendCPU), "lower", nil)
		rep.Add("throughput_receiver_cpu_"+p.name, "% of a core", med(p.f.recvCPU), "lower", nil)
		perGbit := make([]float64, len(p.f.gbps))
		for i, g := range p.f.gbps {
			perGbit[i] = (p.f.sendCPU[i] + p.f.recvCPU[i]) / g
		}
		rep.Add("throughput_cpu_per_gbit_"+p.name, "% of a core per Gbit/s", med(perGbit), "lower", nil)
	}

	// The maps at the load, and what programming them costs.
	if _, err := apply(load); err != nil {
		return nil, err
	}
	for name, n := range e.writer.Counts() {
		rep.Add("map_entries_"+name, "entries", float64(n), "lower", nil)
	}
	mem, err := mapMemoryOf(e.maps.IPCache, e.maps.CIDR, e.maps.Endpoints, e.maps.Policy)
	if err != nil {
		return nil, err
	}
	rep.Add("policy_map_memory"+loaded, "MiB", float64(mem)/(1<<20), "lower", nil)
	rep.AddRatio("program"+loaded+"_from_empty", "ms", bench.Millis(firstLoad), "iptables_ipset_restore"+loaded, bench.Millis(iptLoad), "lower", 0)
	// Of which the engine (the rest is the writer's map updates).
	rep.Add("program"+loaded+"_from_empty_engine", "ms", bench.Millis(firstEngine), "lower", nil)
	rep.Note(fmt.Sprintf("%d policies over %d pods, all on the measured node; the iptables translation is %d rules and %d ipsets",
		o.Policies, o.Pods, iptRules, 2*o.Policies+2))

	// Programming latency: the server's policy closes and opens again; each
	// change is told to the engine, which recomputes what it reaches and
	// writes the delta, then a new connection must be judged by it at once.
	progress("timing %d policy changes at %d policies", o.Changes, o.Policies)
	closed := *load
	closed.policies = append(append([]*networkingv1.NetworkPolicy(nil), load.policies[:len(load.policies)-2]...), serverPolicy(false), load.policies[len(load.policies)-1])
	var lat, cpu []time.Duration
	wrong := 0
	for i := range o.Changes {
		l, want := load, true
		if i%2 == 0 {
			l, want = &closed, false
		}
		// The one policy that changes, as its watch event would arrive.
		np := l.policies[len(l.policies)-2]
		before := processCPU()
		start := time.Now()
		eng.SetPolicy(np.Namespace+"/"+np.Name, np)
		if _, err := e.writer.ApplyDelta(eng.Desired(), eng.Flush()); err != nil {
			return nil, err
		}
		d := time.Since(start)
		lat = append(lat, d)
		cpu = append(cpu, processCPU()-before)
		if got := e.reachable(300 * time.Millisecond); got != want {
			wrong++
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	p99 := bench.Percentile(lat, 99)
	goal := 100.0
	rep.Add("policy_change_to_judged_p50"+loaded, "ms", bench.Millis(bench.Percentile(lat, 50)), "lower", nil)
	rep.Add("policy_change_to_judged_p99"+loaded, "ms", bench.Millis(p99), "lower", &goal)
	rep.Add("new_connections_judged_by_the_old_policy", "connections", float64(wrong), "lower", bench.Goal(0))
	// The CPU the change cost (this process: the engine and its GC), which
	// the machine's load does not stretch as it stretches the wall time.
	rep.Add("policy_change_cpu_p50"+loaded, "ms", bench.Millis(bench.Percentile(cpu, 50)), "lower", nil)
	rep.Add("policy_change_cpu_p99"+loaded, "ms", bench.Millis(bench.Percentile(cpu, 99)), "lower", nil)
	rep.Note("policy change latency: the node's part (the incremental engine recomputes what the changed policy reaches + writes the delta), after which the next new connection is judged by the new policy (checked); the API server's watch delivery to the node and the controller's 2 ms minimum interval between syncs come on top")
	return rep, nil
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
