/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * NetworkPolicy, kept by dataplane/policy from the Pods, Namespaces and
 * NetworkPolicies of the cluster (docs/design.md, "NetworkPolicy").
 *
 * Cilium's shape: a pod's labels and namespace are a numeric security
 * identity; petrel_ipcache maps each pod address (every node's) and this
 * node's own addresses to an identity; petrel_pol_cidr maps the prefixes
 * that policies name in ipBlocks to identities of their own, so an ipBlock
 * matches pod addresses too; petrel_pol_ep says which local pods are
 * isolated in which direction (a pod no policy selects is not in it:
 * default allow); petrel_policy holds what isolated pods allow, an LPM trie
 * keyed by (pod, peer identity, direction, protocol, port) where a shorter
 * prefix is a wildcard: any port of a protocol, any protocol, or a range of
 * ports (endPort as aligned blocks). Identity 0 in a key is any peer.
 *
 * Connections are judged once, when they start; petrel_pol_ct remembers
 * each one by its first packet's 5-tuple, so later packets and the replies
 * pass without a policy lookup (and go on passing after a policy change,
 * as with conntrack in iptables-based plugins). A TCP SYN is always judged
 * afresh, so a reused 5-tuple does not inherit an old verdict.
 *
 * Drops are counted (petrel_pol_stats) and reported through the
 * petrel_pol_events ring buffer, which `petrelctl monitor` reads; with
 * tracing on (petrel_pol_cfg, `petrel node --trace`) so is every new
 * connection allowed, with the verdict of each direction.
 */
#ifndef PETREL_POLICY_H
#define PETREL_POLICY_H

#include "lb.h"

#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>

#define POL_IPCACHE_MAX 65536
#define POL_CIDR_MAX 16384
#define POL_ENDPOINT_MAX LB_ENDPOINT_MAP_MAX
#define POL_POLICY_MAX 262144
#define POL_CT_MAX 131072
#define POL_EVENTS_BYTES (256 * 1024)

/* Reserved identities (pods get ID_FIRST_POD and up, ipBlock prefixes CIDR_ID_BASE and up). */
#define ID_ANY 0   /* in petrel_policy keys: every peer */
#define ID_HOST 1  /* this node's own addresses: always allowed, both ways */
#define ID_WORLD 2 /* an address the ipcache does not know */

/* Directions, as seen from the local pod the entry belongs to. */
#define POL_INGRESS 1
#define POL_EGRESS 2

/* Full prefix of a petrel_policy key: pod, identity, direction, protocol, port. */
#define POL_PREFIX_FULL 96
#define POL_PREFIX_ANY_PROTO 72 /* pod, identity, direction */
#define POL_PREFIX_ANY_PORT 80  /* ... and protocol */

struct ipcache_key {
	__u32 prefixlen;
	__be32 addr;
};

struct ipcache_val {
	__u32 identity;
};

/* A local pod's isolation (POL_EP_*); absent or 0: allows all. */
#define POL_EP_INGRESS 1
#define POL_EP_EGRESS 2

struct pol_ep_val {
	__u32 identity;
	__u8 flags;
	__u8 pad[3];
};

struct pol_key {
	__u32 prefixlen;
	__be32 ep_addr;  /* the local pod */
	__u32 identity;  /* the peer (ID_ANY: every peer) */
	__u8 dir;        /* POL_INGRESS, POL_EGRESS */
	__u8 proto;      /* IPPROTO_* */
	__be16 dport;    /* the port connected to (the local pod's for ingress) */
};

struct pol_val {
	__u32 flags; /* reserved: every entry allows */
};

struct pol_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

struct pol_ct_val {
	__u32 last_seen; /* seconds of CLOCK_MONOTONIC (coarse) */
	__u32 pad;
};

/* pol_event.reason */
#define POL_DROP_INGRESS 1   /* the destination pod's ingress policy */
#define POL_DROP_EGRESS 2    /* the source pod's egress policy */
#define POL_TRACE_ALLOWED 3  /* a new connection allowed (tracing on) */

/* petrel_pol_cfg[0] flags */
#define POL_CFG_TRACE 1 /* report allowed new connections too */

/* pol_event.point: where the packet was judged. */
#define POL_POINT_POD 1      /* tc_pod: sent by a local pod */
#define POL_POINT_UPLINK 2   /* tc_nodeport: from another host, natively */
#define POL_POINT_TUNNEL 3   /* tc_tunnel: from another node, decapsulated */
#define POL_POINT_NODEPORT 4 /* tc_nodeport: a NodePort client to a local backend */

struct pol_event {
	__u64 time_ns; /* CLOCK_MONOTONIC */
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 reason;
	__u8 point;
	__u8 verdict_egress; /* POL_VERDICT_* of the source's egress policy */
	__u32 src_identity;
	__u32 dst_identity;
	__u8 verdict_ingress; /* POL_VERDICT_* of the destination's ingress policy */
	__u8 pad[3];
};

/* petrel_pol_stats slots: (direction - 1) * POL_STAT_PER_DIR + verdict. */
#define POL_VERDICT_ALLOWED 0     /* a new connection, allowed by a policy entry */
#define POL_VERDICT_DENIED 1      /* dropped */
#define POL_VERDICT_UNISOLATED 2  /* a new connection of a pod no policy isolates */
#define POL_VERDICT_HOST 3        /* a new connection to or from this node */
#define POL_VERDICT_NONE 4        /* in events: not judged here (the pod is on another node) */
#define POL_STAT_PER_DIR 4
#define POL_STAT_MAX 8

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_val);
	__uint(max_entries, POL_IPCACHE_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_val);
	__uint(max_entries, POL_CIDR_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_cidr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct pol_ep_val);
	__uint(max_entries, POL_ENDPOINT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_ep SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct pol_key);
	__type(value, struct pol_val);
	__uint(max_entries, POL_POLICY_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct pol_ct_key);
	__type(value, struct pol_ct_val);
	__uint(max_entries, POL_CT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_ct SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, POL_EVENTS_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, POL_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_stats SEC(".maps");

/* One slot: POL_CFG_* flags, written by the node at start. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_pol_cfg SEC(".maps");

/*
 * An idle connection is forgotten after this long (seconds): long enough for
 * a quiet TCP connection's keepalives, short enough that a UDP 5-tuple is
 * judged again soon after its flow stops.
 */
#define POL_CT_TCP_IDLE 21600
#define POL_CT_OTHER_IDLE 120

/* The packet's flow as policy sees it; ports are 0 for protocols without. */
struct pol_flow {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 tcp_flags;
};

/* Reads the flow of an IPv4 packet at ip4; negative when it is cut short. */
static __always_inline int pol_parse(struct iphdr *ip4, void *data_end, struct pol_flow *f)
{
	__be16 *ports;

	f->saddr = ip4->saddr;
	f->daddr = ip4->daddr;
	f->proto = ip4->protocol;
	f->sport = 0;
	f->dport = 0;
	f->tcp_flags = 0;
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP && f->proto != IPPROTO_SCTP)
		return 0;
	/*
	 * Later fragments carry no ports: they are judged as port 0, which only
	 * an any-port rule allows (docs/design.md says so).
	 */
	if (ip4->frag_off & bpf_htons(0x1fff))
		return 0;
	/* TCP, UDP and SCTP all start with the two ports. */
	ports = (void *)ip4 + ip4->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return -1;
	f->sport = ports[0];
	f->dport = ports[1];
	if (f->proto == IPPROTO_TCP) {
		__u8 *flags = (__u8 *)ports + 13;

		if ((void *)(flags + 1) > data_end)
			return -1;
		f->tcp_flags = *flags;
	}
	return 0;
}

