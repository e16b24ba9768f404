package bpfobj

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// NodePortCTClosing is NP_CT_CLOSING of bpf/include/nodeport.h: a TCP FIN
// or RST passed.
const NodePortCTClosing = 2

// CTTimeouts say how long a NodePort connection may go without a packet
// before its entries are dropped.
type CTTimeouts struct {
	// Closing is for connections that saw a TCP FIN or RST.
	Closing uint32
	TCP     uint32
	UDP     uint32
}

// DefaultCTTimeouts: a closed TCP connection 10 s after its last packet,
// an idle one after an hour, UDP flows after a minute.
var DefaultCTTimeouts = CTTimeouts{Closing: 10, TCP: 3600, UDP: 60}

// MonotonicSeconds is the clock the programs stamp entries with
// (bpf_ktime_get_coarse_ns, CLOCK_MONOTONIC).
func MonotonicSeconds() uint32 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint32(ts.Sec)
}

// reverseKey is the key of a forward entry's reverse entry.
func reverseKey(k NodePortCTKey, v NodePortCTValue) NodePortCTKey {
	if v.NatPort != 0 {
		return NodePortCTKey{Saddr: v.Addr, Daddr: v.NatAddr, Sport: v.Port, Dport: v.NatPort, Proto: k.Proto}
	}
	return NodePortCTKey{Saddr: v.Addr, Daddr: k.Saddr, Sport: v.Port, Dport: k.Sport, Proto: k.Proto}
}

// CollectNodePortCT deletes the entries of NodePort connections that are
// over (both directions of each), and reverse entries whose forward entry
// the LRU already dropped; the LRU alone would keep a finished connection's
// entries — and, for a SNATed one, its port toward the backend — until the
// map fills. now is MonotonicSeconds. It returns how many entries went.
func CollectNodePortCT(ct *ebpf.Map, now uint32, t CTTimeouts) (int, error) {
	type entry struct {
		key NodePortCTKey
		val NodePortCTValue
	}
	var forward, reverse []entry
	var k NodePortCTKey
	var v NodePortCTValue
	it := ct.Iterate()
	for it.Next(&k, &v) {
		if v.Ifindex == 0 {
			forward = append(forward, entry{k, v})
		} else {
			reverse = append(reverse, entry{k, v})
		}
	}
	if err := it.Err(); err != nil {
		return 0, fmt.Errorf("read NodePort connections: %w", err)
	}
	revByKey := make(map[NodePortCTKey]NodePortCTValue, len(reverse))
	for _, e := range reverse {
		revByKey[e.key] = e.val
	}
	idle := func(last uint32) uint32 {
		if last == 0 || last > now {
			return 0 // stamped by nothing, or by a clock ahead of ours
		}
		return now - last
	}
	deleted := 0
	del := func(key NodePortCTKey) error {
		if err := ct.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		deleted++
		return nil
	}
	// Every reverse entry a forward entry names, whether it stays or goes
	// below; the others lost their forward entry to the LRU.
	named := make(map[NodePortCTKey]bool, len(forward))
	for _, f := range forward {
		named[reverseKey(f.key, f.val)] = true
	}
	for _, f := range forward {
		rk := reverseKey(f.key, f.val)
		last, flags := f.val.LastSeen, f.val.Flags
		if r, ok := revByKey[rk]; ok {
			last, flags = max(last, r.LastSeen), flags|r.Flags
		}
		limit := t.UDP
		if f.key.Proto == 6 {
			limit = t.TCP
		}
		if flags&NodePortCTClosing != 0 {
			limit = t.Closing
		}
		if idle(last) <= limit {
			continue
		}
		if err := del(f.key); err != nil {
			return deleted, err
		}
		if _, ok := revByKey[rk]; ok {
			if err := del(rk); err != nil {
				return deleted, err
			}
		}
	}
	for _, r := range reverse {
		if !named[r.key] && idle(r.val.LastSeen) > t.Closing {
			if err := del(r.key); err != nil {
				return deleted, err
			}
		}
	}
	return deleted, nil
}
