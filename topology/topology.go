// Package topology builds, on one machine, the network a multi-node Petrel
// cluster runs on: one or two bridged segments in the root network
// namespace, a network namespace per node with an uplink on its segment, a
// plain Linux router namespace between the segments, and a cgroup subtree
// per node. `petrel up --nodes N` and the multi-node tests (test/cluster)
// both build their clusters with it, so that what a test proves is what a
// user runs.
//
// Addresses come from the documentation ranges only: segment 0 is
// 198.51.100.0/24 (the root namespace, where the API server runs, is .1 on
// it), segment 1 is 203.0.113.0/24. The router is .254 on both.
package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Segments' subnets, in order. Only two documentation ranges are free for
// this (192.0.2.0/24 belongs to the machine's own uplink), so at most two
// segments.
var segmentPrefixes = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}

// MaxSegments is how many segments a topology can have.
const MaxSegments = 2

// MaxNodes keeps node addresses (.10 up) clear of the router (.254) and of
// outside hosts (.200 up).
const MaxNodes = 150

// routerHost is the router's host number on every segment.
const routerHost = 254

// Spec says what to build.
type Spec struct {
	// Name prefixes every namespace, link, cgroup and node name of the
	// topology: short (≤ 6 characters of [a-z0-9]) because link names are
	// limited to 15 bytes.
	Name string
	// Nodes is how many node namespaces (1 up to MaxNodes).
	Nodes int
	// Segments is how many L2 segments (1 or 2); nodes are split over them
	// in order, so with 3 nodes and 2 segments n0 and n1 share segment 0.
	Segments int
	// Wait is how long Build waits for another topology on the machine to
	// go (they would share the same addresses); 0 fails at once.
	Wait time.Duration
}

// Node is one node's place in the topology.
type Node struct {
	// Name is the node's name (<spec name>-n<i>); it also names the node's
	// network namespace under /run/netns.
	Name string
	// Segment is the index of the node's segment.
	Segment int
	// Address is the node's uplink address (its InternalIP).
	Address netip.Addr
	// Netns is the path of the node's network namespace.
	Netns string
	// Cgroup is the node's cgroup subtree (relative to the cgroup v2 mount):
	// the socket load balancer of the node is attached there.
	Cgroup string
	// PodCgroup is where the node's pods go (under Cgroup).
	PodCgroup string
	// DaemonCgroup is where the node daemon and the node's host processes
	// run (under Cgroup, so that Services answer them).
	DaemonCgroup string
}

// Topology is a built topology.
type Topology struct {
	Spec
	// ServerAddress is the root namespace's address on segment 0, where the
	// API server is reached from the nodes.
	ServerAddress netip.Addr
	// Nodes are the nodes, in order.
	Nodes []Node
	// Hosts are outside hosts added with AddHost.
	Hosts []Host
	// Extra are the bare namespaces added with AddNetns, by path.
	Extra []string
	// lock is held while the topology exists: one per machine.
	lock *os.File
}

// Host is a network namespace on a segment that runs no Petrel: a client
// outside the cluster.
type Host struct {
	Name    string
	Segment int
	Address netip.Addr
	Netns   string
}

var validName = regexp.MustCompile(`^[a-z][a-z0-9]{0,5}$`)

func (s Spec) validate() error {
	if !validName.MatchString(s.Name) {
		return fmt.Errorf("topology name %q: use 1-6 characters of a-z and 0-9, starting with a letter (link names are at most 15 bytes)", s.Name)
	}
	if s.Nodes < 1 || s.Nodes > MaxNodes {
		return fmt.Errorf("%d nodes: use 1 to %d", s.Nodes, MaxNodes)
	}
	if s.Segments < 1 || s.Segments > MaxSegments {
		return fmt.Errorf("%d segments: use 1 or 2 (only two documentation address ranges are free for them)", s.Segments)
	}
	if s.Segments > s.Nodes {
		return fmt.Errorf("%d segments for %d nodes: every segment needs a node", s.Segments, s.Nodes)
	}
	return nil
}

// Plan lays the topology out without building anything.
func Plan(spec Spec) (*Topology, error) {
	if err := spec.validate(); err != nil {
		return nil, err
	}
	t := &Topology{Spec: spec, ServerAddress: hostAddress(0, 1)}
	for i := range spec.Nodes {
		seg := i * spec.Segments / spec.Nodes
		name := fmt.Sprintf("%s-n%d", spec.Name, i)
		cg := spec.Name + "-n" + fmt.Sprint(i)
		t.Nodes = append(t.Nodes, Node{Name: name, Segment: seg, Address: hostAddress(seg, 10+i), Netns: netnsPath(name),
			Cgroup: cg, PodCgroup: cg + "/pods", DaemonCgroup: cg + "/node"})
	}
	return t, nil
}

