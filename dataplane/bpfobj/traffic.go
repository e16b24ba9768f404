package bpfobj

import (
	"errors"
	"fmt"
)

// Traffic map layouts, mirrored from bpf/include/traffic.h by bpf2go.
type (
	// TrafficKey is one frontend (its rev-NAT id) and one of its backends.
	TrafficKey = sockLBLbTrafficKey
	// TrafficValue is what one CPU counted for a TrafficKey.
	TrafficValue = sockLBLbTrafficVal
)

// ConfigTraffic is LB_CFG_TRAFFIC: the programs count traffic per frontend
// and backend.
const ConfigTraffic = 1 << 0

// SetTrafficCounting switches traffic counting on or off in the programs
// sharing these maps; it takes effect at the next connection or packet.
func SetTrafficCounting(m *Maps, on bool) error {
	if m.LBConfig == nil {
		return errors.New("no load balancer config map (the node's BPF objects predate traffic counting)")
	}
	var v uint32
	if err := m.LBConfig.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("read the load balancer config: %w", err)
	}
	if on {
		v |= ConfigTraffic
	} else {
		v &^= ConfigTraffic
	}
	if err := m.LBConfig.Put(uint32(0), v); err != nil {
		return fmt.Errorf("write the load balancer config: %w", err)
	}
	return nil
}

// TrafficCounting reports whether the programs count traffic.
func TrafficCounting(m *Maps) (bool, error) {
	if m.LBConfig == nil {
		return false, nil
	}
	var v uint32
	if err := m.LBConfig.Lookup(uint32(0), &v); err != nil {
		return false, fmt.Errorf("read the load balancer config: %w", err)
	}
	return v&ConfigTraffic != 0, nil
}

// ReadTraffic sums the per-CPU traffic counters of every frontend and
// backend that has any.
func ReadTraffic(m *Maps) (map[TrafficKey]TrafficValue, error) {
	out := map[TrafficKey]TrafficValue{}
	if m.Traffic == nil {
		return out, nil
	}
	var k TrafficKey
	var perCPU []TrafficValue
	it := m.Traffic.Iterate()
	for it.Next(&k, &perCPU) {
		var sum TrafficValue
		for _, v := range perCPU {
			sum.Connections += v.Connections
			sum.Packets += v.Packets
			sum.Bytes += v.Bytes
		}
		out[k] = sum
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read the traffic map: %w", err)
	}
	return out, nil
}
