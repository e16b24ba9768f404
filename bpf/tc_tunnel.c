// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The node's tunnel device (petrel_vxlan or petrel_geneve, in external /
 * collect-metadata mode, so one device serves every remote node).
 *
 * Egress: packets that reach the device through the host's routing (the
 * host's own processes, tc_nodeport's SNAT and FIB path toward a remote
 * backend) get the tunnel key of the node owning their destination, from
 * petrel_tunnel, and the frame the addresses of TUNNEL_SRC_MAC and
 * TUNNEL_MAC; packets tc_pod already keyed pass as they are. A packet
 * nobody owns is dropped: the device has no other way to send it.
 *
 * Ingress: a decapsulated packet for a pod of this node goes straight into
 * the pod's namespace with bpf_redirect_peer; the rest is left to the host
 * stack, which takes it as its own (the frame is addressed to TUNNEL_MAC,
 * the device's own address). The pod's ingress policy judges it first
 * (include/policy.h): nothing on the pod's side sees it after the redirect.
 */
#include "include/lb.h"
#include "include/endpoints.h"
#include "include/nodeport.h"
#include "include/tunnel.h"
#include "include/policy.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tc")
int petrel_to_tunnel(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bpf_tunnel_key have = {};
	struct tunnel_info *info;
	struct iphdr *ip4;

	/*
	 * tc_pod keyed it already. (On a transmit key this helper reports the
	 * remote in the local field, so only its success counts.)
	 */
	if (bpf_skb_get_tunnel_key(skb, &have, sizeof(have), 0) == 0)
		return TC_ACT_OK;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_SHOT;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end)
		return TC_ACT_SHOT;
	info = tunnel_lookup(ip4->daddr);
	if (!info || (info->how != TUNNEL_VXLAN && info->how != TUNNEL_GENEVE)) {
		fwd_count(FWD_STAT_NO_ROUTE);
		return TC_ACT_SHOT;
	}
	/* The host's frame has the device's own address as its source. */
	if (tunnel_set_key(skb, info) < 0 || tunnel_set_macs(skb) < 0)
		return TC_ACT_SHOT;
	fwd_count(FWD_STAT_ENCAP_HOST);
	return TC_ACT_OK;
}

SEC("tc")
int petrel_from_tunnel(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct endpoint_info *ep;
	struct pol_flow flow;
	struct iphdr *ip4;
	__be32 daddr;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end || ip4->ttl <= 1)
		return TC_ACT_OK;
	daddr = ip4->daddr;
	ep = bpf_map_lookup_elem(&petrel_endpoints, &daddr);
	if (!ep)
		return TC_ACT_OK;
	if (pol_parse(ip4, data_end, &flow) < 0 || !pol_judge(&flow, 0, 1, POL_POINT_TUNNEL))
		return TC_ACT_SHOT;
	if (np_dec_ttl(skb, ip4->ttl) < 0)
		return TC_ACT_OK;
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
		return TC_ACT_OK;
	fwd_count(FWD_STAT_DECAP_POD);
	return bpf_redirect_peer(ep->ifindex, 0);
}
