// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level service load balancing. Attached to the node's cgroup v2
 * subtree, these programs rewrite a socket's destination from a service
 * frontend (ClusterIP, NodePort on a node address, LoadBalancer IP, external
 * IP) to one backend when the socket connects or sends, once, so that no
 * packet of the flow needs NAT. recvmsg and getpeername undo the rewrite, so
 * applications only ever see the service address.
 */
#include "include/lb_maps.h"
#include "include/traffic.h"

#include <linux/in.h>
#include <linux/ip.h>
#include <linux/if_ether.h>
#include <linux/errno.h>
#include <bpf/bpf_endian.h>

#define SYS_REJECT 0
#define SYS_PROCEED 1

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline __be16 ctx_dport(const struct bpf_sock_addr *ctx)
{
	return (__be16)ctx->user_port;
}

/* Finds the service entry for a destination, NodePort wildcards included. */
static __always_inline struct lb4_service *lb4_lookup_service(struct lb4_key *key)
{
	struct lb4_service *svc;
	__be32 address = key->address;

	key->backend_slot = 0;
	svc = bpf_map_lookup_elem(&petrel_lb4_svc, key);
	if (svc)
		return svc;
	if (!bpf_map_lookup_elem(&petrel_node_addr4, &address))
		return 0;
	key->address = 0;
	svc = bpf_map_lookup_elem(&petrel_lb4_svc, key);
	if (svc && (svc->flags & SVC_FLAG_NODEPORT))
		return svc;
	key->address = address;
	return 0;
}

static __always_inline __u32 lb4_affinity_backend(const struct lb4_service *svc, __u64 client)
{
	struct lb_affinity_key key = {
		.client_cookie = client,
		.rev_nat_index = svc->rev_nat_index,
	};
	struct lb_affinity_val *val;

	val = bpf_map_lookup_elem(&petrel_lb_aff, &key);
	if (!val)
		return 0;
	if (bpf_ktime_get_ns() - val->last_used_ns > (__u64)svc->affinity_timeout * 1000000000ULL) {
		bpf_map_delete_elem(&petrel_lb_aff, &key);
		return 0;
	}
	return val->backend_id;
}

static __always_inline void lb4_affinity_update(const struct lb4_service *svc, __u64 client,
						__u32 backend_id)
{
	struct lb_affinity_key key = {
		.client_cookie = client,
		.rev_nat_index = svc->rev_nat_index,
	};
	struct lb_affinity_val val = {
		.last_used_ns = bpf_ktime_get_ns(),
		.backend_id = backend_id,
	};

	bpf_map_update_elem(&petrel_lb_aff, &key, &val, BPF_ANY);
}

/*
 * Picks a backend for the socket and rewrites *address and *port to it.
 * Returns 1 when the destination is a service frontend and was rewritten,
 * 0 when it is not a service, and -1 when the service has no backend.
 * connect is 1 for connect() and 0 for a datagram sent with an address.
 */
