package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/test/cluster"
	"github.com/petrel-project/petrel/test/images"
	"github.com/petrel-project/petrel/topology"
)

// TestMultiNode runs one three-node cluster on two segments (n0 and n1 share
// segment 0, n2 is alone on segment 1 behind a router), as
// `petrel up --nodes 3 --segments 2` builds it, and checks what crosses
// nodes: pods, Services, NodePorts, DNS, and the faults of a node. The
// subtests share the cluster (it takes a minute to build) and run in order:
// the last one takes n2 away for good.
func TestMultiNode(t *testing.T) {
	requireKubectl(t)
	m := cluster.StartMulti(t, cluster.MultiOptions{Nodes: 3, Segments: 2,
		// A node that goes silent is NotReady in seconds, not 40 s.
		// LoadBalancer addresses outside both segments' hosts; the outside
		// client routes them to a node, as an upstream router would.
		ServerArgs: []string{"--node-monitor-grace-period", "8s", "--lb-pool", "203.0.113.240-203.0.113.249",
			"--ingress-service", "kube-system/petrel-ingress"}, NodeArgs: []string{"--lease-renew-interval", "2s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	archive, err := images.BuildTestServer(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ImportImage(ctx, archive); err != nil {
		t.Fatal(err)
	}
	cs := m.Clientset()
	ns := "multi"
	kubectl(t, m.Server, "", "create", "namespace", ns)
	// One pod per node, bound by name; label "on" says where.
	pods := map[string]*corev1.Pod{}
	for _, n := range m.Nodes {
		name := "p-" + n.Name[len(n.Name)-2:]
		pod := testPod(name, map[string]string{"app": "pinned", "on": n.Name})
		pod.Spec.NodeName = n.Name
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range m.Nodes {
		name := "p-" + n.Name[len(n.Name)-2:]
		pods[n.Name] = waitServing(t, ctx, cs, ns, name)
	}
	n0, n1, n2 := m.Nodes[0], m.Nodes[1], m.Nodes[2]
	p0, p1, p2 := pods[n0.Name], pods[n1.Name], pods[n2.Name]

	t.Run("PodToPod", func(t *testing.T) {
		for _, c := range []struct {
			from, to *corev1.Pod
			path     string
		}{{p0, p1, "one segment"}, {p1, p0, "one segment"}, {p0, p2, "across segments"}, {p2, p1, "across segments"}} {
			got := podExec(t, m, ns, c.from.Name, "/testserver", "get", "http://"+c.to.Status.PodIP+":8080/hostname")
			if got != c.to.Name {
				t.Errorf("%s → %s (%s), TCP: answered %q", c.from.Spec.NodeName, c.to.Spec.NodeName, c.path, got)
			}
			nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
			if got := podExec(t, m, ns, c.from.Name, "/testserver", "udp", c.to.Status.PodIP+":9000", nonce); got != nonce {
				t.Errorf("%s → %s (%s), UDP: answered %q, want %q", c.from.Spec.NodeName, c.to.Spec.NodeName, c.path, got, nonce)
			}
		}
	})

	t.Run("TunnelMapFromTheCLI", func(t *testing.T) {
		out, err := n0.Petrelctl(ctx, "bpf", "tunnel", "list", "-o", "json")
		if err != nil {
			t.Fatalf("petrelctl bpf tunnel list: %v\n%s", err, out)
		}
		var rows []struct {
			PodCIDR   string `json:"podCIDR"`
			NodeAddr  string `json:"nodeAddress"`
			How       string `json:"how"`
			Interface string `json:"interface"`
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		want := map[string]string{}
		for _, n := range []*cluster.MultiNode{n1, n2} {
			node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			how := "native/eth0"
			if n.Segment != n0.Segment {
				how = "vxlan/petrel_vxlan"
			}
			want[node.Spec.PodCIDR] = n.Address.String() + " " + how
		}
		got := map[string]string{}
		for _, r := range rows {
			got[r.PodCIDR] = r.NodeAddr + " " + r.How + "/" + r.Interface
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s's tunnel map: %v, want %v\n%s", n0.Name, got, want, out)
		}
	})

	// A Service whose backends are all on other nodes than the client's.
	far := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "far", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"far": "yes"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
	for _, p := range []*corev1.Pod{p1, p2} {
		kubectl(t, m.Server, "", "-n", ns, "label", "pod", p.Name, "far=yes")
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, far, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("ServiceByNameOnOtherNodes", func(t *testing.T) {
		seen := map[string]bool{}
		poll(t, "both far backends answering p-n0 by name", 60*time.Second, func() error {
			got, err := podExecErr(m, ns, p0.Name, "/testserver", "get", "http://far."+ns+".svc.cluster.local/hostname")
			if err != nil {
				return err
			}
			if got != p1.Name && got != p2.Name {
				t.Fatalf("far answered %q: not a backend", got)
			}
			seen[got] = true
			if len(seen) < 2 {
				return fmt.Errorf("answered by %v only", seen)
			}
			return nil
		})
	})

	t.Run("HostProcessReachesServiceOnOtherNodes", func(t *testing.T) {
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "far", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out, err := n0.Exec(ctx, "curl", "-s", "-m", "3", "http://"+svc.Spec.ClusterIP+"/hostname")
		if err != nil || (out != p1.Name && out != p2.Name) {
			t.Fatalf("a host process of %s asked far's ClusterIP: %q (%v)", n0.Name, out, err)
		}
	})

	t.Run("ClusterDNSOnEveryNode", func(t *testing.T) {
		for _, p := range []*corev1.Pod{p0, p1, p2} {
			got := podExec(t, m, ns, p.Name, "/testserver", "get", "http://127.0.0.1:8080/dns?name=kubernetes.default.svc.cluster.local")
			if got != "10.96.0.1" {
				t.Errorf("kubernetes.default from %s: %q", p.Spec.NodeName, got)
			}
		}
	})

	// NodePort Services whose only backend is on n2, asked at n0 by a
	// client outside the cluster.
	outside, err := m.Topology.AddHost(0)
	if err != nil {
		t.Fatal(err)
	}
	nodePort := func(name string, policy corev1.ServiceExternalTrafficPolicy) int32 {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: policy,
				Selector: map[string]string{"on": n2.Name},
				Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		svc, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Spec.Ports[0].NodePort
	}
	clusterPort := nodePort("np-cluster", corev1.ServiceExternalTrafficPolicyCluster)
	localPort := nodePort("np-local", corev1.ServiceExternalTrafficPolicyLocal)
	ask := func(node *cluster.MultiNode, port int32) (string, error) {
		return cluster.InHost(ctx, outside, "curl", "-s", "-m", "3", fmt.Sprintf("http://%s:%d/hostname", node.Address, port))
	}

	t.Run("NodePortFromOutsideToAnotherNode", func(t *testing.T) {
		for _, n := range []*cluster.MultiNode{n0, n1, n2} {
			poll(t, "NodePort "+n.Name, 30*time.Second, func() error {
				if out, err := ask(n, clusterPort); err != nil || out != p2.Name {
					return fmt.Errorf("answered %q (%v), want %s", out, err, p2.Name)
				}
				return nil
			})
		}
	})

	t.Run("ExternalTrafficPolicyLocal", func(t *testing.T) {
		poll(t, "Local NodePort at the backend's node", 30*time.Second, func() error {
			if out, err := ask(n2, localPort); err != nil || out != p2.Name {
				return fmt.Errorf("answered %q (%v), want %s", out, err, p2.Name)
			}
			return nil
		})
		// Kubernetes drops it on a node without a local backend: no answer,
		// from any pod.
		for _, n := range []*cluster.MultiNode{n0, n1} {
			if out, err := ask(n, localPort); err == nil {
				t.Errorf("Local NodePort at %s (no local backend) answered %q", n.Name, out)
			}
		}
	})

	t.Run("ExternalIPAndLoadBalancerToAnotherNode", func(t *testing.T) {
		ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: ns},
			Spec: corev1.ServiceSpec{ExternalIPs: []string{"203.0.113.239"}, Selector: map[string]string{"on": n2.Name},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		lb := ext.DeepCopy()
		lb.Name, lb.Spec.ExternalIPs, lb.Spec.Type = "lb", nil, corev1.ServiceTypeLoadBalancer
		for _, svc := range []*corev1.Service{ext, lb} {
			if _, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		lbIP := ""
		poll(t, "a LoadBalancer address from the pool", 30*time.Second, func() error {
			svc, err := cs.CoreV1().Services(ns).Get(ctx, "lb", metav1.GetOptions{})
			if err != nil || len(svc.Status.LoadBalancer.Ingress) == 0 {
				return fmt.Errorf("no ingress yet (%v)", err)
			}
			lbIP = svc.Status.LoadBalancer.Ingress[0].IP
			return nil
		})
		for _, ip := range []string{"203.0.113.239", lbIP} {
			// The outside network sends the address to n0 (on segment 0);
			// the backend is on n2, across the router.
			if out, err := cluster.InHost(ctx, outside, "ip", "route", "add", ip+"/32", "via", n0.Address.String()); err != nil {
				t.Fatalf("route %s via %s: %v %s", ip, n0.Name, err, out)
			}
			poll(t, "Service address "+ip+" through "+n0.Name, 30*time.Second, func() error {
				out, err := cluster.InHost(ctx, outside, "curl", "-s", "-m", "3", "http://"+ip+"/hostname")
				if err != nil || out != p2.Name {
					return fmt.Errorf("answered %q (%v), want %s", out, err, p2.Name)
				}
				return nil
			})
		}
	})

	t.Run("NetworkPolicy", func(t *testing.T) {
		multiNodePolicy(t, ctx, m, outside)
	})

	t.Run("Ingress", func(t *testing.T) { testIngress(t, ctx, m, outside) })

	t.Run("NodeDaemonCrashKeepsForwarding", func(t *testing.T) {
		// An established connection across segments, from n0's namespace.
		conn, err := n0.Dial("tcp", p2.Status.PodIP+":9000", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		echo(t, conn, "before")
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "far", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n0.Kill()
		echo(t, conn, "while the node daemon is dead")
		for i := range 5 {
			out, err := n0.Exec(ctx, "curl", "-s", "-m", "3", "http://"+svc.Spec.ClusterIP+"/hostname")
			if err != nil || (out != p1.Name && out != p2.Name) {
				t.Fatalf("new Service connection %d with the daemon dead: %q (%v)", i, out, err)
			}
		}
		n0.Start()
		echo(t, conn, "after the restart")
	})

	t.Run("MachineGone", func(t *testing.T) {
		// A Deployment that tolerates an unreachable node for 5 s (instead
		// of the default 300 s) and prefers n2, so that n2 surely has one
		// of its pods (the default spreading alone could leave it none).
		dep := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: spread, namespace: %s}
spec:
  replicas: 3
  selector: {matchLabels: {app: spread}}
  template:
    metadata: {labels: {app: spread}}
    spec:
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [%s]}]}
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - {name: c, image: %s, readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}}
`, ns, n2.Name, images.TestServer)
		kubectl(t, m.Server, dep, "apply", "-f", "-")
		kubectl(t, m.Server, "", "-n", ns, "expose", "deployment", "spread", "--port", "80", "--target-port", "8080")
		kubectl(t, m.Server, "", "-n", ns, "rollout", "status", "deployment/spread", "--timeout=120s")
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "spread", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		onGone := podsOn(t, ctx, cs, ns, "app=spread", n2.Name)
		if len(onGone) == 0 {
			t.Fatalf("no spread pod on %s: the test would prove nothing", n2.Name)
		}
		gone := map[string]bool{}
		for _, p := range onGone {
			gone[p.Name] = true
		}
		n2.PowerOff()
		// The pod is replaced on a live node and leaves the endpoints.
		poll(t, "the lost pod replaced and out of the endpoints", 120*time.Second, func() error {
			list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=spread"})
			if err != nil {
				return err
			}
			ready := 0
			for _, p := range list.Items {
				if p.Spec.NodeName != n2.Name && p.DeletionTimestamp == nil && isReady(&p) {
					ready++
				}
			}
			if ready < 3 {
				return fmt.Errorf("%d ready pods off %s", ready, n2.Name)
			}
			ips, err := endpointIPs(ctx, cs, ns, "spread")
			if err != nil {
				return err
			}
			for _, p := range onGone {
				if ips[p.Status.PodIP] {
					return fmt.Errorf("the lost pod %s (%s) is still an endpoint", p.Name, p.Status.PodIP)
				}
			}
			return nil
		})
		// Clients keep getting answers, from the pods that are left.
		for i := range 10 {
			out, err := n0.Exec(ctx, "curl", "-s", "-m", "3", "http://"+svc.Spec.ClusterIP+"/hostname")
			if err != nil || !strings.HasPrefix(out, "spread-") || gone[out] {
				t.Fatalf("request %d to spread after %s went: %q (%v)", i, n2.Name, out, err)
			}
		}
	})
}

// testPod is a pod of the test image with the given labels.
func testPod(name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "c", Image: images.TestServer,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}}}}}
}

// waitServing waits for a pod to be Ready and returns it.
func waitServing(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	poll(t, "pod "+name+" ready", 120*time.Second, func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !isReady(p) {
			return fmt.Errorf("phase %s, not ready", p.Status.Phase)
		}
		pod = p
		return nil
	})
	return pod
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podExec runs a command in a pod with kubectl exec and returns its output.
func podExec(t *testing.T, m *cluster.Multi, ns, pod string, args ...string) string {
	t.Helper()
	out, err := podExecErr(m, ns, pod, args...)
	if err != nil {
		t.Errorf("exec %v in %s: %v", args, pod, err)
	}
	return out
}

func podExecErr(m *cluster.Multi, ns, pod string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := m.Kubectl(ctx, "", append([]string{"-n", ns, "exec", pod, "--"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, out)
	}
	return withoutKlog(out), nil
}

// klogLine is a line of kubectl's own log on its stderr (client-go's
// "E1203 18:50:56.308212 14009 websocket.go:296] Unknown stream id 1,
// discarding message" came once between the command's answer and the
// test), not the command's output.
var klogLine = regexp.MustCompile(`(?m)^[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+ +\d+ [^\]]+\] .*\n?`)

func withoutKlog(out string) string { return strings.TrimSpace(klogLine.ReplaceAllString(out, "")) }

// echo writes msg on an echo connection and checks it comes back.
func echo(t *testing.T, conn net.Conn, msg string) {
	t.Helper()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatalf("echo %q: write: %v", msg, err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo %q: got %q (%v)", msg, buf, err)
	}
}

// podsOn lists the pods matching selector bound to node.
func podsOn(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, selector, node string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.Spec.NodeName == node {
			out = append(out, p)
		}
	}
	return out
}

// endpointIPs are the ready addresses in a Service's EndpointSlices.
func endpointIPs(ctx context.Context, cs kubernetes.Interface, ns, svc string) (map[string]bool, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + svc})
	if err != nil {
		return nil, err
	}
	ips := map[string]bool{}
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				for _, a := range e.Addresses {
					ips[a] = true
				}
			}
		}
	}
	return ips, nil
}

// multiNodePolicy is the NetworkPolicy truth table across nodes: pod i of
// namespace j on node (i+j) mod 3, so every row crosses both a segment
// (native routes) and the router (VXLAN) and every namespace spans all
// nodes; each pod is probed from its own node. Then a NodePort asked from
// outside the cluster is judged by its backend's ingress policy.
func multiNodePolicy(t *testing.T, ctx context.Context, m *cluster.Multi, outside topology.Host) {
	cs := m.Clientset()
	nodes := map[string]*cluster.MultiNode{}
	for _, n := range m.Nodes {
		nodes[n.Name] = n
	}
	t.Cleanup(func() {
		for _, ns := range npNamespaces {
			_ = cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
		}
	})
	tb := setupNPTable(t, ctx, cs, func(i, j int) string { return m.Nodes[(i+j)%len(m.Nodes)].Name })
	tb.get = func(from *npPod, u string) (string, error) {
		out, err := nodes[from.pod.Spec.NodeName].Exec(ctx, "curl", "-s", "-f", "-m", "10", u)
		if err != nil {
			return "", fmt.Errorf("curl %s on %s: %w: %s", u, from.pod.Spec.NodeName, err, out)
		}
		return out, nil
	}
	tb.run(t, npScenarios(tb))

	t.Run("NodePortFromOutsideJudgedByTheBackendsIngress", func(t *testing.T) {
		backend := tb.byName["x/a"]
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "np-policy", Namespace: "x"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
				Selector: map[string]string{"pod": "a"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		svc, err := cs.CoreV1().Services("x").Create(ctx, svc, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		at := nodes[backend.pod.Spec.NodeName]
		url := fmt.Sprintf("http://%s:%d/hostname", at.Address, svc.Spec.Ports[0].NodePort)
		ask := func() (string, error) { return cluster.InHost(ctx, outside, "curl", "-s", "-m", "2", url) }
		tb.apply(t, nil)
		poll(t, "the NodePort answering with no policy", 30*time.Second, func() error {
			if out, err := ask(); err != nil || out != "a" {
				return fmt.Errorf("answered %q (%v)", out, err)
			}
			return nil
		})
		all := &metav1.LabelSelector{}
		ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		tb.apply(t, []*networkingv1.NetworkPolicy{npPolicy("x", "deny-in", all, ingress, nil, nil)})
		poll(t, "the NodePort denied by x's deny-all ingress", 10*time.Second, func() error {
			if out, err := ask(); err == nil {
				return fmt.Errorf("answered %q", out)
			}
			return nil
		})
		// The client's address reaches the backend (a local backend, no
		// SNAT): an ipBlock of it lets it in.
		tb.apply(t, []*networkingv1.NetworkPolicy{npPolicy("x", "from-outside", all, ingress, []networkingv1.NetworkPolicyIngressRule{{
			From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: outside.Address.String() + "/32"}}}}}, nil)})
		poll(t, "the NodePort allowed by an ipBlock of the outside client", 10*time.Second, func() error {
			if out, err := ask(); err != nil || out != "a" {
				return fmt.Errorf("answered %q (%v)", out, err)
			}
			return nil
		})
		tb.apply(t, nil)
	})
}
