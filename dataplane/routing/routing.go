// Package routing gives a node routes to the other nodes' pods: for every
// other Node with a podCIDR and an InternalIP, a route "podCIDR via
// InternalIP" (native routing, for nodes on one L2 segment). Routes are
// tagged with their own protocol number, so that the reconciler removes only
// what it made.
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

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Protocol marks Petrel's routes (rtnetlink protocol numbers above 200 are
// free for daemons; 'P' for Petrel).
const Protocol netlink.RouteProtocol = 0x50

// Router keeps the pod routes of one node.
type Router struct {
	self   string
	handle *netlink.Handle
	nodes  corelisters.NodeLister
	kick   chan struct{}
}

// New builds a router for node self; handle chooses the network namespace
// (netlink.NewHandle() for the current one).
func New(self string, handle *netlink.Handle) *Router {
	return &Router{self: self, handle: handle, kick: make(chan struct{}, 1)}
}

// Run follows the Nodes through cs and keeps the routes until ctx ends.
func (r *Router) Run(ctx context.Context, cs kubernetes.Interface) error {
	factory := informers.NewSharedInformerFactory(cs, 0)
	inf := factory.Core().V1().Nodes()
	r.nodes = inf.Lister()
	poke := func(interface{}) {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: poke, UpdateFunc: func(_, o interface{}) { poke(o) }, DeleteFunc: poke})
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

// desired maps each other node's podCIDR to its InternalIP.
func (r *Router) desired() map[netip.Prefix]netip.Addr {
	out := map[netip.Prefix]netip.Addr{}
	nodes, _ := r.nodes.List(labels.Everything())
	for _, n := range nodes {
		if n.Name == r.self {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil || !cidr.Addr().Is4() {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
				out[cidr.Masked()] = ip
				break
			}
		}
	}
	return out
}

// Sync makes the routes tagged Protocol exactly the desired ones.
func (r *Router) Sync() error {
	want := r.desired()
	routes, err := r.handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: Protocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	var errs []error
	for _, rt := range routes {
		dst, _ := netip.ParsePrefix(rt.Dst.String())
		gw, _ := netip.AddrFromSlice(rt.Gw.To4())
		if want[dst] == gw && gw.IsValid() {
			delete(want, dst)
			continue
		}
		if err := r.handle.RouteDel(&rt); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("remove route to %s: %w", dst, err))
		}
	}
	for dst, gw := range want {
		route := &netlink.Route{Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), 32)}, Gw: gw.AsSlice(), Protocol: Protocol}
		if err := r.handle.RouteReplace(route); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", dst, gw, err))
		}
	}
	return errors.Join(errs...)
}