static __always_inline int lb4_xlate(void *ctx, __be32 *address, __be16 *port, __u8 proto, int connect)
{
	struct lb4_key key = {
		.address = *address,
		.dport = *port,
		.proto = proto,
	};
	struct lb4_service *svc, *slot;
	struct lb4_backend *backend = 0;
	__u32 backend_id = 0;
	__u64 client = 0;

	svc = lb4_lookup_service(&key);
	if (!svc)
		return 0;
	if (svc->count == 0)
		return -1;

	if (svc->flags & SVC_FLAG_AFFINITY) {
		client = bpf_get_netns_cookie(ctx);
		backend_id = lb4_affinity_backend(svc, client);
		if (backend_id) {
			backend = bpf_map_lookup_elem(&petrel_lb4_be, &backend_id);
			if (!backend)
				backend_id = 0;
		}
	}
	if (!backend_id) {
		key.backend_slot = (bpf_get_prandom_u32() % svc->count) + 1;
		slot = bpf_map_lookup_elem(&petrel_lb4_svc, &key);
		if (!slot)
			return -1;
		backend_id = slot->backend_id;
		backend = bpf_map_lookup_elem(&petrel_lb4_be, &backend_id);
	}
	if (!backend)
		return -1;
	if (svc->flags & SVC_FLAG_AFFINITY)
		lb4_affinity_update(svc, client, backend_id);

	struct sock_revnat4_key rkey = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = backend->address,
		.port = backend->port,
	};
	struct sock_revnat4_val rval = {
		.address = *address,
		.port = *port,
		.rev_nat_index = svc->rev_nat_index,
		.backend_id = backend_id,
	};
	struct sock_revnat4_val *old = bpf_map_lookup_elem(&petrel_sk_rnat4, &rkey);

	/*
	 * An unconnected UDP socket sends to the same backend again and again:
	 * an LRU update per datagram costs more than this lookup.
	 */
	int fresh = !old || old->address != rval.address || old->port != rval.port ||
		    old->rev_nat_index != rval.rev_nat_index || old->backend_id != rval.backend_id;

	if (fresh)
		bpf_map_update_elem(&petrel_sk_rnat4, &rkey, &rval, BPF_ANY);
	/*
	 * A connect is a new connection; so is an unconnected UDP socket's
	 * first datagram to this backend. Packets and bytes are counted by
	 * petrel_sock_skb_* below, which see them.
	 */
	lb_traffic(svc->rev_nat_index, backend_id, connect || fresh, 0, 0);

	*address = backend->address;
	*port = backend->port;
	lb_count(LB_STAT_TRANSLATED);
	return 1;
}

/*
 * Undoes lb4_xlate for what the socket reads back: the peer is the service.
 * Returns 1 when the address was a backend the socket was sent to.
 */
static __always_inline int lb4_reverse(void *ctx, __be32 *address, __be16 *port)
{
	struct sock_revnat4_key key = {
		.cookie = bpf_get_socket_cookie(ctx),
		.address = *address,
		.port = *port,
	};
	struct sock_revnat4_val *val;

	val = bpf_map_lookup_elem(&petrel_sk_rnat4, &key);
	if (!val)
		return 0;
	*address = val->address;
	*port = val->port;
	lb_count(LB_STAT_REVERSED);
	return 1;
}

static __always_inline int refuse(void)
{
	lb_count(LB_STAT_REFUSED);
	bpf_set_retval(-ECONNREFUSED);
	return SYS_REJECT;
}

