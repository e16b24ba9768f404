package bpfobj

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Maps of cross-node pod traffic, pinned beside the others (bpf/include/tunnel.h).
const (
	// MapTunnel is an LPM trie from each other node's podCIDR to that node's
	// address and the way there (native or an overlay), kept by
	// dataplane/routing from the Node objects.
	MapTunnel = "petrel_tunnel"
	// MapForwardStats counts packets per cross-node path (ForwardStatNames).
	MapForwardStats = "petrel_fwd_stats"
)

type (
	// TunnelKey is a podCIDR as the LPM trie holds it.
	TunnelKey = tcPodTunnelKey
	// TunnelInfo is the node owning a podCIDR and how to reach it.
	TunnelInfo = tcPodTunnelInfo
)

// TunnelInfo.How, as TUNNEL_* in bpf/include/tunnel.h.
const (
	TunnelNative = 1
	TunnelVXLAN  = 2
	TunnelGeneve = 3
)

// TunnelHowName names TunnelInfo.How for people and JSON.
func TunnelHowName(how uint8) string {
	switch how {
	case TunnelNative:
		return "native"
	case TunnelVXLAN:
		return "vxlan"
	case TunnelGeneve:
		return "geneve"
	}
	return fmt.Sprintf("unknown(%d)", how)
}

// TunnelMAC is the address of every node's tunnel device (TUNNEL_MAC in
// bpf/include/tunnel.h): frames over the overlay are addressed to it, so the
// receiver takes them as its own without neighbour resolution.
var TunnelMAC = net.HardwareAddr{0x0a, 0x50, 0x45, 0x54, 0x52, 0x4c}

// ForwardStatNames name the slots of MapForwardStats, as FWD_STAT_* in
// bpf/include/tunnel.h.
var ForwardStatNames = []string{
	"native_redirect_neigh", // tc_pod: to a node on one segment, by bpf_redirect_neigh
	"encap_from_pod",        // tc_pod: tunnel key set, redirected to the tunnel device
	"encap_from_host",       // tunnel egress: key set for the host's own (or FIB-forwarded) packets
	"decap_to_pod",          // tunnel ingress: straight into a local pod
	"uplink_to_pod",         // uplink ingress (tc_nodeport): straight into a local pod
	"tunnel_no_route",       // tunnel egress: destination in no podCIDR, dropped
}

// Slots of MapForwardStats.
const (
	FwdNative = iota
	FwdEncapFromPod
	FwdEncapFromHost
	FwdDecapToPod
	FwdUplinkToPod
	FwdTunnelNoRoute
)

// TunnelKeyOf is the map key of a prefix.
func TunnelKeyOf(p netip.Prefix) TunnelKey {
	return TunnelKey{Prefixlen: uint32(p.Bits()), Addr: AddrKey(p.Masked().Addr())}
}

// TunnelEntry is one row of MapTunnel, for people.
type TunnelEntry struct {
	PodCIDR  netip.Prefix `json:"podCIDR"`
	NodeAddr netip.Addr   `json:"nodeAddress"`
	How      string       `json:"how"`
	Ifindex  uint32       `json:"ifindex"`
	// Interface is the name of Ifindex in the reader's network namespace
	// (petrelctl names it in the node's own one when /run/netns/<node> exists).
	Interface string `json:"interface,omitempty"`
}

// TunnelEntries reads every podCIDR of MapTunnel.
func TunnelEntries(m *ebpf.Map) ([]TunnelEntry, error) {
	var (
		k   TunnelKey
		v   TunnelInfo
		out []TunnelEntry
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		e := TunnelEntry{PodCIDR: netip.PrefixFrom(AddrOf(k.Addr), int(k.Prefixlen)), NodeAddr: AddrOf(v.NodeAddr),
			How: TunnelHowName(v.How), Ifindex: v.Ifindex}
		if ifc, err := net.InterfaceByIndex(int(v.Ifindex)); err == nil {
			e.Interface = ifc.Name
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", MapTunnel, err)
	}
	return out, nil
}

// ForwardStats sums MapForwardStats over the CPUs, by ForwardStatNames.
func ForwardStats(m *ebpf.Map) (map[string]uint64, error) {
	out := map[string]uint64{}
	for i, name := range ForwardStatNames {
		var perCPU []uint64
		if err := m.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("read %s slot %d: %w", MapForwardStats, i, err)
		}
		var sum uint64
		for _, n := range perCPU {
			sum += n
		}
		out[name] = sum
	}
	return out, nil
}

// OpenPinnedMap opens one map pinned under dir.
func OpenPinnedMap(dir, name string) (*ebpf.Map, error) {
	m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
	if err != nil {
		return nil, fmt.Errorf("open pinned map %s under %s: %w", name, dir, err)
	}
	return m, nil
}

func tunnelLinkPin(dir, direction, iface string) string {
	return filepath.Join(dir, "links", "tunnel_"+direction+"_"+iface)
}

// AttachTunnel loads tc_tunnel with the maps pinned under dir and attaches
// it to the tunnel device (TCX egress: the tunnel key of packets the host
// routes there; TCX ingress: decapsulated packets straight to local pods).
// The links are pinned, so the overlay keeps working while the node daemon
// is down; a link pinned by an earlier run gets the new program in place.
func AttachTunnel(dir string, iface *net.Interface) error {
	if err := preparePins(dir); err != nil {
		return err
	}
	spec, err := loadTcTunnel()
	if err != nil {
		return fmt.Errorf("read the embedded tc_tunnel object: %w", err)
	}
	var objs tcTunnelObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		return fmt.Errorf("load tc_tunnel: %w", describeVerifierError(err))
	}
	defer objs.Close()
	for _, a := range []struct {
		dir  string
		typ  ebpf.AttachType
		prog *ebpf.Program
	}{
		{"egress", ebpf.AttachTCXEgress, objs.PetrelToTunnel},
		{"ingress", ebpf.AttachTCXIngress, objs.PetrelFromTunnel},
	} {
		if err := attachTCXPinned(tunnelLinkPin(dir, a.dir, iface.Name), iface.Index, a.typ, a.prog); err != nil {
			return fmt.Errorf("attach tc_tunnel (%s) to %s: %w", a.dir, iface.Name, err)
		}
	}
	return nil
}

// DetachTunnel removes tc_tunnel from the device; not attached is fine.
func DetachTunnel(dir, iface string) error {
	var errs []error
	for _, d := range []string{"egress", "ingress"} {
		if err := os.Remove(tunnelLinkPin(dir, d, iface)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// attachTCXPinned swaps prog into the link pinned at pin when it is still
// attached to ifindex, or attaches and pins a new link.
func attachTCXPinned(pin string, ifindex int, typ ebpf.AttachType, prog *ebpf.Program) error {
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		same := false
		if info, err := l.Info(); err == nil {
			if tcx := info.TCX(); tcx != nil && int(tcx.Ifindex) == ifindex {
				same = true
			}
		}
		if same {
			err = l.Update(prog)
		}
		l.Close()
		if same && err == nil {
			return nil
		}
		_ = os.Remove(pin) // its interface went and came back
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: typ})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin link: %w", err)
	}
	return nil
}
