package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/petrel-project/petrel/cni"
	"github.com/petrel-project/petrel/topology"
)

// The kernel-only baseline's links: the pod veth's node side, and the
// VXLAN device (flannel's flannel.1).
const (
	kernelPodVeth = "kpod"
	kernelVXLAN   = "kvx"
	vxlanPort     = 8472 // flannel's (the Linux default)
	vxlanVNI      = 1
	vxlanOverhead = 50
)

// kernelPodCIDR is node i's pod range in the kernel-only baseline, as node
// IPAM would give it: 10.244.i.0/24. The pod is .2; the VXLAN device has
// .0/32, as flannel gives flannel.1.
func kernelPodCIDR(i int) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
}

func kernelPodAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 244, byte(i), 2}) }

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// kernelNode is one node of the baseline with handles on its namespace and
// its pod's.
type kernelNode struct {
	topology.Node
	pod            string // the pod namespace's path
	node, podH     *netlink.Handle
	eth0, hostVeth netlink.Link
	vxlanMAC       net.HardwareAddr
}

func (k *kernelNode) close() {
	if k.node != nil {
		k.node.Close()
	}
	if k.podH != nil {
		k.podH.Close()
	}
}

// runKernelBaseline builds the topology with no Petrel: on each node a pod
// namespace wired as petrel-cni wires one (a veth, the pod's /32, a default
// route via a link-local gateway, a /32 route on the node), then measures
// native routing (podCIDR via the other node) and a flannel-style VXLAN
// overlay, each against node to node.
func runKernelBaseline(ctx context.Context, o Options, progress func(string, ...any)) (routes, vxlan modeFigures, err error) {
	topo, err := topology.Build(topologySpec(o))
	if err != nil {
		return routes, vxlan, err
	}
	defer func() {
		if rerr := topo.Remove(); rerr != nil && err == nil {
			err = fmt.Errorf("remove the kernel-only topology: %w", rerr)
		}
	}()
	nodes := make([]*kernelNode, len(topo.Nodes))
	for i, n := range topo.Nodes {
		nodes[i] = &kernelNode{Node: n}
		defer nodes[i].close()
		if err := wireKernelPod(topo, nodes[i], i); err != nil {
			return routes, vxlan, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	nodePath := netPath{name: "node_to_node",
		from: netEndpoint{netns: nodes[0].Netns, cgroup: nodes[0].DaemonCgroup, addr: nodes[0].Address},
		to:   netEndpoint{netns: nodes[1].Netns, cgroup: nodes[1].DaemonCgroup, addr: nodes[1].Address}}
	podPath := netPath{name: "pod_to_pod",
		from: netEndpoint{netns: nodes[0].pod, cgroup: nodes[0].DaemonCgroup, addr: kernelPodAddr(0)},
		to:   netEndpoint{netns: nodes[1].pod, cgroup: nodes[1].DaemonCgroup, addr: kernelPodAddr(1)}}

	for i, n := range nodes {
		for j, other := range nodes {
			if i == j {
				continue
			}
			if err := n.node.RouteReplace(&netlink.Route{LinkIndex: n.eth0.Attrs().Index, Dst: ipNet(kernelPodCIDR(j).Addr(), 24),
				Gw: other.Address.AsSlice()}); err != nil {
				return routes, vxlan, fmt.Errorf("node %s: route to %s via %s: %w", n.Name, kernelPodCIDR(j), other.Address, err)
			}
		}
	}
	if routes, err = measureMode(ctx, o, progress, "kernel routes", nodePath, podPath); err != nil {
		return routes, vxlan, err
	}

	if err := kernelOverlay(nodes); err != nil {
		return routes, vxlan, err
	}
	vxlan, err = measureMode(ctx, o, progress, "kernel vxlan", nodePath, podPath)
	return routes, vxlan, err
}

// wireKernelPod gives node n (the i-th) a pod namespace connected as
// petrel-cni connects a pod.
func wireKernelPod(topo *topology.Topology, n *kernelNode, i int) error {
	var err error
	if n.pod, err = topo.AddNetns(); err != nil {
		return err
	}
	nodeNS, err := netns.GetFromPath(n.Netns)
	if err != nil {
		return err
	}
	defer nodeNS.Close()
	podNS, err := netns.GetFromPath(n.pod)
	if err != nil {
		return err
	}
	defer podNS.Close()
	if n.node, err = netlink.NewHandleAt(nodeNS); err != nil {
		return err
	}
	if n.podH, err = netlink.NewHandleAt(podNS); err != nil {
		return err
	}
	if n.eth0, err = n.node.LinkByName("eth0"); err != nil {
		return err
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: kernelPodVeth}, PeerName: "eth0", PeerNamespace: netlink.NsFd(podNS)}
	if err := n.node.LinkAdd(veth); err != nil {
		return fmt.Errorf("pod veth: %w", err)
	}
	if n.hostVeth, err = n.node.LinkByName(kernelPodVeth); err != nil {
		return err
	}
	if err := n.node.LinkSetUp(n.hostVeth); err != nil {
		return err
	}
	addr := kernelPodAddr(i)
	if err := n.node.RouteAdd(&netlink.Route{LinkIndex: n.hostVeth.Attrs().Index, Dst: ipNet(addr, 32), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the pod: %w", err)
	}
	lo, err := n.podH.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := n.podH.LinkSetUp(lo); err != nil {
		return err
	}
	eth0, err := n.podH.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := n.podH.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(addr, 32)}); err != nil {
		return fmt.Errorf("pod address: %w", err)
	}
	if err := n.podH.LinkSetUp(eth0); err != nil {
		return err
	}
	idx := eth0.Attrs().Index
	if err := n.podH.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: ipNet(cni.Gateway, 32), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("pod route to the gateway: %w", err)
	}
	if err := n.podH.RouteAdd(&netlink.Route{LinkIndex: idx, Gw: cni.Gateway.AsSlice()}); err != nil {
		return fmt.Errorf("pod default route: %w", err)
	}
	return n.podH.NeighSet(&netlink.Neigh{LinkIndex: idx, IP: cni.Gateway.AsSlice(), HardwareAddr: n.hostVeth.Attrs().HardwareAddr,
		State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4})
}

