package bpfobj

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// BPFFSRoot is where bpffs is (or gets) mounted.
const BPFFSRoot = "/sys/fs/bpf"

// PinDir is the default directory holding a node's pinned maps and links.
func PinDir(nodeName string) string {
	return filepath.Join(BPFFSRoot, "petrel", nodeName)
}

// Map names, as pinned under the pin directory.
const (
	MapServices   = "petrel_lb4_svc"
	MapBackends   = "petrel_lb4_be"
	MapRevNat     = "petrel_lb4_rnat"
	MapAffinity   = "petrel_lb_aff"
	MapSockRevNat = "petrel_sk_rnat4"
	MapNodeAddrs  = "petrel_node_addr4"
	MapStats      = "petrel_lb_stats"
	MapMaglev     = "petrel_lb4_maglev"
	MapTraffic    = "petrel_lb_traffic"
	MapLBConfig   = "petrel_lb_config"
)

// MapNames lists every pinned map, in the order operators read them.
var MapNames = []string{MapServices, MapBackends, MapRevNat, MapAffinity, MapSockRevNat, MapNodeAddrs, MapStats, MapMaglev,
	MapTraffic, MapLBConfig}

// PodMapNames are the maps of tc_pod and tc_nodeport, pinned beside the
// load balancer's when the node runs them; OpenPinned opens them when there.
var PodMapNames = append([]string{MapEndpoints, MapNodePortCT, MapNodePortIfAddr, MapTunnel, MapForwardStats}, PolicyMapNames...)

// Maps are the load balancer's maps, pinned or freshly opened from pins.
type Maps struct {
	// Pod holds PodMapNames that were pinned, by name (OpenPinned only).
	Pod map[string]*ebpf.Map

	Services   *ebpf.Map
	Backends   *ebpf.Map
	RevNat     *ebpf.Map
	Affinity   *ebpf.Map
	SockRevNat *ebpf.Map
	NodeAddrs  *ebpf.Map
	Stats      *ebpf.Map
	// Maglev holds, by rev-NAT id, the Maglev table of each service that
	// has one (a map of maps).
	Maglev *ebpf.Map
	// Traffic counts connections, packets and bytes per frontend and
	// backend, per CPU (include/traffic.h).
	Traffic *ebpf.Map
	// LBConfig holds switches the programs read, as LB_CFG_* bits.
	LBConfig *ebpf.Map
}

// ByName returns the map pinned under name, or nil.
func (m *Maps) ByName(name string) *ebpf.Map {
	switch name {
	case MapServices:
		return m.Services
	case MapBackends:
		return m.Backends
	case MapRevNat:
		return m.RevNat
	case MapAffinity:
		return m.Affinity
	case MapSockRevNat:
		return m.SockRevNat
	case MapNodeAddrs:
		return m.NodeAddrs
	case MapStats:
		return m.Stats
	case MapMaglev:
		return m.Maglev
	case MapTraffic:
		return m.Traffic
	case MapLBConfig:
		return m.LBConfig
	}
	return m.Pod[name]
}

// Close releases the file descriptors; the pins stay.
func (m *Maps) Close() {
	for _, name := range append(append([]string{}, MapNames...), PodMapNames...) {
		if mp := m.ByName(name); mp != nil {
			mp.Close()
		}
	}
}

// OpenPinned opens the maps pinned under dir, for readers that do not load
// programs (petrelctl): it works while the node daemon is down.
func OpenPinned(dir string) (*Maps, error) {
	m := &Maps{}
	targets := map[string]**ebpf.Map{
		MapServices: &m.Services, MapBackends: &m.Backends, MapRevNat: &m.RevNat,
		MapAffinity: &m.Affinity, MapSockRevNat: &m.SockRevNat, MapNodeAddrs: &m.NodeAddrs, MapStats: &m.Stats,
		MapMaglev: &m.Maglev, MapTraffic: &m.Traffic, MapLBConfig: &m.LBConfig,
	}
	for _, name := range MapNames {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true})
		if err != nil {
			m.Close()
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("no pinned map %s under %s: is `petrel node` (or `petrel up`) running on this machine, and is the node name right?", name, dir)
			}
			return nil, fmt.Errorf("open pinned map %s: %w", name, err)
		}
		*targets[name] = mp
	}
	for _, name := range PodMapNames {
		if mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, name), &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
			if m.Pod == nil {
				m.Pod = map[string]*ebpf.Map{}
			}
			m.Pod[name] = mp
		}
	}
	return m, nil
}

