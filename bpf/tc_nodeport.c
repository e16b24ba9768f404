// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * NodePort from other hosts (TCX ingress on the node's external
 * interfaces). A TCP or UDP packet to a node address and a NodePort is
 * DNATed to one of the service's backends on this node and handed into
 * that pod's namespace; tc_pod NATs the replies back. Connections are
 * tracked in petrel_np_ct, so every packet of one follows the first.
 * Backends on other nodes would need SNAT, which is not done: only local
 * backends are chosen, and a NodePort without one is left to the host
 * stack (which refuses it).
 */
#include "include/lb.h"
#include "include/lb_maps.h"
#include "include/endpoints.h"
#include "include/nodeport.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* How many slots are looked at for local backends. */
#define NP_MAX_SLOTS 64

/*
 * From a random slot on, the first backend that runs on this node: every
 * local backend is as likely as the slots make it.
 */
static __always_inline int pick_local_backend(struct lb4_key *key, __u16 count, struct lb4_backend *out)
{
	struct lb4_service *slot;
	struct lb4_backend *be;
	__u32 start, n = count;

	if (n > NP_MAX_SLOTS)
		n = NP_MAX_SLOTS;
	if (n == 0)
		return -1;
	start = bpf_get_prandom_u32() % n;
	for (__u32 i = 0; i < NP_MAX_SLOTS; i++) {
		if (i >= n)
			break;
		key->backend_slot = ((start + i) % n) + 1;
		slot = bpf_map_lookup_elem(&petrel_lb4_svc, key);
		if (!slot)
			continue;
		be = bpf_map_lookup_elem(&petrel_lb4_be, &slot->backend_id);
		if (!be || be->state != BACKEND_STATE_ACTIVE || !bpf_map_lookup_elem(&petrel_endpoints, &be->address))
			continue;
		*out = *be;
		return 0;
	}
	return -1;
}

SEC("tc")
int petrel_nodeport(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip4;
	__be16 *ports;
	struct np_ct_key fwd = {}, rev = {};
	struct np_ct_val val = {}, back = {};
	struct np_ct_val *ct;
	struct endpoint_info *ep;
	__be32 daddr;
	__u8 ttl;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end || ip4->ihl != 5 || ip4->ttl <= 1)
		return TC_ACT_OK;
	if (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	/* Fragments after the first carry no ports. */
	if (ip4->frag_off & bpf_htons(0x1fff))
		return TC_ACT_OK;
	ports = (void *)(ip4 + 1);
	if ((void *)(ports + 2) > data_end)
		return TC_ACT_OK;
	daddr = ip4->daddr;
	if (!bpf_map_lookup_elem(&petrel_node_addr4, &daddr))
		return TC_ACT_OK;

	fwd.saddr = ip4->saddr;
	fwd.daddr = daddr;
	fwd.sport = ports[0];
	fwd.dport = ports[1];
	fwd.proto = ip4->protocol;
	ttl = ip4->ttl;

	ct = bpf_map_lookup_elem(&petrel_np_ct, &fwd);
	if (ct) {
		val = *ct;
	} else {
		struct lb4_key key = {.address = 0, .dport = fwd.dport, .proto = fwd.proto};
		struct lb4_service *svc = bpf_map_lookup_elem(&petrel_lb4_svc, &key);
		struct lb4_backend be = {};

		if (!svc || !(svc->flags & SVC_FLAG_NODEPORT) || svc->count == 0)
			return TC_ACT_OK;
		if (pick_local_backend(&key, svc->count, &be) < 0)
			return TC_ACT_OK;
		val.addr = be.address;
		val.port = be.port;
		if (bpf_map_update_elem(&petrel_np_ct, &fwd, &val, BPF_ANY) < 0)
			return TC_ACT_OK;
		rev.saddr = be.address;
		rev.daddr = fwd.saddr;
		rev.sport = be.port;
		rev.dport = fwd.sport;
		rev.proto = fwd.proto;
		back.addr = fwd.daddr;
		back.port = fwd.dport;
		back.ifindex = skb->ingress_ifindex;
		__builtin_memcpy(back.peer_mac, eth->h_source, 6);
		__builtin_memcpy(back.local_mac, eth->h_dest, 6);
		if (bpf_map_update_elem(&petrel_np_ct, &rev, &back, BPF_ANY) < 0)
			return TC_ACT_OK;
	}

	ep = bpf_map_lookup_elem(&petrel_endpoints, &val.addr);
	if (!ep)
		return TC_ACT_OK;
	if (np_rewrite(skb, fwd.proto, IP_DST_OFF, fwd.daddr, val.addr, L4_OFF + 2, fwd.dport, val.port) < 0)
		return TC_ACT_SHOT;
	if (np_dec_ttl(skb, ttl) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
		return TC_ACT_SHOT;
	return bpf_redirect_peer(ep->ifindex, 0);
}
