/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The pods of this node (petrel_endpoints), kept by petrel-cni. */
#ifndef PETREL_ENDPOINTS_H
#define PETREL_ENDPOINTS_H

#include "lb.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __be32);
	__type(value, struct endpoint_info);
	__uint(max_entries, LB_ENDPOINT_MAP_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} petrel_endpoints SEC(".maps");
#endif
