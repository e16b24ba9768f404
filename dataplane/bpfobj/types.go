package bpfobj

// Map layouts, mirrored from bpf/include/lb.h by bpf2go.
type (
	// ServiceKey is a frontend (address, port, protocol) and one of its slots:
	// slot 0 holds the ServiceValue with the count, slots 1..count the backends.
	ServiceKey = sockLBLb4Key
	// ServiceValue is slot 0's service entry or a later slot's backend id.
	ServiceValue = sockLBLb4Service
	// Backend is one endpoint address, port and protocol.
	Backend = sockLBLb4Backend
	// RevNat is the service address a backend's replies must appear to come from.
	RevNat = sockLBLb4ReverseNat
	// AffinityKey is a client (its network namespace cookie) and a service id.
	AffinityKey = sockLBLbAffinityKey
	// AffinityValue is the backend a client is bound to and when it last used it.
	AffinityValue = sockLBLbAffinityVal
	// SockRevNatKey is a socket and the backend it was sent to.
	SockRevNatKey = sockLBSockRevnat4Key
	// SockRevNatValue is the service frontend that socket asked for.
	SockRevNatValue = sockLBSockRevnat4Val
	// NodePortCTKey is one direction of a NodePort connection: forward
	// (client → node address and NodePort) or reverse (backend → client).
	NodePortCTKey = tcPodNpCtKey
	// NodePortCTValue is the backend (forward), or the node address and
	// port, ingress interface and MACs the reply goes back with (reverse).
	NodePortCTValue = tcPodNpCtVal
)

// Service flags, as SVC_FLAG_* in bpf/include/lb.h.
const (
	FlagNodePort = 1 << 0
	FlagAffinity = 1 << 1
	FlagLocal    = 1 << 2
	FlagExternal = 1 << 3
	// FlagMaglev: tc_nodeport picks backends by the service's Maglev
	// table in the Maglev map.
	FlagMaglev = 1 << 4
)

// Backend states, as BACKEND_STATE_* in bpf/include/lb.h.
const (
	BackendActive      = 0
	BackendTerminating = 1
)

// Slots of the per-CPU statistics map, as LB_STAT_* in bpf/include/lb_maps.h.
const (
	StatTranslated = 0
	StatRefused    = 1
	StatReversed   = 2
)