static __always_inline __u32 pol_now(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

static __always_inline void pol_count(__u8 dir, __u32 verdict)
{
	__u32 slot = (dir - 1) * POL_STAT_PER_DIR + verdict;
	__u64 *n = bpf_map_lookup_elem(&petrel_pol_stats, &slot);

	if (n)
		*n += 1;
}

static __always_inline __u32 pol_identity(__be32 addr)
{
	struct ipcache_key k = {.prefixlen = 32, .addr = addr};
	struct ipcache_val *v = bpf_map_lookup_elem(&petrel_ipcache, &k);

	return v ? v->identity : ID_WORLD;
}

/* Whether an entry for (ep, identity) allows proto/dport in dir. */
static __always_inline int pol_lookup(__be32 ep, __u32 identity, __u8 dir, __u8 proto, __be16 dport)
{
	struct pol_key k = {.prefixlen = POL_PREFIX_FULL, .ep_addr = ep, .identity = identity, .dir = dir,
			    .proto = proto, .dport = dport};

	return bpf_map_lookup_elem(&petrel_policy, &k) != NULL;
}

/*
 * The verdict of a local pod's policy on a new connection with peer
 * (POL_VERDICT_*). A pod not isolated in dir allows everything; this
 * node's own addresses are always allowed (Kubernetes requires it, so that
 * probes work).
 */
static __always_inline __u8 pol_verdict(__be32 ep, __be32 peer, __u8 dir, __u8 proto, __be16 dport, __u32 *peer_id)
{
	struct pol_ep_val *e = bpf_map_lookup_elem(&petrel_pol_ep, &ep);
	__u8 want = dir == POL_INGRESS ? POL_EP_INGRESS : POL_EP_EGRESS;
	struct ipcache_key ck = {.prefixlen = 32, .addr = peer};
	struct ipcache_val *cidr;
	__u32 id;

	/* Most pods are isolated by no policy: no identity lookup for them. */
	if (!e || !(e->flags & want)) {
		pol_count(dir, POL_VERDICT_UNISOLATED);
		return POL_VERDICT_UNISOLATED;
	}
	id = pol_identity(peer);
	*peer_id = id;
	if (id == ID_HOST) {
		pol_count(dir, POL_VERDICT_HOST);
		return POL_VERDICT_HOST;
	}
	if (pol_lookup(ep, id, dir, proto, dport))
		goto allowed;
	cidr = bpf_map_lookup_elem(&petrel_pol_cidr, &ck);
	if (cidr && pol_lookup(ep, cidr->identity, dir, proto, dport))
		goto allowed;
	if (pol_lookup(ep, ID_ANY, dir, proto, dport))
		goto allowed;
	pol_count(dir, POL_VERDICT_DENIED);
	return POL_VERDICT_DENIED;
allowed:
	pol_count(dir, POL_VERDICT_ALLOWED);
	return POL_VERDICT_ALLOWED;
}

static __always_inline void pol_report(struct pol_flow *f, __u8 reason, __u8 point, __u32 src_id, __u32 dst_id,
				       __u8 v_egress, __u8 v_ingress)
{
	struct pol_event ev = {.time_ns = bpf_ktime_get_ns(), .saddr = f->saddr, .daddr = f->daddr, .sport = f->sport,
			       .dport = f->dport, .proto = f->proto, .reason = reason, .point = point,
			       .verdict_egress = v_egress, .src_identity = src_id, .dst_identity = dst_id,
			       .verdict_ingress = v_ingress};

	/* A full ring loses the event, never the verdict. */
	bpf_ringbuf_output(&petrel_pol_events, &ev, sizeof(ev), 0);
}

/*
 * Whether the flow belongs to a connection already judged: its own
 * direction (not for a TCP SYN, which starts a new connection) or the
 * reply direction.
 */
static __always_inline int pol_ct_known(struct pol_flow *f)
{
	struct pol_ct_key k = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto};
	struct pol_ct_val *v;
	__u32 now = pol_now();
	__u32 idle = f->proto == IPPROTO_TCP ? POL_CT_TCP_IDLE : POL_CT_OTHER_IDLE;

	/* SYN without ACK: a new connection. */
	if ((f->tcp_flags & 0x12) != 0x02) {
		v = bpf_map_lookup_elem(&petrel_pol_ct, &k);
		if (v && now - v->last_seen < idle) {
			if (v->last_seen != now)
				v->last_seen = now;
			return 1;
		}
	}
	k.saddr = f->daddr;
	k.daddr = f->saddr;
	k.sport = f->dport;
	k.dport = f->sport;
	v = bpf_map_lookup_elem(&petrel_pol_ct, &k);
	if (v && now - v->last_seen < idle) {
		if (v->last_seen != now)
			v->last_seen = now;
		return 1;
	}
	return 0;
}

