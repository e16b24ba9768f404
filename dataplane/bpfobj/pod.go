package bpfobj

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// EndpointInfo is a local pod as tc_pod forwards to it.
type EndpointInfo = tcPodEndpointInfo

// Pins of the pod program: the node loads it once; each CNI ADD attaches the
// pinned program to the new veth without loading anything.
const (
	MapEndpoints  = "petrel_endpoints"
	podProgramPin = "tc_pod"
)

// LoadPodProgram loads tc_pod, pins it and its endpoint map under dir, and
// replaces an older pinned program (veths attached before keep theirs until
// they go).
func LoadPodProgram(dir string) error {
	if err := preparePins(dir); err != nil {
		return err
	}
	spec, err := loadTcPod()
	if err != nil {
		return fmt.Errorf("read the embedded tc_pod object: %w", err)
	}
	dropIncompatiblePins(dir, spec, append(append([]string{}, PodMapNames...), MapPolicyEvents))
	var objs tcPodObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}); err != nil {
		return fmt.Errorf("load tc_pod: %w", describeVerifierError(err))
	}
	defer objs.Close()
	pin := filepath.Join(dir, podProgramPin)
	_ = os.Remove(pin)
	if err := objs.PetrelFromPod.Pin(pin); err != nil {
		return fmt.Errorf("pin tc_pod: %w", err)
	}
	// Pods attached by an older program get this one, so that they share
	// the maps it was loaded with.
	links, _ := filepath.Glob(filepath.Join(dir, "links", "pod_*"))
	for _, p := range links {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			continue
		}
		if err := l.Update(objs.PetrelFromPod); err != nil {
			slog.Warn("bpf: could not update the program of a pod link", "pin", p, "err", err)
		}
		l.Close()
	}
	return nil
}

// dropIncompatiblePins removes pinned maps whose layout the programs about
// to load no longer share (an upgrade), so that loading makes them anew;
// the others keep their entries.
func dropIncompatiblePins(dir string, spec *ebpf.CollectionSpec, names []string) {
	for _, name := range names {
		ms, ok := spec.Maps[name]
		if !ok {
			continue
		}
		m, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), nil)
		if err != nil {
			continue
		}
		if err := ms.Compatible(m); err != nil {
			slog.Warn("bpf: a pinned map has an older layout; recreating it", "map", name, "err", err)
			_ = os.Remove(filepath.Join(dir, name))
		}
		m.Close()
	}
}

func podLinkPin(dir, hostVeth string) string { return filepath.Join(dir, "links", "pod_"+hostVeth) }

// AttachPod attaches the pinned tc_pod to a pod's host veth (TCX ingress:
// what the pod sends) and records the pod in the endpoint map, so that
// other local pods reach it by redirect. Without a loaded program it does
// nothing and routing carries the traffic.
func AttachPod(dir string, hostVeth *net.Interface, podIP netip.Addr, podMAC net.HardwareAddr) error {
	prog, err := ebpf.LoadPinnedProgram(filepath.Join(dir, podProgramPin), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open the pinned tc_pod: %w", err)
	}
	defer prog.Close()
	endpoints, err := ebpf.LoadPinnedMap(filepath.Join(dir, MapEndpoints), nil)
	if err != nil {
		return fmt.Errorf("open the endpoint map: %w", err)
	}
	defer endpoints.Close()
	pin := podLinkPin(dir, hostVeth.Name)
	_ = os.Remove(pin) // a link from an ADD that did not finish died with its veth
	l, err := link.AttachTCX(link.TCXOptions{Interface: hostVeth.Index, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err != nil {
		return fmt.Errorf("attach tc_pod to %s: %w", hostVeth.Name, err)
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin tc_pod link: %w", err)
	}
	var ep EndpointInfo
	ep.Ifindex = uint32(hostVeth.Index)
	copy(ep.PodMac[:], podMAC)
	copy(ep.HostMac[:], hostVeth.HardwareAddr)
	if err := endpoints.Put(AddrKey(podIP), ep); err != nil {
		return fmt.Errorf("record endpoint %s: %w", podIP, err)
	}
	return nil
}

// DetachPod forgets a pod: its endpoint entry and its link pin. Gone
// already is fine.
func DetachPod(dir, hostVeth string, podIP netip.Addr) error {
	_ = os.Remove(podLinkPin(dir, hostVeth))
	endpoints, err := ebpf.LoadPinnedMap(filepath.Join(dir, MapEndpoints), nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open the endpoint map: %w", err)
	}
	defer endpoints.Close()
	if podIP.IsValid() {
		if err := endpoints.Delete(AddrKey(podIP)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("forget endpoint %s: %w", podIP, err)
		}
	}
	return nil
}
