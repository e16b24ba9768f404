// Package maglev builds Maglev lookup tables (Eisenbud et al., "Maglev: A
// Fast and Reliable Software Network Load Balancer", NSDI 2016) and mirrors
// the flow hash of bpf/include/lb_maps.h. Every node builds the same table
// from the same backends, so that any node sends a flow to the same backend,
// and a backend that comes or goes moves few of the others' flows.
package maglev

import (
	"hash/fnv"
	"net/netip"
	"sort"
)

// TableSize is the number of entries of a table: LB_MAGLEV_SIZE, a prime.
const TableSize = 1021

// Table fills a table of size m (a prime larger than len(backends)) with
// indexes into backends, which are named by something every node agrees on
// (address and port). The result does not depend on the order of backends.
// Nil when there are none.
func Table(backends []string, m int) []int {
	n := len(backends)
	if n == 0 || m < 2 {
		return nil
	}
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return backends[order[a]] < backends[order[b]] })
	offset, skip := make([]uint64, n), make([]uint64, n)
	for j, i := range order {
		offset[j] = hash(backends[i], 'o') % uint64(m)
		skip[j] = hash(backends[i], 's')%uint64(m-1) + 1
	}
	table := make([]int, m)
	for i := range table {
		table[i] = -1
	}
	next := make([]uint64, n)
	filled := 0
	for {
		for j, i := range order {
			// The backend's next preferred entry that is still free.
			c := (offset[j] + next[j]*skip[j]) % uint64(m)
			for table[c] >= 0 {
				next[j]++
				c = (offset[j] + next[j]*skip[j]) % uint64(m)
			}
			table[c] = i
			next[j]++
			if filled++; filled == m {
				return table
			}
		}
	}
}

func hash(name string, salt byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte{salt})
	h.Write([]byte(name))
	return h.Sum64()
}

func mix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// FlowHash is lb_flow_hash of bpf/include/lb_maps.h: the hash tc_nodeport
// picks a flow's table entry with (modulo the table's size).
func FlowHash(saddr, daddr netip.Addr, sport, dport uint16, proto uint8) uint32 {
	s, d := saddr.As4(), daddr.As4()
	h := mix32(be32(s) ^ 0x9e3779b9)
	h = mix32(h ^ be32(d))
	h = mix32(h ^ (uint32(sport)<<16 | uint32(dport)))
	return mix32(h ^ uint32(proto))
}

func be32(b [4]byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
