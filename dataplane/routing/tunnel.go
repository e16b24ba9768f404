package routing

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vishvananda/netlink"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Mode chooses how this node reaches the pods of other nodes.
type Mode string

const (
	// ModeAuto: natively to a node on one of this node's IPv4 subnets, through
	// a VXLAN overlay to any other.
	ModeAuto Mode = "auto"
	// ModeVXLAN: through the VXLAN overlay to every node.
	ModeVXLAN Mode = "vxlan"
	// ModeGeneve: through a Geneve overlay to every node.
	ModeGeneve Mode = "geneve"
	// ModeDisabled: no overlay; native routes only, so a node on another
	// subnet is reached only when the network routes podCIDRs itself.
	ModeDisabled Mode = "disabled"
)

// ParseMode reads a --tunnel value; empty is ModeAuto.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(s)); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeVXLAN, ModeGeneve, ModeDisabled:
		return m, nil
	}
	return "", fmt.Errorf("tunnel mode %q: use auto, vxlan, geneve or disabled", s)
}

// Tunnel devices and their UDP ports (the Linux kernel's and Cilium's
// choices for VXLAN, IANA's for Geneve).
const (
	VXLANDevice  = "petrel_vxlan"
	VXLANPort    = 8472
	GeneveDevice = "petrel_geneve"
	GenevePort   = 6081
	// Overhead is what the overlay adds to a pod's packet: outer IPv4 (20),
	// UDP (8), VXLAN or Geneve without options (8) and the inner Ethernet
	// header (14).
	Overhead = 50
)

// device is the mode's tunnel device name, "" for none.
func (m Mode) device() string {
	switch m {
	case ModeAuto, ModeVXLAN:
		return VXLANDevice
	case ModeGeneve:
		return GeneveDevice
	}
	return ""
}

// how is the map's TUNNEL_* value of the mode's overlay.
func (m Mode) how() uint8 {
	if m == ModeGeneve {
		return bpfobj.TunnelGeneve
	}
	return bpfobj.TunnelVXLAN
}

// PodMTU is the MTU of pods' interfaces: the uplink's, less the overlay's
// headers whenever this node may tunnel. In auto mode that is always: a
// node on another subnet may join at any time, and a pod's MTU cannot
// change under it.
func PodMTU(uplinkMTU int, m Mode) int {
	if m == ModeDisabled {
		return uplinkMTU
	}
	return uplinkMTU - Overhead
}

