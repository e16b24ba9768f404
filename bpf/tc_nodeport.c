// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * NodePort, LoadBalancer and external IPs from other hosts (TCX ingress on
 * the node's external interfaces). A TCP or UDP packet to a node address
 * and a NodePort, or to a LoadBalancer ingress IP or external IP and its
 * service port, is DNATed to one of the service's backends. A backend on this node gets it
 * handed into its pod's namespace, and tc_pod NATs the replies back. A
 * backend on another node gets it SNATed to the node address the client
 * asked (for a service address: the address of the interface it came in
 * on, from petrel_np_ifaddr) and a port of the node's own, and forwarded by the kernel's FIB;
 * the replies come back to this program, which NATs them to the client.
 * Connections are tracked in petrel_np_ct, so every packet of one follows
 * the first. A packet from another node for a pod of this one (native
 * routing between nodes of one segment) goes straight into the pod's
 * namespace, past the host's routing and netfilter, as tc_pod sent it.
 * Both ways into a local pod are judged by the pod's ingress policy
 * (include/policy.h) first: a NodePort connection by its client's address
 * and the backend's port, after translation.
 */
#include "include/lb.h"
#include "include/lb_maps.h"
#include "include/traffic.h"
#include "include/endpoints.h"
#include "include/nodeport.h"
#include "include/tunnel.h"
#include "include/policy.h"

#include <linux/if_packet.h>


char LICENSE[] SEC("license") = "Dual BSD/GPL";

#ifndef AF_INET
#define AF_INET 2
#endif

/* Each NodePort interface's IPv4 address, for SNAT of service addresses. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __be32);
	__uint(max_entries, 64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_np_ifaddr SEC(".maps");

/* How many ports are tried for a new SNATed connection. */
#define NP_SNAT_TRIES 16

/*
 * The backend of a new flow: by the service's Maglev table when it has
 * one, else a random slot (as the slots weigh the backends).
 */
static __always_inline int pick_backend(struct lb4_key *key, struct lb4_service *svc, struct np_ct_key *flow, struct lb4_backend *out,
					__u32 *out_id)
{
	struct lb4_service *slot;
	struct lb4_backend *be;
	__u32 *id = NULL;

	if (svc->count == 0)
		return -1;
	if (svc->flags & SVC_FLAG_MAGLEV) {
		__u16 rev_nat = svc->rev_nat_index;
		void *table = bpf_map_lookup_elem(&petrel_lb4_maglev, &rev_nat);

		if (table) {
			__u32 idx = lb_flow_hash(flow->saddr, flow->daddr, flow->sport, flow->dport, flow->proto) % LB_MAGLEV_SIZE;

			id = bpf_map_lookup_elem(table, &idx);
		}
	}
	if (!id) {
		key->backend_slot = (bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&petrel_lb4_svc, key);
		if (!slot)
			return -1;
		id = &slot->backend_id;
	}
	be = bpf_map_lookup_elem(&petrel_lb4_be, id);
	if (!be || be->state != BACKEND_STATE_ACTIVE)
		return -1;
	*out = *be;
	*out_id = *id;
	return 0;
}

/*
 * Sends the rewritten packet toward daddr as the kernel's FIB says: out of
 * the route's interface with the next hop's MAC, or through the neighbour
 * table when that MAC is not known yet. Negative when the FIB has no way
 * (the packet is then left to the host stack, unchanged).
 */
static __always_inline int fib_out(struct __sk_buff *skb, struct bpf_fib_lookup *fib)
{
	long rc = bpf_fib_lookup(skb, fib, sizeof(*fib), 0);

	if (rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH)
		return 0;
	return -1;
}

static __always_inline int fib_redirect(struct __sk_buff *skb, struct bpf_fib_lookup *fib)
{
	struct bpf_redir_neigh nh = {};

	if (fib->dmac[0] | fib->dmac[1] | fib->dmac[2] | fib->dmac[3] | fib->dmac[4] | fib->dmac[5]) {
		if (bpf_skb_store_bytes(skb, 0, fib->dmac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, fib->smac, 6, 0) < 0)
			return TC_ACT_SHOT;
		return bpf_redirect(fib->ifindex, 0);
	}
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib->ipv4_dst;
	return bpf_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
}

static __always_inline void fib_params(struct bpf_fib_lookup *fib, struct __sk_buff *skb, struct iphdr *ip4, __be32 saddr, __be32 daddr)
{
	fib->family = AF_INET;
	fib->tos = ip4->tos;
	fib->l4_protocol = ip4->protocol;
	fib->tot_len = bpf_ntohs(ip4->tot_len);
	fib->ifindex = skb->ingress_ifindex;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
}

