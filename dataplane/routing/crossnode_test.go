package routing

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/cni"
	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// The cross-node test builds, in network namespaces of its own:
//
//	fabric netns: bridge s0 (198.51.100.0/24) and bridge s1 (203.0.113.0/24)
//	router netns: 198.51.100.1 on s0, 203.0.113.1 on s1, forwarding
//	node a (198.51.100.10) and node b (198.51.100.11) on s0, node c
//	(203.0.113.10) on s1, each with its default route through the router,
//	tc_pod, tc_nodeport on its uplink, the tunnel device, pins of its own,
//	one pod set up by the cni package and the routing reconciler fed with
//	fake Nodes.
//
// Pods answer with their name and the address they saw, so an answer
// proves who spoke (this VM answers TCP connects to unknown addresses).

const (
	podTCPPort = 7000
	podUDPPort = 7001
)

type testNode struct {
	name    string
	ns      string // network namespace
	addr    string // uplink address
	cidr    string // podCIDR
	segment int
	pinDir  string
	podNS   string
	podIP   netip.Addr
	handle  *netlink.Handle
	router  *Router
	stop    context.CancelFunc
}

// topology is one test's namespaces and nodes.
type topology struct {
	t      *testing.T
	prefix string
	fabric string
	client string // an outside client's namespace (198.51.100.50)
	nodes  map[string]*testNode
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// inNS runs fn on a thread in the named network namespace. The thread is
// never unlocked, so Go discards it afterwards instead of reusing it in
// the wrong namespace.
func inNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func sysctl(t *testing.T, ns, key, value string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+value).CombinedOutput(); err != nil {
		t.Fatalf("sysctl %s in %s: %v %s", key, ns, err, out)
	}
}