static __always_inline int l4_proto_supported(__u32 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

static __always_inline int sock4_forward(struct bpf_sock_addr *ctx, int connect)
{
	__be32 address = ctx->user_ip4;
	__be16 port = ctx_dport(ctx);
	int ret;

	if (!l4_proto_supported(ctx->protocol))
		return SYS_PROCEED;
	ret = lb4_xlate(ctx, &address, &port, ctx->protocol, connect);
	if (ret < 0)
		return refuse();
	if (ret > 0) {
		ctx->user_ip4 = address;
		ctx->user_port = (__u32)port;
	}
	return SYS_PROCEED;
}

static __always_inline int sock4_reverse(struct bpf_sock_addr *ctx)
{
	__be32 address = ctx->user_ip4;
	__be16 port = ctx_dport(ctx);

	/* Every datagram any UDP socket receives passes here: write only when
	 * there is something to undo. */
	if (lb4_reverse(ctx, &address, &port)) {
		ctx->user_ip4 = address;
		ctx->user_port = (__u32)port;
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect4")
int petrel_connect4(struct bpf_sock_addr *ctx)
{
	return sock4_forward(ctx, 1);
}

SEC("cgroup/sendmsg4")
int petrel_sendmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_forward(ctx, 0);
}

SEC("cgroup/recvmsg4")
int petrel_recvmsg4(struct bpf_sock_addr *ctx)
{
	return sock4_reverse(ctx);
}

SEC("cgroup/getpeername4")
int petrel_getpeername4(struct bpf_sock_addr *ctx)
{
	return sock4_reverse(ctx);
}

/*
 * IPv6 sockets reach IPv4 services through v4-mapped addresses
 * (::ffff:a.b.c.d), as dual-stack applications do; the v4 maps serve them.
 */
static __always_inline int v4_mapped(const struct bpf_sock_addr *ctx)
{
	return ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
	       ctx->user_ip6[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int sock6_forward(struct bpf_sock_addr *ctx, int connect)
{
	__be32 address;
	__be16 port = ctx_dport(ctx);
	int ret;

	if (!l4_proto_supported(ctx->protocol) || !v4_mapped(ctx))
		return SYS_PROCEED;
	address = ctx->user_ip6[3];
	ret = lb4_xlate(ctx, &address, &port, ctx->protocol, connect);
	if (ret < 0)
		return refuse();
	if (ret > 0) {
		ctx->user_ip6[3] = address;
		ctx->user_port = (__u32)port;
	}
	return SYS_PROCEED;
}

static __always_inline int sock6_reverse(struct bpf_sock_addr *ctx)
{
	__be32 address;
	__be16 port = ctx_dport(ctx);

	if (!v4_mapped(ctx))
		return SYS_PROCEED;
	address = ctx->user_ip6[3];
	if (lb4_reverse(ctx, &address, &port)) {
		ctx->user_ip6[3] = address;
		ctx->user_port = (__u32)port;
	}
	return SYS_PROCEED;
}

SEC("cgroup/connect6")
int petrel_connect6(struct bpf_sock_addr *ctx)
{
	return sock6_forward(ctx, 1);
}

SEC("cgroup/sendmsg6")
int petrel_sendmsg6(struct bpf_sock_addr *ctx)
{
	return sock6_forward(ctx, 0);
}

SEC("cgroup/recvmsg6")
int petrel_recvmsg6(struct bpf_sock_addr *ctx)
{
	return sock6_reverse(ctx);
}

SEC("cgroup/getpeername6")
int petrel_getpeername6(struct bpf_sock_addr *ctx)
{
	return sock6_reverse(ctx);
}

/*
 * Packets and bytes of load-balanced sockets, both ways: a packet of a
 * socket the load balancer sent to a backend (found by the socket's cookie
 * and the backend's address and port, as recvmsg finds it) counts for that
 * frontend and backend. cgroup_skb programs see the IP header first.
 */
static __always_inline void sock4_skb_count(struct __sk_buff *skb, int egress)
{
	__u32 zero = 0;
	__u32 *cfg = bpf_map_lookup_elem(&petrel_lb_config, &zero);
	struct sock_revnat4_val *val;
	struct iphdr ip4;
	__be16 ports[2];

	if (!cfg || !(*cfg & LB_CFG_TRAFFIC) || skb->protocol != bpf_htons(ETH_P_IP))
		return;
	if (bpf_skb_load_bytes(skb, 0, &ip4, sizeof(ip4)) < 0)
		return;
	if ((ip4.protocol != IPPROTO_TCP && ip4.protocol != IPPROTO_UDP) || (ip4.frag_off & bpf_htons(0x1fff)))
		return;
	if (bpf_skb_load_bytes(skb, ip4.ihl * 4, ports, sizeof(ports)) < 0)
		return;

	struct sock_revnat4_key key = {
		.cookie = bpf_get_socket_cookie(skb),
		.address = egress ? ip4.daddr : ip4.saddr,
		.port = egress ? ports[1] : ports[0],
	};

	val = bpf_map_lookup_elem(&petrel_sk_rnat4, &key);
	if (val && val->backend_id)
		lb_traffic(val->rev_nat_index, val->backend_id, 0, 1, skb->len);
}

SEC("cgroup_skb/egress")
int petrel_sock_skb_egress(struct __sk_buff *skb)
{
	sock4_skb_count(skb, 1);
	return 1;
}

SEC("cgroup_skb/ingress")
int petrel_sock_skb_ingress(struct __sk_buff *skb)
{
	sock4_skb_count(skb, 0);
	return 1;
}