// Build creates the topology: segments, router, node namespaces and their
// cgroups. On error what was made is removed again.
func Build(spec Spec) (_ *Topology, err error) {
	t, err := Plan(spec)
	if err != nil {
		return nil, err
	}
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if t.lock, err = lockMachine(spec.Wait); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = t.Remove()
		}
	}()
	for seg := range spec.Segments {
		if err := t.buildSegment(seg); err != nil {
			return nil, err
		}
	}
	if spec.Segments > 1 {
		if err := t.buildRouter(); err != nil {
			return nil, err
		}
	}
	for _, n := range t.Nodes {
		if err := t.attach(n.Name, n.Segment, n.Address); err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, cg := range []string{n.PodCgroup, n.DaemonCgroup} {
			if err := makeCgroup(cg); err != nil {
				return nil, fmt.Errorf("node %s: %w", n.Name, err)
			}
		}
	}
	return t, nil
}

// AddHost adds an outside host (a network namespace with an address on the
// segment, routes to the other segment, no Petrel) and returns it.
func (t *Topology) AddHost(segment int) (Host, error) {
	if segment < 0 || segment >= t.Segments {
		return Host{}, fmt.Errorf("segment %d: the topology has %d", segment, t.Segments)
	}
	i := len(t.Hosts)
	if i >= 50 {
		return Host{}, errors.New("at most 50 outside hosts")
	}
	name := fmt.Sprintf("%s-h%d", t.Name, i)
	h := Host{Name: name, Segment: segment, Address: hostAddress(segment, 200+i), Netns: netnsPath(name)}
	t.Hosts = append(t.Hosts, h)
	if err := t.attach(name, segment, h.Address); err != nil {
		return Host{}, fmt.Errorf("host %s: %w", name, err)
	}
	return h, nil
}

// AddNetns adds a bare network namespace that belongs to the topology
// (<name>-p<i>, only a loopback, down) and returns its path: a pod of a
// baseline that runs without Petrel, wired by the caller. Remove and
// RemoveNamed delete it with the rest.
func (t *Topology) AddNetns() (string, error) {
	i := len(t.Extra)
	if i >= 50 {
		return "", errors.New("at most 50 extra namespaces")
	}
	name := fmt.Sprintf("%s-p%d", t.Name, i)
	if err := newNamedNetns(name); err != nil {
		return "", err
	}
	t.Extra = append(t.Extra, netnsPath(name))
	return netnsPath(name), nil
}

// hostAddress is host number host on segment seg.
func hostAddress(seg, host int) netip.Addr {
	a := segmentPrefixes[seg].Addr().As4()
	a[3] = byte(host)
	return netip.AddrFrom4(a)
}

func bridgeName(name string, seg int) string { return fmt.Sprintf("%ss%d", name, seg) }

func netnsPath(name string) string { return filepath.Join("/run/netns", name) }

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("building network namespaces, bridges and cgroups needs root")
	}
	return nil
}

// buildSegment makes the segment's bridge; segment 0's carries the root
// namespace's address (the API server's), and the root namespace reaches
// segment 1 through the router.
func (t *Topology) buildSegment(seg int) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridgeName(t.Name, seg)}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge %s: %w (a topology named %q may be up already: remove it with --cleanup)", br.Name, err, t.Name)
	}
	if seg == 0 {
		if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(t.ServerAddress, 24)}); err != nil {
			return fmt.Errorf("address of bridge %s: %w", br.Name, err)
		}
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring bridge %s up: %w", br.Name, err)
	}
	return nil
}

// buildRouter makes the router namespace with a leg on each segment; the
// root namespace routes segment 1 through it.
func (t *Topology) buildRouter() error {
	name := t.Name + "-r"
	if err := newNamedNetns(name); err != nil {
		return err
	}
	for seg := range t.Segments {
		if err := t.uplink(name, fmt.Sprintf("eth%d", seg), seg, hostAddress(seg, routerHost), fmt.Sprintf("%sr%d", t.Name, seg)); err != nil {
			return fmt.Errorf("router: %w", err)
		}
	}
	if err := InNetns(name, func() error {
		return writeSysctls(map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0", "net/ipv4/conf/default/rp_filter": "0"})
	}); err != nil {
		return fmt.Errorf("router: %w", err)
	}
	return netlink.RouteReplace(&netlink.Route{Dst: prefixNetOf(segmentPrefixes[1]), Gw: hostAddress(0, routerHost).AsSlice(), Protocol: routeProtocol})
}

// routeProtocol marks the root namespace's routes the topology made.
const routeProtocol netlink.RouteProtocol = 0x51

// attach makes network namespace name (a node or an outside host) with an
// uplink eth0 at addr on segment seg, a default route on its segment, a
// route to the other segment through the router, and the sysctls a node
// forwarding pod traffic needs.
func (t *Topology) attach(name string, seg int, addr netip.Addr) error {
	if err := newNamedNetns(name); err != nil {
		return err
	}
	// The root side is named after the namespace: "ab-n0" has "abn0".
	if err := t.uplink(name, "eth0", seg, addr, strings.ReplaceAll(name, "-", "")); err != nil {
		return err
	}
	return InNetns(name, func() error {
		// Pods' traffic to other nodes is forwarded by the node; replies
		// between segments may come back another way than they left.
		if err := writeSysctls(map[string]string{"net/ipv4/ip_forward": "1", "net/ipv4/conf/all/rp_filter": "0",
			"net/ipv4/conf/default/rp_filter": "0", "net/ipv4/conf/eth0/rp_filter": "0"}); err != nil {
			return err
		}
		eth0, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		gw := t.ServerAddress
		if seg != 0 {
			gw = hostAddress(seg, routerHost)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		for other := range t.Segments {
			if other == seg || seg != 0 {
				continue
			}
			if err := netlink.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: prefixNetOf(segmentPrefixes[other]),
				Gw: hostAddress(seg, routerHost).AsSlice()}); err != nil {
				return fmt.Errorf("route to segment %d: %w", other, err)
			}
		}
		return nil
	})
}

