// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Pod egress on the host side of a pod's veth (TCX ingress). A reply to a
 * NodePort client that tc_nodeport sent here is NATed back and sent out of
 * the interface the client came in on. A packet to another pod on this node
 * goes straight into that pod's namespace with bpf_redirect_peer, skipping
 * the host's routing. A packet to a pod of another node (petrel_tunnel)
 * leaves without the host's routing and netfilter too: to a node on one of
 * this node's segments by bpf_redirect_neigh out of the uplink, to any
 * other through the overlay, its tunnel key set here. Everything else is
 * left to the host stack.
 *
 * NetworkPolicy (include/policy.h) judges every new connection here: the
 * sending pod's egress policy, and for a pod of this node also the
 * receiver's ingress policy, since bpf_redirect_peer skips every hook on
 * the receiver's side. A pod of another node judges its own ingress where
 * the packet arrives (tc_nodeport, tc_tunnel). NodePort replies (above) are
 * replies of connections tc_nodeport judged, and pass.
 */
#include "include/lb.h"
#include "include/endpoints.h"
#include "include/nodeport.h"
#include "include/tunnel.h"
#include "include/policy.h"

#ifndef AF_INET
#define AF_INET 2
#endif

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Keeps struct pol_event in the BTF, for bpf2go's Go mirror of the ring's records. */
const struct pol_event *unused_pol_event __attribute__((unused));

/* A reply of a NodePort backend: back to the client, as the node. */
static __always_inline int reverse_nodeport(struct __sk_buff *skb, struct iphdr *ip4, void *data_end)
{
	struct np_ct_key key = {};
	struct np_ct_val *ct;
	__be16 *ports = (void *)(ip4 + 1);
	__u8 ttl = ip4->ttl;

	if (ip4->ihl != 5 || (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP) || (void *)(ports + 2) > data_end)
		return -1;
	key.saddr = ip4->saddr;
	key.daddr = ip4->daddr;
	key.sport = ports[0];
	key.dport = ports[1];
	key.proto = ip4->protocol;
	ct = bpf_map_lookup_elem(&petrel_np_ct, &key);
	if (!ct)
		return -1;
	np_touch(ct, np_tcp_flags(ip4, data_end));
	if (np_rewrite(skb, key.proto, IP_SRC_OFF, key.saddr, ct->addr, L4_OFF, key.sport, ct->port) < 0)
		return TC_ACT_SHOT;
	return np_send_back(skb, ct, ttl);
}

/*
 * A packet for a pod of another node: natively to a node on a segment of
 * this node's, through the tunnel to any other. TC_ACT_OK (the host stack)
 * when the map does not know the address or a rewrite fails.
 */
static __always_inline int to_other_node(struct __sk_buff *skb, __be32 daddr, __u8 ttl)
{
	struct tunnel_info *info = tunnel_lookup(daddr);
	struct bpf_redir_neigh nh = {};

	if (!info)
		return TC_ACT_OK;
	switch (info->how) {
	case TUNNEL_NATIVE:
		if (np_dec_ttl(skb, ttl) < 0)
			return TC_ACT_OK;
		nh.nh_family = AF_INET;
		nh.ipv4_nh = info->node_addr;
		fwd_count(FWD_STAT_NATIVE);
		/* The neighbour subsystem fills in both MACs. */
		return bpf_redirect_neigh(info->ifindex, &nh, sizeof(nh), 0);
	case TUNNEL_VXLAN:
	case TUNNEL_GENEVE:
		if (np_dec_ttl(skb, ttl) < 0)
			return TC_ACT_OK;
		if (tunnel_set_key(skb, info) < 0 || tunnel_set_macs(skb) < 0)
			return TC_ACT_OK;
		fwd_count(FWD_STAT_ENCAP_POD);
		return bpf_redirect(info->ifindex, 0);
	}
	return TC_ACT_OK;
}

SEC("tc")
int petrel_from_pod(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip4;
	struct endpoint_info *ep;
	struct pol_flow flow;
	__be32 daddr;
	int ret;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end || ip4->ttl <= 1)
		return TC_ACT_OK;
	ret = reverse_nodeport(skb, ip4, data_end);
	if (ret >= 0)
		return ret;

	/* The packet may have moved: parse again. */
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	ip4 = data + ETH_HLEN;
	if ((void *)(ip4 + 1) > data_end)
		return TC_ACT_OK;
	daddr = ip4->daddr;
	ep = bpf_map_lookup_elem(&petrel_endpoints, &daddr);
	if (pol_parse(ip4, data_end, &flow) < 0)
		return TC_ACT_SHOT;
	if (!pol_judge(&flow, 1, ep != NULL, POL_POINT_POD))
		return TC_ACT_SHOT;
	if (!ep)
		return to_other_node(skb, daddr, ip4->ttl);
	if (np_dec_ttl(skb, ip4->ttl) < 0)
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 ||
	    bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
		return TC_ACT_OK;
	return bpf_redirect_peer(ep->ifindex, 0);
}
