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
	"github.com/cilium/ebpf/rlimit"
)

// MapNodePortCT is NodePort connection tracking, shared by tc_nodeport and
// tc_pod.
const MapNodePortCT = "petrel_np_ct"

// MapNodePortIfAddr is each NodePort interface's IPv4 address, the source
// tc_nodeport gives connections to a service address it sends to a backend
// on another node.
const MapNodePortIfAddr = "petrel_np_ifaddr"

func nodePortLinkPin(dir, iface string) string { return filepath.Join(dir, "links", "nodeport_"+iface) }

// AttachNodePort loads tc_nodeport with the pinned maps under dir and
// attaches it (TCX ingress) to each interface, so that NodePorts answer
// clients on other hosts. A link pinned by an earlier run gets the new
// program in place, with no moment unattached.
func AttachNodePort(dir string, ifaces []string) error {
	if len(ifaces) == 0 {
		return nil
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("lift the memlock limit for BPF maps: %w", err)
	}
	spec, err := loadTcNodePort()
	if err != nil {
		return fmt.Errorf("read the embedded tc_nodeport object: %w", err)
	}
	dropIncompatiblePins(dir, spec, []string{MapNodePortIfAddr})
	var objs tcNodePortObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		return fmt.Errorf("load tc_nodeport: %w", describeVerifierError(err))
	}
	defer objs.Close()
	for _, name := range ifaces {
		iface, err := net.InterfaceByName(name)
		if err != nil {
			return fmt.Errorf("NodePort interface %q: %w", name, err)
		}
		if addr, ok := interfaceIPv4(iface); ok {
			if err := objs.PetrelNpIfaddr.Put(uint32(iface.Index), addr.As4()); err != nil {
				return fmt.Errorf("record the address of %s: %w", name, err)
			}
		}
		pin := nodePortLinkPin(dir, name)
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			err = l.Update(objs.PetrelNodeport)
			l.Close()
			if err == nil {
				continue
			}
			_ = os.Remove(pin) // its interface went and came back
		}
		l, err := link.AttachTCX(link.TCXOptions{Interface: iface.Index, Program: objs.PetrelNodeport, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return fmt.Errorf("attach tc_nodeport to %s: %w", name, err)
		}
		err = l.Pin(pin)
		l.Close()
		if err != nil {
			return fmt.Errorf("pin the tc_nodeport link of %s: %w", name, err)
		}
	}
	return nil
}

// DetachNodePort removes tc_nodeport from an interface; not attached is
// fine.
func DetachNodePort(dir, iface string) error {
	err := os.Remove(nodePortLinkPin(dir, iface))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// interfaceIPv4 is the interface's first IPv4 address.
func interfaceIPv4(iface *net.Interface) (netip.Addr, bool) {
	addrs, err := iface.Addrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			return p.Addr(), true
		}
	}
	return netip.Addr{}, false
}