// SocketLB is the loaded socket load balancer: its maps and its cgroup links.
type SocketLB struct {
	Maps
	// Dir is the pin directory.
	Dir   string
	objs  sockLBObjects
	links []link.Link
}

// Options say where to pin and what to attach to.
type Options struct {
	// PinDir holds the pinned maps and, under links/, the pinned links.
	PinDir string
	// CgroupPath is the cgroup v2 directory whose processes are load balanced.
	CgroupPath string
}

// LoadSocketLB loads sock_lb, re-using maps pinned by an earlier run, and
// attaches its programs to the cgroup. Links pinned by an earlier run get the
// new programs swapped in, so connections never go unbalanced.
func LoadSocketLB(opts Options) (*SocketLB, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lift the memlock limit for BPF maps: %w", err)
	}
	if err := EnsureBPFFS(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(opts.PinDir, "links"), 0o700); err != nil {
		return nil, fmt.Errorf("create pin directory: %w", err)
	}
	spec, err := loadSockLB()
	if err != nil {
		return nil, fmt.Errorf("read the embedded sock_lb object: %w", err)
	}
	lb := &SocketLB{Dir: opts.PinDir}
	load := func() error {
		return spec.LoadAndAssign(&lb.objs, &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinDir}})
	}
	if err := load(); err != nil {
		if !errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fmt.Errorf("load sock_lb: %w", describeVerifierError(err))
		}
		// A new map layout (an upgrade): the old maps cannot serve the new
		// programs. Drop them; the proxy rewrites every entry on start.
		slog.Warn("pinned BPF maps have an older layout; recreating them", "dir", opts.PinDir, "err", err)
		for _, name := range MapNames {
			_ = os.Remove(filepath.Join(opts.PinDir, name))
		}
		if err := load(); err != nil {
			return nil, fmt.Errorf("load sock_lb: %w", describeVerifierError(err))
		}
	}
	m := lb.objs.sockLBMaps
	lb.Maps = Maps{Services: m.PetrelLb4Svc, Backends: m.PetrelLb4Be, RevNat: m.PetrelLb4Rnat,
		Affinity: m.PetrelLbAff, SockRevNat: m.PetrelSkRnat4, NodeAddrs: m.PetrelNodeAddr4, Stats: m.PetrelLbStats,
		Maglev: m.PetrelLb4Maglev, Traffic: m.PetrelLbTraffic, LBConfig: m.PetrelLbConfig}

	p := lb.objs.sockLBPrograms
	attachments := []struct {
		name string
		typ  ebpf.AttachType
		prog *ebpf.Program
	}{
		{"connect4", ebpf.AttachCGroupInet4Connect, p.PetrelConnect4},
		{"sendmsg4", ebpf.AttachCGroupUDP4Sendmsg, p.PetrelSendmsg4},
		{"recvmsg4", ebpf.AttachCGroupUDP4Recvmsg, p.PetrelRecvmsg4},
		{"getpeername4", ebpf.AttachCgroupInet4GetPeername, p.PetrelGetpeername4},
		{"connect6", ebpf.AttachCGroupInet6Connect, p.PetrelConnect6},
		{"sendmsg6", ebpf.AttachCGroupUDP6Sendmsg, p.PetrelSendmsg6},
		{"recvmsg6", ebpf.AttachCGroupUDP6Recvmsg, p.PetrelRecvmsg6},
		{"getpeername6", ebpf.AttachCgroupInet6GetPeername, p.PetrelGetpeername6},
		// Packets and bytes of load-balanced sockets, for the traffic
		// counters; they only count, never drop.
		{"skb_egress", ebpf.AttachCGroupInetEgress, p.PetrelSockSkbEgress},
		{"skb_ingress", ebpf.AttachCGroupInetIngress, p.PetrelSockSkbIngress},
	}
	cgroupID, err := cgroupInode(opts.CgroupPath)
	if err != nil {
		lb.Close()
		return nil, err
	}
	for _, a := range attachments {
		l, err := attachPinned(filepath.Join(opts.PinDir, "links", a.name), opts.CgroupPath, cgroupID, a.typ, a.prog)
		if err != nil {
			lb.Close()
			return nil, fmt.Errorf("attach %s to %s: %w", a.name, opts.CgroupPath, err)
		}
		lb.links = append(lb.links, l)
	}
	return lb, nil
}

