/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The load balancer's maps. Every program that includes this file shares
 * them: they are pinned by name under the node's bpffs directory, so a second
 * program (or a restarted daemon) opens the same maps instead of new ones.
 */
#ifndef PETREL_LB_MAPS_H
#define PETREL_LB_MAPS_H

#include "lb.h"

#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb4_key);
	__type(value, struct lb4_service);
	__uint(max_entries, LB_SERVICE_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb4_svc SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb4_backend);
	__uint(max_entries, LB_BACKEND_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb4_be SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u16);
	__type(value, struct lb4_reverse_nat);
	__uint(max_entries, LB_REVNAT_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb4_rnat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity_val);
	__uint(max_entries, LB_AFFINITY_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb_aff SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct sock_revnat4_key);
	__type(value, struct sock_revnat4_val);
	__uint(max_entries, LB_SOCK_REVNAT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_sk_rnat4 SEC(".maps");

/* The node's own IPv4 addresses: NodePort frontends answer on each of them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, __u8);
	__uint(max_entries, LB_NODE_ADDR_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_node_addr4 SEC(".maps");

/* A service's Maglev table (by rev-NAT id): LB_MAGLEV_SIZE backend ids. */
struct lb4_maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LB_MAGLEV_SIZE);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u16);
	__uint(max_entries, LB_MAGLEV_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb4_maglev_table);
} petrel_lb4_maglev SEC(".maps");

/*
 * A flow's hash for Maglev: fixed (no per-boot seed), so that every node
 * computes the same one; dataplane/maglev mirrors it.
 */
static __always_inline __u32 lb_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u32 lb_flow_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	__u32 h = lb_mix32(bpf_ntohl(saddr) ^ 0x9e3779b9);

	h = lb_mix32(h ^ bpf_ntohl(daddr));
	h = lb_mix32(h ^ (((__u32)bpf_ntohs(sport) << 16) | bpf_ntohs(dport)));
	return lb_mix32(h ^ proto);
}

/* Counters, one slot per LB_STAT_*, per CPU so that no packet contends. */
#define LB_STAT_TRANSLATED 0
#define LB_STAT_REFUSED 1
#define LB_STAT_REVERSED 2
#define LB_STAT_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, LB_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb_stats SEC(".maps");

static __always_inline void lb_count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&petrel_lb_stats, &stat);

	if (v)
		*v += 1;
}

#endif