// Uplink is the interface of the node's address: the one that carries
// traffic to other nodes, native and tunnelled.
func Uplink(h *netlink.Handle, addr netip.Addr) (netlink.Link, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			l, err := h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("link of %s: %w", addr, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("no interface has the node address %s", addr)
}

// SetupTunnel makes the node ready for its mode: the tunnel device
// (external / collect-metadata, no ARP, MTU uplinkMTU-Overhead, the shared
// TunnelMAC) with tc_tunnel attached from the pins under pinDir, and the
// sysctls the overlay needs on it and on the uplink. It does nothing for
// ModeDisabled. It must run in the node's network namespace (the calling
// thread's): it attaches by interface index and writes /proc/sys/net.
func SetupTunnel(h *netlink.Handle, m Mode, uplink netlink.Link, pinDir string) error {
	name := m.device()
	// The device of another mode (the node ran with another --tunnel) goes.
	for _, other := range []string{VXLANDevice, GeneveDevice} {
		if other == name {
			continue
		}
		if l, err := h.LinkByName(other); err == nil {
			if pinDir != "" {
				_ = bpfobj.DetachTunnel(pinDir, other)
			}
			if err := h.LinkDel(l); err != nil {
				return fmt.Errorf("delete %s of an earlier tunnel mode: %w", other, err)
			}
		}
	}
	if name == "" {
		return nil
	}
	mtu := uplink.Attrs().MTU - Overhead
	attrs := netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: bpfobj.TunnelMAC}
	var want netlink.Link
	if m == ModeGeneve {
		want = &netlink.Geneve{LinkAttrs: attrs, Dport: GenevePort, FlowBased: true}
	} else {
		want = &netlink.Vxlan{LinkAttrs: attrs, Port: VXLANPort, FlowBased: true, Learning: false}
	}
	l, err := h.LinkByName(name)
	if err == nil && l.Type() != want.Type() {
		// Another kind of device under our name: not ours to keep.
		return fmt.Errorf("%s exists and is a %s device, not %s: remove it", name, l.Type(), want.Type())
	}
	if err != nil {
		if err := h.LinkAdd(want); err != nil {
			if errors.Is(err, syscall.EOPNOTSUPP) || strings.Contains(err.Error(), "not supported") {
				return fmt.Errorf("create %s: the kernel has no %s driver (try --tunnel vxlan): %w", name, want.Type(), err)
			}
			return fmt.Errorf("create %s: %w", name, err)
		}
		if l, err = h.LinkByName(name); err != nil {
			return fmt.Errorf("look up %s: %w", name, err)
		}
	}
	if l.Attrs().MTU != mtu {
		if err := h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("MTU of %s: %w", name, err)
		}
	}
	if err := h.LinkSetHardwareAddr(l, bpfobj.TunnelMAC); err != nil {
		return fmt.Errorf("address of %s: %w", name, err)
	}
	// No ARP: the kernel's neighbour for any next hop on the device is then
	// the device's own address, TunnelMAC, which is also the receiver's.
	if err := h.LinkSetARPOff(l); err != nil {
		return fmt.Errorf("turn ARP off on %s: %w", name, err)
	}
	for _, s := range []struct{ path, value string }{
		// IPv6 would only send router and neighbour solicitations that no
		// podCIDR owns.
		{"ipv6/conf/" + name + "/disable_ipv6", "1"},
		// Packets the ingress program leaves to the stack (a pod not in the
		// endpoint map yet) are forwarded to the pod's veth.
		{"ipv4/conf/" + name + "/forwarding", "1"},
		// Replies come in where the route to their source does not point
		// (nodes on two segments route asymmetrically through the router).
		{"ipv4/conf/" + name + "/rp_filter", "0"},
	} {
		if err := writeSysctl(s.path, s.value); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := looseRPFilter(uplink.Attrs().Name); err != nil {
		return err
	}
	if pinDir != "" {
		ifc := &net.Interface{Index: l.Attrs().Index, Name: name}
		if err := bpfobj.AttachTunnel(pinDir, ifc); err != nil {
			return err
		}
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	slog.Info("routing: overlay ready", "device", name, "mtu", mtu, "uplink", uplink.Attrs().Name)
	return nil
}

// looseRPFilter turns strict reverse-path filtering on the uplink into
// loose: a pod on a node behind a router answers a host process here over
// the underlay, while the route back to that pod points at the tunnel
// device, which strict filtering would take for spoofing. The effective
// value is the larger of conf/all and conf/<uplink>, so 2 on the uplink is
// enough.
func looseRPFilter(uplink string) error {
	all, _ := readSysctl("ipv4/conf/all/rp_filter")
	dev, _ := readSysctl("ipv4/conf/" + uplink + "/rp_filter")
	if all != "1" && dev != "1" {
		return nil
	}
	slog.Info("routing: reverse-path filtering on the uplink set to loose for the overlay", "interface", uplink)
	return writeSysctl("ipv4/conf/"+uplink+"/rp_filter", "2")
}

func readSysctl(path string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys/net", path))
	return strings.TrimSpace(string(b)), err
}

func writeSysctl(path, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys/net", path), []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl net/%s=%s: %w", path, value, err)
	}
	return nil
}

// RemoveTunnel deletes the tunnel devices and their pinned links: for
// `petrel node --cleanup`. Gone already is fine.
func RemoveTunnel(h *netlink.Handle, pinDir string) error {
	var errs []error
	for _, name := range []string{VXLANDevice, GeneveDevice} {
		if pinDir != "" {
			errs = append(errs, bpfobj.DetachTunnel(pinDir, name))
		}
		if l, err := h.LinkByName(name); err == nil {
			if err := h.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}
