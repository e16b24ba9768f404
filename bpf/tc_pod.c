// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod egress on the host side of a pod's veth (TCX ingress). A packet to
 * another pod on this node goes straight into that pod's namespace with
 * bpf_redirect_peer, skipping the host's routing; everything else is left
 * to the host stack.
 */
#include "include/lb.h"

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct endpoint_info);
	__uint(max_entries, LB_ENDPOINT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_endpoints SEC(".maps");

SEC("tc")
int petrel_from_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip4;
	struct endpoint_info *ep;
	__be32 daddr;
	__u8 ttl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end || ip4->ttl <= 1)
		return TC_ACT_OK;
	daddr = ip4->daddr;
	ep = bpf_map_lookup_elem(&petrel_endpoints, &daddr);
	if (!ep)
		return TC_ACT_OK;

	/* What the host's forwarding would do: one hop less, new L2 ends. */
	ttl = ip4->ttl;
	__u16 old = bpf_htons((__u16)ttl << 8);
	__u16 new = bpf_htons((__u16)(ttl - 1) << 8);
	if (bpf_l3_csum_replace(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, check), old, new, 2) < 0)
		return TC_ACT_OK;
	ttl--;
	if (bpf_skb_store_bytes(skb, ETH_HLEN + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0) < 0)
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
		return TC_ACT_OK;
	return bpf_redirect_peer(ep->ifindex, 0);
}
