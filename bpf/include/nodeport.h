/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NodePort connection tracking shared by tc_nodeport (a client's packets
 * arriving on a node interface, DNATed to a backend, and SNATed too when the
 * backend is on another node, whose replies come back to tc_nodeport) and
 * tc_pod (a local backend's replies, NATed back and sent out where the
 * client came from). Both directions live in one LRU map: a forward key has
 * the client as source, a reverse key the backend as source.
 */
#ifndef PETREL_NODEPORT_H
#define PETREL_NODEPORT_H

#include "lb.h"

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

#define NP_CT_MAP_MAX 65536

struct np_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/*
 * Forward entries (key: the client's packet): the backend, and for a
 * backend on another node the address and port the node uses toward it
 * (nat_addr, nat_port; nat_port is 0 for a local backend). Reverse entries (key: the backend's reply): the node
 * address and port the client asked, the interface it came in on and the
 * two MACs of that hop, so the reply goes straight back out; for a backend
 * on another node (NP_CT_SNAT) also the client, whom the reply is for.
 */
struct np_ct_val {
	__be32 addr;
	__be16 port;
	__be16 nat_port;
	__u32 ifindex;
	__u8 peer_mac[6];
	__u8 local_mac[6];
	__be32 client_addr;
	__be16 client_port;
	__u8 flags;
	__u8 pad;
	__be32 nat_addr;
	/* Seconds of CLOCK_MONOTONIC when a packet last used the entry, for
	 * the node's garbage collection of finished connections. */
	__u32 last_seen;
	/* Forward entries: the backend and frontend the flow counts for
	 * (include/traffic.h). */
	__u32 backend_id;
	__u16 rev_nat_index;
	__u16 pad2;
};

/* A reverse entry of a connection SNATed to a backend on another node. */
#define NP_CT_SNAT 1
/* A TCP FIN or RST went this way: the connection is ending. */
#define NP_CT_CLOSING 2

static __always_inline __u32 np_now(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

/*
 * Notes that a packet used the entry: its time (written only when the
 * second changed, to spare the cache line) and, for TCP, a FIN or RST.
 * tcp_flags is the 13th byte of the TCP header, 0 for UDP.
 */
static __always_inline void np_touch(struct np_ct_val *ct, __u8 tcp_flags)
{
	__u32 now = np_now();

	if (ct->last_seen != now)
		ct->last_seen = now;
	if ((tcp_flags & 0x05) && !(ct->flags & NP_CT_CLOSING))
		ct->flags |= NP_CT_CLOSING;
}

/* The TCP flags byte of a packet (0 when not TCP or not there). */
static __always_inline __u8 np_tcp_flags(struct iphdr *ip4, void *data_end)
{
	__u8 *flags = (__u8 *)(ip4 + 1) + 13;

	if (ip4->protocol != IPPROTO_TCP || (void *)(flags + 1) > data_end)
		return 0;
	return *flags;
}

/*
 * The node's ports toward remote backends: above Linux's default ephemeral
 * range (32768-60999), so the node's own connections do not take them.
 */
#define NP_SNAT_PORT_MIN 61000
#define NP_SNAT_PORT_RANGE 4536

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct np_ct_key);
	__type(value, struct np_ct_val);
	__uint(max_entries, NP_CT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_np_ct SEC(".maps");

#define IP_CSUM_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, check))
#define IP_SRC_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, saddr))
#define IP_DST_OFF (ETH_HLEN + __builtin_offsetof(struct iphdr, daddr))
#define L4_OFF (ETH_HLEN + sizeof(struct iphdr))

/* Offset of the L4 checksum, or 0 for a protocol we do not NAT. */
static __always_inline __u32 np_l4_csum_off(__u8 proto)
{
	if (proto == IPPROTO_TCP)
		return L4_OFF + 16;
	if (proto == IPPROTO_UDP)
		return L4_OFF + 6;
	return 0;
}

/*
 * Rewrites one address (at addr_off) and the port after it in the L4
 * header (at port_off), fixing the IP and L4 checksums.
 */
static __always_inline int np_rewrite(struct __sk_buff *skb, __u8 proto, __u32 addr_off, __be32 old_addr, __be32 new_addr,
				      __u32 port_off, __be16 old_port, __be16 new_port)
{
	__u32 csum_off = np_l4_csum_off(proto);
	__u64 flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	if (!csum_off)
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off, old_addr, new_addr, flags | BPF_F_PSEUDO_HDR | 4) < 0)
		return -1;
	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, addr_off, &new_addr, 4, 0) < 0)
		return -1;
	if (bpf_l4_csum_replace(skb, csum_off, old_port, new_port, flags | 2) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, port_off, &new_port, 2, 0) < 0)
		return -1;
	return 0;
}

/* One hop less, as the host's forwarding would do. */
static __always_inline int np_dec_ttl(struct __sk_buff *skb, __u8 ttl)
{
	__u16 old = bpf_htons((__u16)ttl << 8);
	__u16 new = bpf_htons((__u16)(ttl - 1) << 8);

	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, old, new, 2) < 0)
		return -1;
	ttl--;
	return bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0);
}
/*
 * Sends a reply, already NATed, back out of the interface its client came
 * in on, addressed to the hop it came from, one hop less.
 */
static __always_inline int np_send_back(struct __sk_buff *skb, struct np_ct_val *ct, __u8 ttl)
{
	if (np_dec_ttl(skb, ttl) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, ct->peer_mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ct->local_mac, 6, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect(ct->ifindex, 0);
}
#endif