static __always_inline void pol_ct_create(struct pol_flow *f)
{
	struct pol_ct_key k = {.saddr = f->saddr, .daddr = f->daddr, .sport = f->sport, .dport = f->dport, .proto = f->proto};
	struct pol_ct_val v = {.last_seen = pol_now()};

	bpf_map_update_elem(&petrel_pol_ct, &k, &v, BPF_ANY);
}

/*
 * Judges a packet: the egress policy of its source when src_local, the
 * ingress policy of its destination when dst_local. 1: let it go; 0: drop
 * it (counted and reported).
 */
static __always_inline int pol_judge(struct pol_flow *f, int src_local, int dst_local, __u8 point)
{
	__u32 src_id = 0, dst_id = 0, zero = 0, *cfg;
	__u8 v_eg = POL_VERDICT_NONE, v_in = POL_VERDICT_NONE;

	if (pol_ct_known(f))
		return 1;
	if (src_local) {
		v_eg = pol_verdict(f->saddr, f->daddr, POL_EGRESS, f->proto, f->dport, &dst_id);
		if (v_eg == POL_VERDICT_DENIED) {
			pol_report(f, POL_DROP_EGRESS, point, pol_identity(f->saddr), dst_id, v_eg, v_in);
			return 0;
		}
	}
	if (dst_local) {
		v_in = pol_verdict(f->daddr, f->saddr, POL_INGRESS, f->proto, f->dport, &src_id);
		if (v_in == POL_VERDICT_DENIED) {
			pol_report(f, POL_DROP_INGRESS, point, src_id, pol_identity(f->daddr), v_eg, v_in);
			return 0;
		}
	}
	pol_ct_create(f);
	/* Tracing: one event per new connection allowed (never per packet). */
	cfg = bpf_map_lookup_elem(&petrel_pol_cfg, &zero);
	if (cfg && (*cfg & POL_CFG_TRACE))
		pol_report(f, POL_TRACE_ALLOWED, point, src_id ? src_id : pol_identity(f->saddr),
			   dst_id ? dst_id : pol_identity(f->daddr), v_eg, v_in);
	return 1;
}
#endif
