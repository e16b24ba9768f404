// Package routing gives a node its way to the other nodes' pods. For every
// other Node with a podCIDR and an InternalIP it decides, per node pair,
// native (the other node's address is on one of this node's IPv4 subnets)
// or overlay (VXLAN or Geneve, in collect-metadata mode), or takes the
// --tunnel mode's choice, and keeps two things in step with the Nodes:
//
//   - kernel routes, tagged with their own protocol number so that the
//     reconciler removes only what it made: "podCIDR via InternalIP" for a
//     native peer, "podCIDR dev petrel_vxlan src <node address>" for a
//     tunnelled one (host processes and tc_nodeport's FIB path use them);
//   - the pinned LPM map petrel_tunnel (podCIDR → node address, native or
//     tunnel, interface), from which tc_pod sends pod traffic straight out
//     (bpf_redirect_neigh, or the tunnel key and a redirect to the tunnel
//     device) and tc_tunnel keys the host's own packets.
//
// SetupTunnel makes the tunnel device and attaches tc_tunnel; the maps and
// links are pinned, so forwarding goes on while the node daemon is down.
package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Protocol marks Petrel's routes (rtnetlink protocol numbers above 200 are
// free for daemons; 'P' for Petrel).
const Protocol netlink.RouteProtocol = 0x50

// Config is one node's routing.
type Config struct {
	// Self is this node's name; its own podCIDR gets nothing.
	Self string
	// Handle chooses the network namespace (netlink.NewHandle() for the
	// current one).
	Handle *netlink.Handle
	// Mode is --tunnel (default ModeAuto).
	Mode Mode
	// PinDir holds petrel_tunnel (bpfobj.LoadPodProgram pins it); empty
	// keeps kernel routes only.
	PinDir string
	// NodeAddr is this node's address, the source of tunnelled routes
	// (default: its Node's InternalIP once the Node exists).
	NodeAddr netip.Addr
}

// Router keeps the pod routes and the tunnel map of one node.
type Router struct {
	cfg    Config
	nodes  corelisters.NodeLister
	tunnel *ebpf.Map
	kick   chan struct{}
	// warned remembers the nodes already reported unreachable, so that a
	// resync does not repeat it.
	warned map[string]bool
}

// New builds a router. With cfg.PinDir it opens the pinned tunnel map,
// which must exist (load tc_pod first).
func New(cfg Config) (*Router, error) {
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	r := &Router{cfg: cfg, kick: make(chan struct{}, 1), warned: map[string]bool{}}
	if cfg.PinDir != "" {
		m, err := bpfobj.OpenPinnedMap(cfg.PinDir, bpfobj.MapTunnel)
		if err != nil {
			return nil, err
		}
		r.tunnel = m
	}
	return r, nil
}

// Close releases the map; the pins and routes stay.
func (r *Router) Close() {
	if r.tunnel != nil {
		r.tunnel.Close()
	}
}

// Run follows the Nodes through the factory's informer (starting the
// factory) and keeps routes and map in step until ctx ends. It returns after
// the first sync.
func (r *Router) Run(ctx context.Context, factory informers.SharedInformerFactory) error {
	inf := factory.Core().V1().Nodes()
	r.nodes = inf.Lister()
	poke := func(interface{}) {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke,
		UpdateFunc: func(_, o interface{}) { poke(o) }, DeleteFunc: poke}); err != nil {
		return fmt.Errorf("routing: watch nodes: %w", err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return fmt.Errorf("routing: node informer did not sync")
	}
	if err := r.Sync(); err != nil {
		slog.Warn("routing: first sync", "err", err)
	}
	go func() {
		t := time.NewTicker(30 * time.Second) // repairs routes someone else removed
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-r.kick:
			case <-t.C:
			}
			if err := r.Sync(); err != nil {
				slog.Warn("routing: sync", "err", err)
			}
		}
	}()
	return nil
}

// peer is another node's podCIDR and the way there.
type peer struct {
	node string
	cidr netip.Prefix
	addr netip.Addr
	// how is bpfobj.Tunnel*; ifindex the uplink (native) or tunnel device.
	how     uint8
	ifindex int
}

// onLink is one of this node's IPv4 subnets and its interface.
type onLink struct {
	prefix netip.Prefix
	link   int
}