/* A remote backend's reply to a SNATed connection: back to the client. */
static __always_inline int reply_to_client(struct __sk_buff *skb, struct np_ct_key *k, struct np_ct_val *ct, __u8 ttl)
{
	if (np_rewrite(skb, k->proto, IP_SRC_OFF, k->saddr, ct->addr, L4_OFF, k->sport, ct->port) < 0)
		return TC_ACT_SHOT;
	if (np_rewrite(skb, k->proto, IP_DST_OFF, k->daddr, ct->client_addr, L4_OFF + 2, k->dport, ct->client_port) < 0)
		return TC_ACT_SHOT;
	return np_send_back(skb, ct, ttl);
}

/*
 * Records a new connection to a remote backend: a port of the node's
 * toward the backend (the first free one from a random start), its reverse
 * entry, then the forward entry. Negative when no port is free.
 */
static __always_inline int track_snat(struct __sk_buff *skb, struct ethhdr *eth, struct np_ct_key *fwd, struct np_ct_val *val)
{
	struct np_ct_key rev = {.saddr = val->addr, .daddr = val->nat_addr, .sport = val->port, .proto = fwd->proto};
	struct np_ct_val back = {.addr = fwd->daddr, .port = fwd->dport, .ifindex = skb->ingress_ifindex,
				 .client_addr = fwd->saddr, .client_port = fwd->sport, .flags = NP_CT_SNAT,
				 .last_seen = val->last_seen};
	__u32 start = bpf_get_prandom_u32();

	__builtin_memcpy(back.peer_mac, eth->h_source, 6);
	__builtin_memcpy(back.local_mac, eth->h_dest, 6);
	for (__u32 i = 0; i < NP_SNAT_TRIES; i++) {
		rev.dport = bpf_htons(NP_SNAT_PORT_MIN + (start + i) % NP_SNAT_PORT_RANGE);
		if (bpf_map_update_elem(&petrel_np_ct, &rev, &back, BPF_NOEXIST) == 0) {
			val->nat_port = rev.dport;
			if (bpf_map_update_elem(&petrel_np_ct, fwd, val, BPF_ANY) < 0) {
				bpf_map_delete_elem(&petrel_np_ct, &rev);
				return -1;
			}
			return 0;
		}
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
	struct bpf_fib_lookup fib = {};
	struct pol_flow flow;
	__be32 daddr;
	__u8 is_node;
	__u8 tcp_flags;
	__u8 ttl;
	__u64 new_flow = 0;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip4 = (void *)(eth + 1);
	if ((void *)(ip4 + 1) > data_end || ip4->ttl <= 1)
		return TC_ACT_OK;
	daddr = ip4->daddr;
	if (skb->pkt_type == PACKET_HOST) {
		ep = bpf_map_lookup_elem(&petrel_endpoints, &daddr);
		if (ep) {
			if (pol_parse(ip4, data_end, &flow) < 0 || !pol_judge(&flow, 0, 1, POL_POINT_UPLINK))
				return TC_ACT_SHOT;
			if (np_dec_ttl(skb, ip4->ttl) < 0)
				return TC_ACT_OK;
			if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
				return TC_ACT_OK;
			fwd_count(FWD_STAT_UPLINK_POD);
			return bpf_redirect_peer(ep->ifindex, 0);
		}
	}
	if (ip4->ihl != 5)
		return TC_ACT_OK;
	if (ip4->protocol != IPPROTO_TCP && ip4->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	/* Fragments after the first carry no ports. */
	if (ip4->frag_off & bpf_htons(0x1fff))
		return TC_ACT_OK;
	ports = (void *)(ip4 + 1);
	if ((void *)(ports + 2) > data_end)
		return TC_ACT_OK;
	is_node = bpf_map_lookup_elem(&petrel_node_addr4, &daddr) != NULL;
	if (!is_node) {
		/* Only a service address goes on; the rest is not ours. */
		struct lb4_key ek = {.address = daddr, .dport = ports[1], .proto = ip4->protocol};
		struct lb4_service *esvc = bpf_map_lookup_elem(&petrel_lb4_svc, &ek);

		if (!esvc || !(esvc->flags & SVC_FLAG_EXTERNAL))
			return TC_ACT_OK;
	}

	fwd.saddr = ip4->saddr;
	fwd.daddr = daddr;
	fwd.sport = ports[0];
	fwd.dport = ports[1];
	fwd.proto = ip4->protocol;
	ttl = ip4->ttl;

	tcp_flags = np_tcp_flags(ip4, data_end);
	ct = bpf_map_lookup_elem(&petrel_np_ct, &fwd);
	if (ct)
		np_touch(ct, tcp_flags);
	if (ct && (ct->flags & NP_CT_SNAT)) {
		val = *ct;
		return reply_to_client(skb, &fwd, &val, ttl);
	}
	if (ct) {
		val = *ct;
	} else {
		struct lb4_key key = {.address = is_node ? 0 : daddr, .dport = fwd.dport, .proto = fwd.proto};
		struct lb4_service *svc = bpf_map_lookup_elem(&petrel_lb4_svc, &key);
		__u8 want = is_node ? SVC_FLAG_NODEPORT : SVC_FLAG_EXTERNAL;
		struct lb4_backend be = {};

		if (!svc || !(svc->flags & want) || svc->count == 0)
			return TC_ACT_OK;
		if (pick_backend(&key, svc, &fwd, &be, &val.backend_id) < 0)
			return TC_ACT_OK;
		val.rev_nat_index = svc->rev_nat_index;
		new_flow = 1;
		val.addr = be.address;
		val.port = be.port;
		val.last_seen = np_now();
		if (!bpf_map_lookup_elem(&petrel_endpoints, &val.addr)) {
			if (is_node) {
				val.nat_addr = fwd.daddr;
			} else {
				__u32 ifindex = skb->ingress_ifindex;
				__be32 *ifaddr = bpf_map_lookup_elem(&petrel_np_ifaddr, &ifindex);

				if (!ifaddr)
					return TC_ACT_OK;
				val.nat_addr = *ifaddr;
			}
			fib_params(&fib, skb, ip4, val.nat_addr, val.addr);
			if (fib_out(skb, &fib) < 0)
				return TC_ACT_OK;
			if (track_snat(skb, eth, &fwd, &val) < 0)
				return TC_ACT_OK;
		} else {
			if (bpf_map_update_elem(&petrel_np_ct, &fwd, &val, BPF_ANY) < 0)
				return TC_ACT_OK;
			rev.saddr = be.address;
			rev.daddr = fwd.saddr;
			rev.sport = be.port;
			rev.dport = fwd.sport;
			rev.proto = fwd.proto;
			back.addr = fwd.daddr;
			back.port = fwd.dport;
			back.last_seen = val.last_seen;
			back.ifindex = skb->ingress_ifindex;
			__builtin_memcpy(back.peer_mac, eth->h_source, 6);
			__builtin_memcpy(back.local_mac, eth->h_dest, 6);
			if (bpf_map_update_elem(&petrel_np_ct, &rev, &back, BPF_ANY) < 0)
				return TC_ACT_OK;
		}
	}

	if (val.nat_port) {
		/* A backend on another node: as the node, through the FIB. */
		if (!fib.family) {
			fib_params(&fib, skb, ip4, val.nat_addr, val.addr);
			if (fib_out(skb, &fib) < 0)
				return TC_ACT_SHOT;
		}
		if (np_rewrite(skb, fwd.proto, IP_DST_OFF, fwd.daddr, val.addr, L4_OFF + 2, fwd.dport, val.port) < 0)
			return TC_ACT_SHOT;
		if (np_rewrite(skb, fwd.proto, IP_SRC_OFF, fwd.saddr, val.nat_addr, L4_OFF, fwd.sport, val.nat_port) < 0)
			return TC_ACT_SHOT;
		if (np_dec_ttl(skb, ttl) < 0)
			return TC_ACT_SHOT;
		lb_traffic(val.rev_nat_index, val.backend_id, new_flow, 1, skb->len);
		return fib_redirect(skb, &fib);
	}
	ep = bpf_map_lookup_elem(&petrel_endpoints, &val.addr);
	if (!ep)
		return TC_ACT_OK;
	flow.saddr = fwd.saddr;
	flow.daddr = val.addr;
	flow.sport = fwd.sport;
	flow.dport = val.port;
	flow.proto = fwd.proto;
	flow.tcp_flags = tcp_flags;
	if (!pol_judge(&flow, 0, 1, POL_POINT_NODEPORT))
		return TC_ACT_SHOT;
	if (np_rewrite(skb, fwd.proto, IP_DST_OFF, fwd.daddr, val.addr, L4_OFF + 2, fwd.dport, val.port) < 0)
		return TC_ACT_SHOT;
	if (np_dec_ttl(skb, ttl) < 0)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, ep->pod_mac, 6, 0) < 0 || bpf_skb_store_bytes(skb, 6, ep->host_mac, 6, 0) < 0)
		return TC_ACT_SHOT;
	lb_traffic(val.rev_nat_index, val.backend_id, new_flow, 1, skb->len);
	return bpf_redirect_peer(ep->ifindex, 0);
}