// attachPinned re-uses a pinned link to the same cgroup by swapping the
// program in, or attaches and pins a new one.
func attachPinned(pin, cgroupPath string, cgroupID uint64, typ ebpf.AttachType, prog *ebpf.Program) (link.Link, error) {
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		if linkCgroup(l) == cgroupID {
			if err := l.Update(prog); err != nil {
				l.Close()
				return nil, fmt.Errorf("swap the program into pinned link %s: %w", pin, err)
			}
			return l, nil
		}
		// Pinned for another cgroup: detach it and attach afresh.
		_ = l.Unpin()
		l.Close()
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: typ, Program: prog})
	if err != nil {
		return nil, err
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return nil, fmt.Errorf("pin link: %w", err)
	}
	return l, nil
}

func linkCgroup(l link.Link) uint64 {
	info, err := l.Info()
	if err != nil {
		return 0
	}
	if c := info.Cgroup(); c != nil {
		return c.CgroupId
	}
	return 0
}

// cgroupInode is the cgroup's id as the kernel reports it in link info.
func cgroupInode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// Close releases the programs, maps and links held by this process; the pins
// keep the load balancer attached.
func (lb *SocketLB) Close() {
	for _, l := range lb.links {
		l.Close()
	}
	lb.links = nil
	lb.objs.Close()
}

// Remove detaches everything pinned under dir and deletes the pins: the
// load balancer stops. Used by tests and by `petrel node --cleanup`.
func Remove(dir string) error {
	entries, _ := os.ReadDir(filepath.Join(dir, "links"))
	for _, e := range entries {
		pin := filepath.Join(dir, "links", e.Name())
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			_ = l.Unpin()
			l.Close()
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	// The shared parent (/sys/fs/bpf/petrel) goes too once it is empty.
	_ = os.Remove(filepath.Dir(dir))
	return nil
}

// EnsureBPFFS mounts bpffs at BPFFSRoot unless it is mounted already.
func EnsureBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs(BPFFSRoot, &st); err == nil && st.Type == unix.BPF_FS_MAGIC {
		return nil
	}
	if err := os.MkdirAll(BPFFSRoot, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", BPFFSRoot, err)
	}
	if err := unix.Mount("bpf", BPFFSRoot, "bpf", 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("mount bpffs at %s (needs root): %w", BPFFSRoot, err)
	}
	return nil
}

// describeVerifierError keeps the verifier's log short enough to read.
func describeVerifierError(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		lines := ve.Log
		if len(lines) > 20 {
			lines = lines[len(lines)-20:]
		}
		return fmt.Errorf("%w\n%s", err, strings.Join(lines, "\n"))
	}
	return err
}

// CountEntries walks a map's keys. Per-CPU and array maps count their slots.
func CountEntries(m *ebpf.Map) (int, error) {
	if m.Type() == ebpf.Array || m.Type() == ebpf.PerCPUArray {
		return int(m.MaxEntries()), nil
	}
	// Two buffers taking turns: the key just read is where the next starts.
	cur, next := make([]byte, m.KeySize()), make([]byte, m.KeySize())
	n := 0
	var err error
	var from any // nil: start from the first key
	for {
		if err = m.NextKey(from, next); err != nil {
			break
		}
		n++
		cur, next = next, cur
		from = cur
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return n, nil
	}
	return n, err
}

// preparePins gets the machine ready to load and pin programs under dir:
// no memlock limit, bpffs mounted, the pin and link directories made.
func preparePins(dir string) error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("lift the memlock limit for BPF maps: %w", err)
	}
	if err := EnsureBPFFS(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, "links"), 0o700); err != nil {
		return fmt.Errorf("create pin directory: %w", err)
	}
	return nil
}
