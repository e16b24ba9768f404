package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// The node-local DNS address lives on the loopback device as a /32: every
// kernel has lo, while the dummy driver is often not built.
const localAddrLink = "lo"

func hostPrefix(addr netip.Addr) *netlink.Addr {
	return &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(addr.BitLen(), addr.BitLen())}}
}

// ensureLocalAddress puts addr on lo so the node-local DNS can listen on it;
// it stays across restarts (it holds no state).
func ensureLocalAddress(addr netip.Addr) error {
	link, err := netlink.LinkByName(localAddrLink)
	if err != nil {
		return fmt.Errorf("look up %s: %w", localAddrLink, err)
	}
	if err := netlink.AddrAdd(link, hostPrefix(addr)); err != nil && !errors.Is(err, syscall.EEXIST) {
		return fmt.Errorf("add the node-local DNS address %s to %s: %w", addr, localAddrLink, err)
	}
	return nil
}

// RemoveLocalAddress takes the node-local DNS address off lo. For tests and
// for taking a node out of service.
func RemoveLocalAddress(addr netip.Addr) error {
	link, err := netlink.LinkByName(localAddrLink)
	if err != nil {
		return fmt.Errorf("look up %s: %w", localAddrLink, err)
	}
	if err := netlink.AddrDel(link, hostPrefix(addr)); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return fmt.Errorf("remove %s from %s: %w", addr, localAddrLink, err)
	}
	return nil
}
