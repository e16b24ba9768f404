// Package cni connects pods to the node: the namespace's loopback brought
// up, a veth pair per pod (eth0 in the pod's network namespace, a host side
// named from the container id), a /32 address from the node's podCIDR, a
// default route through a link-local gateway answered by a permanent
// neighbour entry, and a /32 host route to the pod. petrel-cni exposes it
// as a CNI 1.1 plugin; the kubelet calls it through libcni like any
// container runtime.
package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/petrel-project/petrel/cni/ipam"
	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Gateway is the pod's next hop: link-local, never a real address, so every
// node uses the same one.
var Gateway = netip.MustParseAddr("169.254.1.1")

// Config is the network configuration petrel-cni reads.
type Config struct {
	types.PluginConf
	// PodCIDR is the node's pod range.
	PodCIDR string `json:"podCIDR"`
	// DataDir holds the IPAM state (default /var/lib/petrel/cni).
	DataDir string `json:"dataDir,omitempty"`
	// MTU of the veths (default 1500).
	MTU int `json:"mtu,omitempty"`
	// PinDir is the node's bpffs directory; when the node has loaded tc_pod
	// there, each pod's veth gets it and same-node traffic skips routing.
	PinDir string `json:"pinDir,omitempty"`
}

// ParseConfig reads and checks a network configuration.
func ParseConfig(b []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("parse network configuration: %w", err)
	}
	if _, err := netip.ParsePrefix(c.PodCIDR); err != nil {
		return nil, fmt.Errorf("network configuration: podCIDR %q: %w", c.PodCIDR, err)
	}
	if c.DataDir == "" {
		c.DataDir = "/var/lib/petrel/cni"
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	// IPv4's minimum link MTU to the largest a veth takes.
	if c.MTU < 68 || c.MTU > 65535 {
		return nil, fmt.Errorf("network configuration: mtu %d: want 68 to 65535", c.MTU)
	}
	return c, nil
}

// Store is the configuration's IPAM store.
func (c *Config) Store() *ipam.Store {
	return &ipam.Store{Dir: filepath.Join(c.DataDir, "networks", c.Name), Range: netip.MustParsePrefix(c.PodCIDR)}
}

// HostVethName names the host side of a pod's veth: short enough for
// Linux (15 bytes) and the same for the same container and interface.
func HostVethName(containerID, ifName string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifName))
	return "pt" + hex.EncodeToString(h[:])[:11]
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

// Add connects the pod: it is safe to repeat after a crash midway, since the
// address belongs to the container and a stale host veth is replaced.
func Add(c *Config, containerID, netnsPath, ifName string) (*types100.Result, error) {
	owner := ipam.Owner{ContainerID: containerID, IfName: ifName}
	addr, err := c.Store().Allocate(owner)
	if err != nil {
		return nil, err
	}
	hostName := HostVethName(containerID, ifName)
	if old, err := netlink.LinkByName(hostName); err == nil {
		_ = netlink.LinkDel(old) // left by an ADD that did not finish
	}
	netns, err := ns.GetNS(netnsPath)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", netnsPath, err)
	}
	defer netns.Close()
	var hostIf, contIf net.Interface
	err = netns.Do(func(hostNS ns.NetNS) error {
		// A new namespace's loopback is down; the pod has no other plugin
		// (such as CNI's loopback) to bring it up, and without it neither
		// 127.0.0.1 nor the pod's own address answers: sidecars talking
		// over localhost fail.
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("look up the pod's loopback: %w", err)
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bring the pod's loopback up: %w", err)
		}
		if l, err := netlink.LinkByName(ifName); err == nil {
			_ = netlink.LinkDel(l)
		}
		hostIf, contIf, err = ip.SetupVethWithName(ifName, hostName, c.MTU, "", hostNS)
		if err != nil {
			return fmt.Errorf("create veth: %w", err)
		}
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: hostPrefix(addr)}); err != nil {
			return fmt.Errorf("address %s: %w", addr, err)
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring %s up: %w", ifName, err)
		}
		gw := Gateway.AsSlice()
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: hostPrefix(Gateway), Scope: netlink.SCOPE_LINK}); err != nil {
			return fmt.Errorf("route to the gateway: %w", err)
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("default route: %w", err)
		}
		// The gateway answers through the host veth's MAC: no ARP needed.
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, IP: gw, HardwareAddr: hostIf.HardwareAddr,
			State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4})
	})
	if err != nil {
		_ = c.Store().Release(owner)
		return nil, err
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return nil, err
	}
	if err := netlink.RouteReplace(&netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostPrefix(addr), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("host route to %s: %w", addr, err)
	}
	if c.PinDir != "" {
		hostIf.Index = host.Attrs().Index
		if err := bpfobj.AttachPod(c.PinDir, &hostIf, addr, contIf.HardwareAddr); err != nil {
			return nil, err
		}
	}
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			{Name: hostIf.Name, Mac: hostIf.HardwareAddr.String()},
			{Name: contIf.Name, Mac: contIf.HardwareAddr.String(), Sandbox: netnsPath},
		},
		IPs:    []*types100.IPConfig{{Address: *hostPrefix(addr), Gateway: Gateway.AsSlice(), Interface: types100.Int(1)}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: Gateway.AsSlice()}},
	}, nil
}

