/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Traffic per service frontend and backend: new connections, counted by
 * the socket load balancer's connect/sendmsg hooks and by tc_nodeport, and
 * packets and bytes, counted by the socket load balancer's cgroup_skb hooks
 * (both ways) and by tc_nodeport (from clients). Kept per
 * CPU, so that no two CPUs contend for one counter; readers sum the CPUs.
 * Counting is switched by LB_CFG_TRAFFIC in petrel_lb_config, so that its
 * cost can be measured against none in one run.
 */
#ifndef PETREL_TRAFFIC_H
#define PETREL_TRAFFIC_H

#include "lb.h"

#define LB_TRAFFIC_MAP_MAX 16384

/* petrel_lb_config[0] bits */
#define LB_CFG_TRAFFIC (1 << 0)

/* One frontend (its rev-NAT id) and one of its backends. */
struct lb_traffic_key {
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad;
};

struct lb_traffic_val {
	__u64 connections;
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb_config SEC(".maps");

/*
 * LRU, so that counters of backends gone long ago make room by themselves
 * when the proxy has not deleted them.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__type(key, struct lb_traffic_key);
	__type(value, struct lb_traffic_val);
	__uint(max_entries, LB_TRAFFIC_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_lb_traffic SEC(".maps");

static __always_inline void lb_traffic(__u16 rev_nat_index, __u32 backend_id, __u64 connections, __u64 packets,
				       __u64 bytes)
{
	__u32 zero = 0;
	__u32 *cfg = bpf_map_lookup_elem(&petrel_lb_config, &zero);
	struct lb_traffic_key key = {.backend_id = backend_id, .rev_nat_index = rev_nat_index};
	struct lb_traffic_val *v;

	if (!cfg || !(*cfg & LB_CFG_TRAFFIC))
		return;
	v = bpf_map_lookup_elem(&petrel_lb_traffic, &key);
	if (!v) {
		struct lb_traffic_val init = {.connections = connections, .packets = packets, .bytes = bytes};

		/* Another CPU may create it first: then add to that one. */
		if (bpf_map_update_elem(&petrel_lb_traffic, &key, &init, BPF_NOEXIST) == 0)
			return;
		v = bpf_map_lookup_elem(&petrel_lb_traffic, &key);
		if (!v)
			return;
	}
	/* The value is this CPU's own: plain adds, no atomics. */
	v->connections += connections;
	v->packets += packets;
	v->bytes += bytes;
}

#endif
