package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// hostAddresses lists the node's IPv4 addresses, loopback excepted: a pod's
// own 127.0.0.1 must not turn into a NodePort.
func hostAddresses() ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list the node's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if ok && !ip.IsLoopback() {
			out = append(out, ip)
		}
	}
	return out, nil
}

// syncNodeAddresses makes the node address map hold exactly the node's
// current addresses.
func (p *Proxy) syncNodeAddresses() error {
	list := p.cfg.NodeAddresses
	if list == nil {
		list = hostAddresses
	}
	addrs, err := list()
	if err != nil {
		return err
	}
	want := map[uint32]bool{}
	for _, a := range addrs {
		if a.Is4() {
			want[bpfobj.AddrKey(a)] = true
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.tables.maps.NodeAddrs
	var k uint32
	var v uint8
	var stale []uint32
	it := m.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
		delete(want, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("read the node address map: %w", err)
	}
	for _, k := range stale {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete node address: %w", err)
		}
	}
	for k := range want {
		if err := m.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("write node address: %w", err)
		}
	}
	return nil
}

// nodeAddressLoop follows address changes (DHCP, new interfaces) slowly:
// NodePort on a brand-new address may take up to 10 seconds to answer.
func (p *Proxy) nodeAddressLoop(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := p.syncNodeAddresses(); err != nil {
				slog.Warn("proxy: node addresses", "err", err)
			}
		}
	}
}
