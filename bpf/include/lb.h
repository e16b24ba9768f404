/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Map keys, values and constants of Petrel's service load balancer, shared by
 * every BPF program. The Go side (dataplane/bpfobj) mirrors these layouts
 * through bpf2go's generated types; change both together.
 */
#ifndef PETREL_LB_H
#define PETREL_LB_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define LB_SERVICE_MAP_MAX 65536
#define LB_BACKEND_MAP_MAX 65536
#define LB_REVNAT_MAP_MAX 65536
#define LB_AFFINITY_MAP_MAX 65536
#define LB_SOCK_REVNAT_MAP_MAX 131072
#define LB_NODE_ADDR_MAP_MAX 256

/* lb4_service.flags */
#define SVC_FLAG_NODEPORT (1 << 0) /* wildcard frontend: any local node address */
#define SVC_FLAG_AFFINITY (1 << 1) /* sessionAffinity: ClientIP */
#define SVC_FLAG_LOCAL (1 << 2)    /* traffic policy Local selected the backends */
#define SVC_FLAG_EXTERNAL (1 << 3) /* LoadBalancer IP or externalIP frontend */
#define SVC_FLAG_MAGLEV (1 << 4)   /* tc_nodeport picks by the Maglev table */

/*
 * Maglev: a lookup table per service of LB_MAGLEV_SIZE (a prime) backend
 * ids, filled by the proxy; a flow's hash picks the entry, so that every
 * node sends one flow to one backend and a backend change moves few flows.
 */
#define LB_MAGLEV_SIZE 1021
#define LB_MAGLEV_MAP_MAX 8192

/* lb4_backend.state */
#define BACKEND_STATE_ACTIVE 0
#define BACKEND_STATE_TERMINATING 1

/*
 * A frontend and one of its slots. Slot 0 is the service entry (count,
 * rev-NAT id, flags); slots 1..count name the backends.
 */
struct lb4_key {
	__be32 address;
	__be16 dport;
	__u16 backend_slot;
	__u8 proto;
	__u8 scope;
	__u8 pad[2];
};

struct lb4_service {
	__u32 backend_id;       /* slots 1..count */
	__u32 affinity_timeout; /* slot 0: seconds */
	__u16 count;            /* slot 0: backends in slots 1..count */
	__u16 rev_nat_index;    /* slot 0: the service's id */
	__u8 flags;             /* slot 0: SVC_FLAG_* */
	__u8 pad[3];
};

struct lb4_backend {
	__be32 address;
	__be16 port;
	__u8 proto;
	__u8 state;
};

struct lb4_reverse_nat {
	__be32 address;
	__be16 port;
	__u16 pad;
};

/* Session affinity: a client (its network namespace) and a service. */
struct lb_affinity_key {
	__u64 client_cookie;
	__u32 rev_nat_index;
	__u32 pad;
};

struct lb_affinity_val {
	__u64 last_used_ns;
	__u32 backend_id;
	__u32 pad;
};

/*
 * What a socket was really sent to: lets recvmsg and getpeername show the
 * service address instead of the backend.
 */
struct sock_revnat4_key {
	__u64 cookie;
	__be32 address;
	__be16 port;
	__u16 pad;
};

struct sock_revnat4_val {
	__be32 address;
	__be16 port;
	__u16 rev_nat_index;
	__u32 backend_id; /* whose traffic the socket's packets count as */
};

/* A pod on this node, as tc_pod forwards to it (petrel_endpoints). */
struct endpoint_info {
	__u32 ifindex;       /* host side of the pod's veth */
	__u8 pod_mac[6];     /* the pod's eth0 */
	__u8 host_mac[6];    /* the host side, the pod's gateway */
	__u32 pad;
};

#define LB_ENDPOINT_MAP_MAX 4096
#endif