// Del disconnects the pod. What is already gone (the namespace, the veth,
// the address) is not an error, as the CNI spec asks.
func Del(c *Config, containerID, ifName string) error {
	if c.PinDir != "" {
		addr, _, _ := c.Store().Lookup(ipam.Owner{ContainerID: containerID, IfName: ifName})
		if err := bpfobj.DetachPod(c.PinDir, HostVethName(containerID, ifName), addr); err != nil {
			return err
		}
	}
	if err := deleteHostVeth(HostVethName(containerID, ifName)); err != nil {
		return err
	}
	return c.Store().Release(ipam.Owner{ContainerID: containerID, IfName: ifName})
}

// Check verifies the pod is connected as Add left it.
func Check(c *Config, containerID, netnsPath, ifName string) error {
	addr, ok, err := c.Store().Lookup(ipam.Owner{ContainerID: containerID, IfName: ifName})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("container %s has no address", containerID)
	}
	host, err := netlink.LinkByName(HostVethName(containerID, ifName))
	if err != nil {
		return fmt.Errorf("host veth: %w", err)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: host.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return err
	}
	routed := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == hostPrefix(addr).String() {
			routed = true
		}
	}
	if !routed {
		return fmt.Errorf("no host route to %s", addr)
	}
	return ns.WithNetNSPath(netnsPath, func(ns.NetNS) error {
		link, err := netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("%s in the pod: %w", ifName, err)
		}
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if a.IPNet.String() == hostPrefix(addr).String() {
				return nil
			}
		}
		return fmt.Errorf("%s in the pod lacks %s", ifName, addr)
	})
}

// GC releases every address, and removes every host veth, of attachments
// not in valid.
func GC(c *Config, valid []types.GCAttachment) error {
	keep := map[ipam.Owner]bool{}
	for _, a := range valid {
		keep[ipam.Owner{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	freed, err := c.Store().ReleaseExcept(keep)
	if err != nil {
		return err
	}
	var errs []error
	for o, addr := range freed {
		if c.PinDir != "" {
			errs = append(errs, bpfobj.DetachPod(c.PinDir, HostVethName(o.ContainerID, o.IfName), addr))
		}
		errs = append(errs, deleteHostVeth(HostVethName(o.ContainerID, o.IfName)))
	}
	return errors.Join(errs...)
}

// deleteHostVeth removes a pod's host-side veth if it is still there.
func deleteHostVeth(name string) error {
	l, err := netlink.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up host veth %s: %w", name, err)
	}
	// The veth can vanish between the lookup and the delete: the kernel
	// removes both ends when the pod's namespace goes away.
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, syscall.ENODEV) {
		return fmt.Errorf("delete host veth %s: %w", name, err)
	}
	return nil
}

// Status says whether new pods can be added: the IPAM store is usable and
// has room.
func Status(c *Config) error {
	free, err := c.Store().Free()
	if err != nil {
		return err
	}
	if free <= 0 {
		return fmt.Errorf("%w (%s)", ipam.ErrFull, c.PodCIDR)
	}
	return nil
}