// kernelOverlay moves the pod routes onto a VXLAN device per node, as
// flannel's vxlan backend programs one: the device (VNI 1, port 8472, no
// learning) with the node's podCIDR .0/32, a route to each other podCIDR
// via its .0 onlink, a permanent neighbour entry for that .0 (the remote
// device's MAC) and an FDB entry sending that MAC to the remote node.
// Pods' MTU drops by the VXLAN overhead.
func kernelOverlay(nodes []*kernelNode) error {
	for i, n := range nodes {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: kernelVXLAN, MTU: n.eth0.Attrs().MTU - vxlanOverhead},
			VxlanId: vxlanVNI, VtepDevIndex: n.eth0.Attrs().Index, SrcAddr: n.Address.AsSlice(), Port: vxlanPort, Learning: false}
		if err := n.node.LinkAdd(vx); err != nil {
			return fmt.Errorf("node %s: vxlan device: %w", n.Name, err)
		}
		l, err := n.node.LinkByName(kernelVXLAN)
		if err != nil {
			return err
		}
		n.vxlanMAC = l.Attrs().HardwareAddr
		if err := n.node.AddrAdd(l, &netlink.Addr{IPNet: ipNet(kernelPodCIDR(i).Addr(), 32)}); err != nil {
			return fmt.Errorf("node %s: vxlan address: %w", n.Name, err)
		}
		if err := n.node.LinkSetUp(l); err != nil {
			return err
		}
		mtu := n.eth0.Attrs().MTU - vxlanOverhead
		if err := n.node.LinkSetMTU(n.hostVeth, mtu); err != nil {
			return err
		}
		podEth0, err := n.podH.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := n.podH.LinkSetMTU(podEth0, mtu); err != nil {
			return err
		}
	}
	for i, n := range nodes {
		vx, err := n.node.LinkByName(kernelVXLAN)
		if err != nil {
			return err
		}
		idx := vx.Attrs().Index
		for j, other := range nodes {
			if i == j {
				continue
			}
			vtep := kernelPodCIDR(j).Addr()
			if err := n.node.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
				IP: vtep.AsSlice(), HardwareAddr: other.vxlanMAC}); err != nil {
				return fmt.Errorf("node %s: neighbour %s: %w", n.Name, vtep, err)
			}
			if err := n.node.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: syscall.AF_BRIDGE, Flags: netlink.NTF_SELF,
				State: netlink.NUD_PERMANENT, IP: other.Address.AsSlice(), HardwareAddr: other.vxlanMAC}); err != nil {
				return fmt.Errorf("node %s: fdb entry for %s: %w", n.Name, other.Address, err)
			}
			if err := n.node.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(kernelPodCIDR(j).Addr(), 24), Gw: vtep.AsSlice(),
				Flags: int(netlink.FLAG_ONLINK)}); err != nil {
				return fmt.Errorf("node %s: route to %s via the vxlan device: %w", n.Name, kernelPodCIDR(j), err)
			}
		}
	}
	return nil
}
