/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The way to other nodes' pods (petrel_tunnel), kept by dataplane/routing
 * from the Node objects: an LPM trie from each other node's podCIDR to that
 * node's address and how to reach it, natively (a neighbour on one of this
 * node's segments: bpf_redirect_neigh to the uplink) or through the overlay
 * (the tunnel device in collect-metadata mode, with the tunnel key set
 * here). petrel_fwd_stats counts the packets of each path, so that tests
 * and operators can see which one a packet took.
 */
#ifndef PETREL_TUNNEL_H
#define PETREL_TUNNEL_H

#include "lb.h"

#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

#define TUNNEL_MAP_MAX 16384

/* tunnel_info.how */
#define TUNNEL_NATIVE 1 /* same segment: redirect_neigh to ifindex, next hop node_addr */
#define TUNNEL_VXLAN 2  /* VXLAN device ifindex, remote node_addr */
#define TUNNEL_GENEVE 3 /* Geneve device ifindex, remote node_addr */

/*
 * One network for the whole cluster: the overlay carries only pod traffic
 * between Petrel nodes, so a single VNI is enough.
 */
#define TUNNEL_VNI 2
#define TUNNEL_TTL 64

/*
 * The tunnel devices of every node carry this MAC (locally administered),
 * so that a frame sent over the overlay is addressed to the receiving
 * device and the receiver's stack takes it as its own (PACKET_HOST) without
 * any neighbour resolution on the tunnel.
 */
#define TUNNEL_MAC {0x0a, 0x50, 0x45, 0x54, 0x52, 0x4c}
/*
 * The inner source of those frames: never the device's own address, which
 * the receiving VXLAN driver takes for a loop and drops.
 */
#define TUNNEL_SRC_MAC {0x0a, 0x50, 0x45, 0x54, 0x52, 0x4d}

struct tunnel_key {
	__u32 prefixlen; /* LPM: bits of addr that count */
	__be32 addr;
};

struct tunnel_info {
	__be32 node_addr; /* the other node's InternalIP */
	__u32 ifindex;    /* uplink (native) or tunnel device */
	__u8 how;         /* TUNNEL_* */
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct tunnel_key);
	__type(value, struct tunnel_info);
	__uint(max_entries, TUNNEL_MAP_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_tunnel SEC(".maps");

/* petrel_fwd_stats slots: packets per path. */
#define FWD_STAT_NATIVE 0       /* tc_pod: redirect_neigh to a node on the segment */
#define FWD_STAT_ENCAP_POD 1    /* tc_pod: tunnel key set, redirected to the tunnel */
#define FWD_STAT_ENCAP_HOST 2   /* tunnel egress: key set for the host's own packets */
#define FWD_STAT_DECAP_POD 3    /* tunnel ingress: straight into a local pod */
#define FWD_STAT_UPLINK_POD 4   /* uplink ingress (tc_nodeport): straight into a local pod */
#define FWD_STAT_NO_ROUTE 5     /* tunnel egress: no map entry, dropped */
#define FWD_STAT_MAX 8

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, FWD_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_fwd_stats SEC(".maps");

static __always_inline void fwd_count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&petrel_fwd_stats, &slot);

	if (n)
		*n += 1;
}

static __always_inline struct tunnel_info *tunnel_lookup(__be32 daddr)
{
	struct tunnel_key key = {.prefixlen = 32, .addr = daddr};

	return bpf_map_lookup_elem(&petrel_tunnel, &key);
}

/* Sets the outer destination of a packet about to enter the tunnel device. */
static __always_inline int tunnel_set_key(struct __sk_buff *skb, struct tunnel_info *info)
{
	struct bpf_tunnel_key key = {};

	key.remote_ipv4 = bpf_ntohl(info->node_addr);
	key.tunnel_id = TUNNEL_VNI;
	key.tunnel_ttl = TUNNEL_TTL;
	/*
	 * No outer UDP checksum (legal over IPv4): the inner packet has its
	 * own, and computing one in software costs every packet of the
	 * overlay.
	 */
	return bpf_skb_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX);
}

/* Addresses the inner frame to the remote tunnel device (see TUNNEL_MAC). */
static __always_inline int tunnel_set_macs(struct __sk_buff *skb)
{
	__u8 dst[6] = TUNNEL_MAC;
	__u8 src[6] = TUNNEL_SRC_MAC;

	if (bpf_skb_store_bytes(skb, 0, dst, 6, 0) < 0)
		return -1;
	return bpf_skb_store_bytes(skb, 6, src, 6, 0);
}
#endif