// uplink connects namespace ns to segment seg with a veth: peer inside,
// named inner, with addr/24; the root side, named outer, on the bridge.
func (t *Topology) uplink(ns, inner string, seg int, addr netip.Addr, outer string) error {
	handle, err := netns.GetFromPath(netnsPath(ns))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", ns, err)
	}
	defer handle.Close()
	br, err := netlink.LinkByName(bridgeName(t.Name, seg))
	if err != nil {
		return fmt.Errorf("bridge of segment %d: %w", seg, err)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: outer, MasterIndex: br.Attrs().Index}, PeerName: inner,
		PeerNamespace: netlink.NsFd(handle)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("veth %s: %w", outer, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("bring %s up: %w", outer, err)
	}
	nh, err := netlink.NewHandleAt(handle)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", ns, err)
	}
	defer nh.Close()
	for _, ifname := range []string{"lo", inner} {
		l, err := nh.LinkByName(ifname)
		if err != nil {
			return fmt.Errorf("%s in %s: %w", ifname, ns, err)
		}
		if ifname == inner {
			if err := nh.AddrAdd(l, &netlink.Addr{IPNet: prefixNet(addr, 24)}); err != nil {
				return fmt.Errorf("address %s in %s: %w", addr, ns, err)
			}
		}
		if err := nh.LinkSetUp(l); err != nil {
			return fmt.Errorf("bring %s up in %s: %w", ifname, ns, err)
		}
	}
	return nil
}

func prefixNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

func prefixNetOf(p netip.Prefix) *net.IPNet { return prefixNet(p.Addr(), p.Bits()) }

// newNamedNetns makes /run/netns/name without moving this process there.
func newNamedNetns(name string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current network namespace: %w", err)
	}
	defer orig.Close()
	h, err := netns.NewNamed(name)
	if err != nil {
		_ = netns.Set(orig)
		return fmt.Errorf("network namespace %s: %w", name, err)
	}
	h.Close()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: never let it run Go code again.
		runtime.LockOSThread()
		return fmt.Errorf("return to the root network namespace: %w", err)
	}
	return nil
}

// InNetns runs fn on a thread inside network namespace name (/run/netns/name); fn must not start
// goroutines that depend on the namespace.
func InNetns(name string, fn func() error) error {
	h, err := netns.GetFromPath(netnsPath(name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer h.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", name, err)
			runtime.UnlockOSThread()
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread exits with the goroutine, still locked
		errc <- err
	}()
	return <-errc
}

// writeSysctls sets /proc/sys entries for the calling thread's network
// namespace.
func writeSysctls(values map[string]string) error {
	for k, v := range values {
		if err := os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// lockPath is the machine-wide lock of a topology: two at once would put
// the same segment addresses on two bridges.
const lockPath = "/run/lock/petrel-topology.lock"

// lockMachine takes the topology lock, waiting up to wait for it.
func lockMachine(wait time.Duration) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("topology lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, errors.New("another multi-node topology is up on this machine (petrel up --nodes or a multi-node test): they would share 198.51.100.0/24; stop it first")
			}
			return nil, fmt.Errorf("topology lock: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// AddServerAddress gives the root namespace one more address on segment
// 0's bridge (198.51.100.2, .3, ...: the k-th, from 1) for another API
// server, reached by the nodes as the first one is. The bridge's removal
// takes it away.
func (t *Topology) AddServerAddress(k int) (netip.Addr, error) {
	if k < 1 || k > 8 {
		return netip.Addr{}, fmt.Errorf("server address %d: use 1 to 8", k)
	}
	addr := hostAddress(0, 1+k)
	br, err := netlink.LinkByName(bridgeName(t.Name, 0))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("bridge of segment 0: %w", err)
	}
	if err := netlink.AddrAdd(br, &netlink.Addr{IPNet: prefixNet(addr, 24)}); err != nil {
		return netip.Addr{}, fmt.Errorf("address %s on %s: %w", addr, br.Attrs().Name, err)
	}
	return addr, nil
}