// newTopology builds the fabric, the router and the three nodes' uplinks;
// Cleanup removes every namespace and pin directory it made, by name.
func newTopology(t *testing.T) *topology {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and BPF (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
	prefix := fmt.Sprintf("pt%d", os.Getpid()%100000)
	topo := &topology{t: t, prefix: prefix, fabric: prefix + "-fab", nodes: map[string]*testNode{}}
	pinRoot := filepath.Join(bpfobj.BPFFSRoot, "petrel-test-"+prefix+"-"+strings.ReplaceAll(t.Name(), "/", "-"))
	var made []string
	addNS := func(name string) {
		ipCmd(t, "netns", "add", name)
		made = append(made, name)
	}
	t.Cleanup(func() {
		for _, n := range topo.nodes {
			if n.stop != nil {
				n.stop()
			}
			if n.router != nil {
				n.router.Close()
			}
			if n.handle != nil {
				n.handle.Close()
			}
		}
		for _, name := range made {
			_ = exec.Command("ip", "netns", "del", name).Run()
		}
		for _, n := range topo.nodes {
			_ = bpfobj.Remove(n.pinDir)
		}
		_ = os.Remove(pinRoot)
	})
	addNS(topo.fabric)
	for _, br := range []string{"s0", "s1"} { // 198.51.100.0/24, 203.0.113.0/24
		ipCmd(t, "-n", topo.fabric, "link", "add", br, "type", "bridge")
		ipCmd(t, "-n", topo.fabric, "link", "set", br, "up")
	}
	router := prefix + "-rtr"
	addNS(router)
	for i, addr := range []string{"198.51.100.1/24", "203.0.113.1/24"} {
		dev := fmt.Sprintf("r%d", i)
		ipCmd(t, "-n", router, "link", "add", dev, "type", "veth", "peer", "name", dev, "netns", topo.fabric)
		ipCmd(t, "-n", topo.fabric, "link", "set", dev, "master", fmt.Sprintf("s%d", i), "up")
		ipCmd(t, "-n", router, "addr", "add", addr, "dev", dev)
		ipCmd(t, "-n", router, "link", "set", dev, "up")
	}
	sysctl(t, router, "net.ipv4.ip_forward", "1")

	// An outside client on segment 0, for NodePorts.
	topo.client = prefix + "-cli"
	addNS(topo.client)
	ipCmd(t, "-n", topo.client, "link", "add", "eth0", "type", "veth", "peer", "name", "up-cli", "netns", topo.fabric)
	ipCmd(t, "-n", topo.fabric, "link", "set", "up-cli", "master", "s0", "up")
	ipCmd(t, "-n", topo.client, "addr", "add", "198.51.100.50/24", "dev", "eth0")
	ipCmd(t, "-n", topo.client, "link", "set", "eth0", "up")
	ipCmd(t, "-n", topo.client, "link", "set", "lo", "up")
	ipCmd(t, "-n", topo.client, "route", "add", "default", "via", "198.51.100.1")

	for _, n := range []*testNode{
		{name: "a", addr: "198.51.100.10", cidr: "10.244.1.0/24", segment: 0},
		{name: "b", addr: "198.51.100.11", cidr: "10.244.2.0/24", segment: 0},
		{name: "c", addr: "203.0.113.10", cidr: "10.244.3.0/24", segment: 1},
	} {
		n.ns = prefix + "-" + n.name
		n.podNS = n.ns + "-pod"
		n.pinDir = filepath.Join(pinRoot, n.name)
		addNS(n.ns)
		addNS(n.podNS)
		ipCmd(t, "-n", n.ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", n.ns, "link", "add", "eth0", "type", "veth", "peer", "name", "up-"+n.name, "netns", topo.fabric)
		ipCmd(t, "-n", topo.fabric, "link", "set", "up-"+n.name, "master", fmt.Sprintf("s%d", n.segment), "up")
		ipCmd(t, "-n", n.ns, "addr", "add", n.addr+"/24", "dev", "eth0")
		ipCmd(t, "-n", n.ns, "link", "set", "eth0", "up")
		gw := "198.51.100.1"
		if n.segment == 1 {
			gw = "203.0.113.1"
		}
		ipCmd(t, "-n", n.ns, "route", "add", "default", "via", gw)
		// No host forwarding: pod traffic between nodes must take the
		// BPF paths.
		sysctl(t, n.ns, "net.ipv4.ip_forward", "0")
		// Strict, as many distributions ship: SetupTunnel must loosen it.
		sysctl(t, n.ns, "net.ipv4.conf.all.rp_filter", "0")
		sysctl(t, n.ns, "net.ipv4.conf.eth0.rp_filter", "1")
		topo.nodes[n.name] = n
	}
	return topo
}

// start loads the node's programs, makes its tunnel device and its pod,
// and runs its router on the given Nodes. It reports SetupTunnel's error.
func (topo *topology) start(n *testNode, mode Mode, cs *fake.Clientset) error {
	t := topo.t
	nsh, err := netns.GetFromName(n.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsh.Close()
	if n.handle, err = netlink.NewHandleAt(nsh); err != nil {
		t.Fatal(err)
	}
	var setupErr error
	err = inNS(n.ns, func() error {
		if err := bpfobj.LoadPodProgram(n.pinDir); err != nil {
			return err
		}
		if err := bpfobj.AttachNodePort(n.pinDir, []string{"eth0"}); err != nil {
			return err
		}
		uplink, err := Uplink(n.handle, netip.MustParseAddr(n.addr))
		if err != nil {
			return err
		}
		if setupErr = SetupTunnel(n.handle, mode, uplink, n.pinDir); setupErr != nil {
			return nil
		}
		c := &cni.Config{PluginConf: types.PluginConf{Name: "petrel-test"}, PodCIDR: n.cidr, DataDir: t.TempDir(),
			MTU: PodMTU(uplink.Attrs().MTU, mode), PinDir: n.pinDir}
		res, err := cni.Add(c, "pod-"+n.name, "/run/netns/"+n.podNS, "eth0")
		if err != nil {
			return fmt.Errorf("cni add: %w", err)
		}
		n.podIP, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
		return nil
	})
	if err != nil {
		t.Fatalf("node %s: %v", n.name, err)
	}
	if setupErr != nil {
		return setupErr
	}
	if err := inNS(n.podNS, func() error { return servePod(t, n.name) }); err != nil {
		t.Fatalf("pod servers of %s: %v", n.name, err)
	}
	n.router, err = New(Config{Self: n.name, Handle: n.handle, Mode: mode, PinDir: n.pinDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	if err := n.router.Run(ctx, informers.NewSharedInformerFactory(cs, 0)); err != nil {
		t.Fatal(err)
	}
	return nil
}

// servePod listens (in the current thread's namespace: the pod's) on TCP
// and UDP; each answer is "<pod name> <address it saw>".
func servePod(t *testing.T, name string) error {
	ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", podTCPPort))
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", podUDPPort))
	if err != nil {
		ln.Close()
		return err
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					if _, err := fmt.Fprintf(c, "%s %s\n", name, host); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(from.String())
			_, _ = pc.WriteTo([]byte(name+" "+host), from)
		}
	}()
	return nil
}

// ask sends one request from the namespace ns to a pod's server and
// returns the answer (TCP: a line; UDP: a datagram).
func ask(ns, proto string, to netip.Addr) (string, error) {
	port := podTCPPort
	if proto == "udp" {
		port = podUDPPort
	}
	return askPort(ns, proto, netip.AddrPortFrom(to, uint16(port)))
}

// expect retries ask until the answer is want (routes and neighbours take
// a moment), or fails.
func expect(t *testing.T, ns, proto string, to netip.Addr, want string) {
	t.Helper()
	var got string
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, err = ask(ns, proto, to)
		if err == nil && got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if os.Getenv("PETREL_TEST_KEEP") != "" {
		t.Logf("keeping the namespaces for 90s")
		time.Sleep(90 * time.Second)
	}
	t.Fatalf("%s %s → %s: got %q (err %v), want %q", ns, proto, to, got, err, want)
}

func (n *testNode) stats(t *testing.T) map[string]uint64 {
	t.Helper()
	m, err := bpfobj.OpenPinnedMap(n.pinDir, bpfobj.MapForwardStats)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := bpfobj.ForwardStats(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (n *testNode) tunnelEntries(t *testing.T) map[string]bpfobj.TunnelEntry {
	t.Helper()
	m, err := bpfobj.OpenPinnedMap(n.pinDir, bpfobj.MapTunnel)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rows, err := bpfobj.TunnelEntries(m)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bpfobj.TunnelEntry{}
	for _, r := range rows {
		out[r.PodCIDR.String()] = r
	}
	return out
}

// grew fails unless the counter went up since before.
func grew(t *testing.T, n *testNode, before map[string]uint64, counter string) {
	t.Helper()
	if after := n.stats(t); after[counter] <= before[counter] {
		t.Errorf("node %s: %s did not grow (%d → %d): the packets took another path; all: %v", n.name, counter, before[counter], after[counter], after)
	}
}

// clientset holds the three Nodes with their podCIDRs and addresses.
func (topo *topology) clientset() *fake.Clientset {
	cs := fake.NewClientset()
	for _, n := range topo.nodes {
		if _, err := cs.CoreV1().Nodes().Create(context.Background(), node(n.name, n.cidr, n.addr), metav1.CreateOptions{}); err != nil {
			topo.t.Fatal(err)
		}
	}
	return cs
}

// nodePort gives node n a NodePort (TCP and UDP) whose one backend is pod
// (on another node), as the proxy would program it.
func nodePort(t *testing.T, n *testNode, port uint16, backend netip.Addr, id uint32) {
	t.Helper()
	open := func(name string) *ebpf.Map {
		m, err := bpfobj.OpenPinnedMap(n.pinDir, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	maps := bpfobj.Maps{NodeAddrs: open(bpfobj.MapNodeAddrs), Backends: open(bpfobj.MapBackends), Services: open(bpfobj.MapServices)}
	if err := maps.NodeAddrs.Put(bpfobj.AddrKey(netip.MustParseAddr(n.addr)), uint8(1)); err != nil {
		t.Fatal(err)
	}
	for i, proto := range []uint8{6, 17} {
		beID, beport := id*2+uint32(i), uint16(podTCPPort)
		if proto == 17 {
			beport = podUDPPort
		}
		if err := maps.Backends.Put(beID, bpfobj.Backend{Address: bpfobj.AddrKey(backend), Port: bpfobj.PortKey(beport), Proto: proto}); err != nil {
			t.Fatal(err)
		}
		slot := bpfobj.ServiceKey{Dport: bpfobj.PortKey(port), BackendSlot: 1, Proto: proto}
		if err := maps.Services.Put(slot, bpfobj.ServiceValue{BackendId: beID}); err != nil {
			t.Fatal(err)
		}
		slot.BackendSlot = 0
		if err := maps.Services.Put(slot, bpfobj.ServiceValue{Count: 1, RevNatIndex: uint16(beID), Flags: bpfobj.FlagNodePort}); err != nil {
			t.Fatal(err)
		}
	}
}

// askPort sends one request from the namespace ns to an address and port.
func askPort(ns, proto string, to netip.AddrPort) (string, error) {
	var answer string
	err := inNS(ns, func() error {
		c, err := net.DialTimeout(proto+"4", to.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who\n")); err != nil {
			return err
		}
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		answer = strings.TrimSpace(string(buf[:n]))
		return nil
	})
	return answer, err
}

// expectNodePort asks the client's namespace to reach node n's NodePort.
func expectNodePort(t *testing.T, topo *topology, n *testNode, proto string, port uint16, want string) {
	t.Helper()
	to := netip.AddrPortFrom(netip.MustParseAddr(n.addr), port)
	var got string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got, err = askPort(topo.client, proto, to); err == nil && got == want {
			return
		}
	}
	t.Fatalf("client %s → %s: got %q (err %v), want %q", proto, to, got, err, want)
}

// TestCrossNodeNativeAndVXLAN: auto mode. a and b share a segment (native,
// bpf_redirect_neigh), c is behind the router (VXLAN).
func TestCrossNodeNativeAndVXLAN(t *testing.T) {
	topo := newTopology(t)
	cs := topo.clientset()
	for _, name := range []string{"a", "b", "c"} {
		if err := topo.start(topo.nodes[name], ModeAuto, cs); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
	}
	a, b, c := topo.nodes["a"], topo.nodes["b"], topo.nodes["c"]

	// The map says native for b and VXLAN for c.
	entries := a.tunnelEntries(t)
	if e := entries["10.244.2.0/24"]; e.How != "native" || e.NodeAddr.String() != b.addr {
		t.Errorf("a's entry for b: %+v", e)
	}
	if e := entries["10.244.3.0/24"]; e.How != "vxlan" || e.NodeAddr.String() != c.addr {
		t.Errorf("a's entry for c: %+v", e)
	}
	if _, ok := entries["10.244.1.0/24"]; ok {
		t.Errorf("a has an entry for its own podCIDR: %v", entries)
	}

	// Pod to pod, native: no host forwarding anywhere, and the counters
	// show tc_pod's redirect_neigh on a and tc_nodeport's hand-over on b.
	beforeA, beforeB := a.stats(t), b.stats(t)
	for _, proto := range []string{"tcp", "udp"} {
		expect(t, a.podNS, proto, b.podIP, "b "+a.podIP.String())
		expect(t, b.podNS, proto, a.podIP, "a "+b.podIP.String())
	}
	grew(t, a, beforeA, "native_redirect_neigh")
	grew(t, b, beforeB, "uplink_to_pod")

	// Pod to pod across the router: VXLAN both ways.
	beforeA, beforeC := a.stats(t), c.stats(t)
	for _, proto := range []string{"tcp", "udp"} {
		expect(t, a.podNS, proto, c.podIP, "c "+a.podIP.String())
		expect(t, c.podNS, proto, a.podIP, "a "+c.podIP.String())
		expect(t, b.podNS, proto, c.podIP, "c "+b.podIP.String())
	}
	grew(t, a, beforeA, "encap_from_pod")
	grew(t, c, beforeC, "decap_to_pod")
	grew(t, c, beforeC, "encap_from_pod")

	// A host process of a reaches c's pod through the kernel route to the
	// tunnel device; the pod's answer comes back over the underlay, which
	// needs c to forward (as every node does) and a to accept a reply on
	// eth0 whose route points at the tunnel (loose rp_filter).
	for _, n := range topo.nodes {
		sysctl(t, n.ns, "net.ipv4.ip_forward", "1")
	}
	beforeA = a.stats(t)
	expect(t, a.ns, "tcp", c.podIP, "c "+a.addr)
	expect(t, a.ns, "udp", c.podIP, "c "+a.addr)
	expect(t, a.ns, "tcp", b.podIP, "b "+a.addr)
	grew(t, a, beforeA, "encap_from_host")

	// NodePorts of a whose backend is on b (native) or c (overlay): SNATed
	// to a's address, sent by the FIB (to c: the tunnel route, keyed by
	// tc_tunnel), answers NATed back by tc_nodeport.
	nodePort(t, a, 30080, b.podIP, 10)
	nodePort(t, a, 30081, c.podIP, 20)
	beforeA = a.stats(t)
	for _, proto := range []string{"tcp", "udp"} {
		expectNodePort(t, topo, a, proto, 30080, "b "+a.addr)
		expectNodePort(t, topo, a, proto, 30081, "c "+a.addr)
	}
	grew(t, a, beforeA, "encap_from_host")

	// A connection open while the loaders let go of everything: the pins
	// alone carry it, and new ones too.
	var conn net.Conn
	if err := inNS(a.podNS, func() error {
		var err error
		conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(c.podIP, podTCPPort).String(), 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	line := func() string {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("who\n")); err != nil {
			return err.Error()
		}
		s, err := bufio.NewReader(conn).ReadString('\n')
		if err != nil {
			return err.Error()
		}
		return strings.TrimSpace(s)
	}
	if got := line(); got != "c "+a.podIP.String() {
		t.Fatalf("open connection before: %q", got)
	}
	for _, n := range topo.nodes {
		n.stop()
		n.router.Close()
		n.router = nil
	}
	if got := line(); got != "c "+a.podIP.String() {
		t.Errorf("open connection after the loaders closed: %q", got)
	}
	expect(t, a.podNS, "tcp", b.podIP, "b "+a.podIP.String())
	expect(t, a.podNS, "udp", c.podIP, "c "+a.podIP.String())
	expectNodePort(t, topo, a, "tcp", 30081, "c "+a.addr)

	// Node a comes back (a restarted daemon): programs swapped into the
	// pinned links, the device kept, the map rewritten to the same.
	if err := inNS(a.ns, func() error {
		if err := bpfobj.LoadPodProgram(a.pinDir); err != nil {
			return err
		}
		if err := bpfobj.AttachNodePort(a.pinDir, []string{"eth0"}); err != nil {
			return err
		}
		uplink, err := Uplink(a.handle, netip.MustParseAddr(a.addr))
		if err != nil {
			return err
		}
		return SetupTunnel(a.handle, ModeAuto, uplink, a.pinDir)
	}); err != nil {
		t.Fatalf("restart a: %v", err)
	}
	var err error
	if a.router, err = New(Config{Self: a.name, Handle: a.handle, Mode: ModeAuto, PinDir: a.pinDir}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	if err := a.router.Run(ctx, informers.NewSharedInformerFactory(cs, 0)); err != nil {
		t.Fatal(err)
	}
	if got := line(); got != "c "+a.podIP.String() {
		t.Errorf("open connection after a restarted: %q", got)
	}
	expect(t, a.podNS, "tcp", b.podIP, "b "+a.podIP.String())
	expect(t, a.podNS, "tcp", c.podIP, "c "+a.podIP.String())
	if n := len(a.tunnelEntries(t)); n != 2 {
		t.Errorf("a has %d tunnel entries after the restart, want 2", n)
	}
}

// TestCrossNodeTunnelDisabled: --tunnel disabled is today's routing: kernel
// routes to nodes on the segment, no tunnel device, nothing in the map, so
// pod traffic between nodes goes through the host's forwarding.
func TestCrossNodeTunnelDisabled(t *testing.T) {
	topo := newTopology(t)
	cs := topo.clientset()
	for _, name := range []string{"a", "b", "c"} {
		if err := topo.start(topo.nodes[name], ModeDisabled, cs); err != nil {
			t.Fatalf("node %s: %v", name, err)
		}
		sysctl(t, topo.nodes[name].ns, "net.ipv4.ip_forward", "1")
	}
	a, b := topo.nodes["a"], topo.nodes["b"]
	if e := a.tunnelEntries(t); len(e) != 0 {
		t.Errorf("map entries with the tunnel disabled: %v", e)
	}
	if _, err := a.handle.LinkByName(VXLANDevice); err == nil {
		t.Errorf("%s exists with the tunnel disabled", VXLANDevice)
	}
	before := a.stats(t)
	expect(t, a.podNS, "tcp", b.podIP, "b "+a.podIP.String())
	if s := a.stats(t); s["native_redirect_neigh"] != before["native_redirect_neigh"] {
		t.Errorf("tc_pod redirected with the tunnel disabled: %v", s)
	}
}

// TestCrossNodeForcedTunnel: --tunnel vxlan and geneve send even a node on
// the same segment through the overlay.
func TestCrossNodeForcedTunnel(t *testing.T) {
	for _, mode := range []Mode{ModeVXLAN, ModeGeneve} {
		t.Run(string(mode), func(t *testing.T) {
			topo := newTopology(t)
			cs := topo.clientset()
			for _, name := range []string{"a", "b", "c"} {
				if err := topo.start(topo.nodes[name], mode, cs); err != nil {
					if mode == ModeGeneve && strings.Contains(err.Error(), "no geneve driver") {
						t.Skipf("this kernel cannot make Geneve devices: %v", err)
					}
					t.Fatalf("node %s: %v", name, err)
				}
			}
			a, b, c := topo.nodes["a"], topo.nodes["b"], topo.nodes["c"]
			if e := a.tunnelEntries(t)["10.244.2.0/24"]; e.How != string(mode) {
				t.Errorf("a's entry for b: %+v, want %s", e, mode)
			}
			beforeA, beforeB := a.stats(t), b.stats(t)
			for _, proto := range []string{"tcp", "udp"} {
				expect(t, a.podNS, proto, b.podIP, "b "+a.podIP.String())
				expect(t, a.podNS, proto, c.podIP, "c "+a.podIP.String())
			}
			grew(t, a, beforeA, "encap_from_pod")
			grew(t, b, beforeB, "decap_to_pod")
			// Pod packets are keyed once, by tc_pod, and nothing went natively.
			if s := a.stats(t); s["native_redirect_neigh"] != beforeA["native_redirect_neigh"] || s["encap_from_host"] != beforeA["encap_from_host"] {
				t.Errorf("a in mode %s: %v", mode, s)
			}
		})
	}
}