// subnets lists this node's IPv4 subnets, but not the tunnel devices' or
// loopback's.
func (r *Router) subnets() ([]onLink, error) {
	addrs, err := r.cfg.Handle.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	var out []onLink
	for _, a := range addrs {
		l, err := r.cfg.Handle.LinkByIndex(a.LinkIndex)
		if err != nil || l.Attrs().Flags&net.FlagLoopback != 0 || l.Attrs().Name == VXLANDevice || l.Attrs().Name == GeneveDevice {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		ones, _ := a.Mask.Size()
		if ok {
			out = append(out, onLink{prefix: netip.PrefixFrom(ip, ones).Masked(), link: a.LinkIndex})
		}
	}
	return out, nil
}

// internalIP is a Node's first IPv4 InternalIP.
func internalIP(n *corev1.Node) (netip.Addr, bool) {
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// plan decides the way to each other node's podCIDR, and this node's
// address.
func (r *Router) plan() ([]peer, netip.Addr, error) {
	subnets, err := r.subnets()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	tunnelIndex := 0
	if dev := r.cfg.Mode.device(); dev != "" {
		if l, err := r.cfg.Handle.LinkByName(dev); err == nil {
			tunnelIndex = l.Attrs().Index
		}
	}
	self := r.cfg.NodeAddr
	nodes, _ := r.nodes.List(labels.Everything())
	var out []peer
	for _, n := range nodes {
		addr, ok := internalIP(n)
		if n.Name == r.cfg.Self {
			if ok && !self.IsValid() {
				self = addr
			}
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() || !ok {
			continue
		}
		p := peer{node: n.Name, cidr: cidr.Masked(), addr: addr}
		for _, s := range subnets {
			if s.prefix.Contains(addr) {
				p.how, p.ifindex = bpfobj.TunnelNative, s.link
				break
			}
		}
		switch r.cfg.Mode {
		case ModeVXLAN, ModeGeneve:
			p.how = 0
		case ModeDisabled:
			if p.how == 0 {
				r.warnOnce(n.Name, "routing: node is on no subnet of this one and --tunnel is disabled: its pods are reachable only if the network routes its podCIDR", "node", n.Name, "address", addr, "podCIDR", cidr)
				continue
			}
		}
		if p.how == 0 {
			if tunnelIndex == 0 {
				r.warnOnce(n.Name, "routing: node needs the overlay but the tunnel device is missing", "node", n.Name, "device", r.cfg.Mode.device())
				continue
			}
			p.how, p.ifindex = r.cfg.Mode.how(), tunnelIndex
		}
		delete(r.warned, n.Name)
		out = append(out, p)
	}
	return out, self, nil
}

func (r *Router) warnOnce(node, msg string, args ...any) {
	if !r.warned[node] {
		r.warned[node] = true
		slog.Warn(msg, args...)
	}
}

// route is the kernel route of a peer.
func (p peer) route(self netip.Addr) *netlink.Route {
	rt := &netlink.Route{Dst: &net.IPNet{IP: p.cidr.Addr().AsSlice(), Mask: net.CIDRMask(p.cidr.Bits(), 32)}, Protocol: Protocol}
	if p.how == bpfobj.TunnelNative {
		rt.Gw = p.addr.AsSlice()
		return rt
	}
	rt.LinkIndex = p.ifindex
	rt.Scope = netlink.SCOPE_LINK
	if self.IsValid() {
		rt.Src = self.AsSlice()
	}
	return rt
}

// sameRoute says whether an existing route is the one wanted.
func sameRoute(have netlink.Route, want *netlink.Route) bool {
	if !have.Gw.Equal(want.Gw) || !have.Src.Equal(want.Src) {
		return false
	}
	return want.LinkIndex == 0 || have.LinkIndex == want.LinkIndex
}

// Sync makes the routes tagged Protocol, and the tunnel map, exactly the
// desired ones.
func (r *Router) Sync() error {
	peers, self, err := r.plan()
	if err != nil {
		return err
	}
	var errs []error
	want := map[netip.Prefix]*netlink.Route{}
	for _, p := range peers {
		want[p.cidr] = p.route(self)
	}
	routes, err := r.cfg.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: Protocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, rt := range routes {
		dst, _ := netip.ParsePrefix(rt.Dst.String())
		if w, ok := want[dst]; ok && sameRoute(rt, w) {
			delete(want, dst)
			continue
		}
		if err := r.cfg.Handle.RouteDel(&rt); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route to %s: %w", dst, err))
		}
	}
	for dst, rt := range want {
		if err := r.cfg.Handle.RouteReplace(rt); err != nil {
			errs = append(errs, fmt.Errorf("route %s (gateway %s, device %d): %w", dst, rt.Gw, rt.LinkIndex, err))
		}
	}
	if r.tunnel != nil {
		errs = append(errs, r.syncMap(peers))
	}
	return errors.Join(errs...)
}

// syncMap writes the peers into petrel_tunnel and drops every other entry.
// ModeDisabled keeps the map empty: cross-node traffic is then the kernel
// routes' alone.
func (r *Router) syncMap(peers []peer) error {
	want := map[bpfobj.TunnelKey]bpfobj.TunnelInfo{}
	if r.cfg.Mode != ModeDisabled {
		for _, p := range peers {
			want[bpfobj.TunnelKeyOf(p.cidr)] = bpfobj.TunnelInfo{NodeAddr: bpfobj.AddrKey(p.addr), Ifindex: uint32(p.ifindex), How: p.how}
		}
	}
	var (
		k     bpfobj.TunnelKey
		v     bpfobj.TunnelInfo
		stale []bpfobj.TunnelKey
		errs  []error
	)
	it := r.tunnel.Iterate()
	for it.Next(&k, &v) {
		if w, ok := want[k]; ok && w == v {
			delete(want, k)
			continue
		}
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read %s: %w", bpfobj.MapTunnel, err)
	}
	// New and changed entries first, so that a podCIDR moving between
	// nodes is never missing.
	for k, v := range want {
		if err := r.tunnel.Put(k, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %s/%d: %w", bpfobj.MapTunnel, bpfobj.AddrOf(k.Addr), k.Prefixlen, err))
		}
	}
	for _, k := range stale {
		if err := r.tunnel.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("%s: drop %s/%d: %w", bpfobj.MapTunnel, bpfobj.AddrOf(k.Addr), k.Prefixlen, err))
		}
	}
	return errors.Join(errs...)
}
