package bpfobj

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// NetworkPolicy maps (bpf/include/policy.h), shared by tc_pod, tc_nodeport
// and tc_tunnel and kept by dataplane/policy.
const (
	// MapIPCache maps every pod address of the cluster and this node's own
	// addresses to a security identity (an LPM trie of /32s).
	MapIPCache = "petrel_ipcache"
	// MapPolicyCIDR maps the prefixes policies name in ipBlocks (and their
	// excepts) to CIDR identities.
	MapPolicyCIDR = "petrel_pol_cidr"
	// MapPolicyEndpoints says which local pods are isolated, by direction.
	MapPolicyEndpoints = "petrel_pol_ep"
	// MapPolicy holds what isolated pods allow.
	MapPolicy = "petrel_policy"
	// MapPolicyCT remembers connections already judged.
	MapPolicyCT = "petrel_pol_ct"
	// MapPolicyEvents is the ring buffer of drop (and trace) events.
	MapPolicyEvents = "petrel_pol_events"
	// MapPolicyStats counts verdicts per direction (PolicyStat*).
	MapPolicyStats = "petrel_pol_stats"
	// MapPolicyConfig holds the policy programs' switches (PolicyConfig*).
	MapPolicyConfig = "petrel_pol_cfg"
)

// PolicyMapNames are the policy maps with keys (the ring buffer has none).
var PolicyMapNames = []string{MapIPCache, MapPolicyCIDR, MapPolicyEndpoints, MapPolicy, MapPolicyCT, MapPolicyStats, MapPolicyConfig}

// PolicyConfigTrace, in petrel_pol_cfg: report allowed new connections on
// the ring buffer too (POL_CFG_TRACE).
const PolicyConfigTrace = 1

type (
	// IPCacheKey is a prefix of petrel_ipcache or petrel_pol_cidr.
	IPCacheKey = tcPodIpcacheKey
	// IPCacheValue is the identity of an address or prefix.
	IPCacheValue = tcPodIpcacheVal
	// PolicyEndpoint is a local pod's isolation and identity.
	PolicyEndpoint = tcPodPolEpVal
	// PolicyKey is an entry of what a pod allows; Prefixlen makes the
	// protocol, the port or a range of ports a wildcard.
	PolicyKey = tcPodPolKey
	// PolicyValue is a policy entry's value (every entry allows).
	PolicyValue = tcPodPolVal
	// PolicyCTKey is the first packet of a connection policy judged.
	PolicyCTKey = tcPodPolCtKey
	// PolicyCTValue is when the connection last had a packet.
	PolicyCTValue = tcPodPolCtVal
	// PolicyEvent is a record of the drop ring buffer.
	PolicyEvent = tcPodPolEvent
)

// Reserved identities, as ID_* in bpf/include/policy.h.
const (
	IdentityAny   = 0
	IdentityHost  = 1
	IdentityWorld = 2
)

// Directions of a policy entry, as POL_INGRESS and POL_EGRESS.
const (
	DirIngress = 1
	DirEgress  = 2
)

// PolicyEndpoint.Flags.
const (
	EndpointIngressIsolated = 1
	EndpointEgressIsolated  = 2
)

// Prefix lengths of a PolicyKey.
const (
	PolicyPrefixFull     = 96
	PolicyPrefixAnyProto = 72
	PolicyPrefixAnyPort  = 80
)

// Drop reasons (PolicyEvent.Reason) and judging points (PolicyEvent.Point).
const (
	DropIngress = 1
	DropEgress  = 2
	// TraceAllowed: a new connection allowed (with tracing on).
	TraceAllowed = 3

	PointPod      = 1
	PointUplink   = 2
	PointTunnel   = 3
	PointNodePort = 4
)

// Slots of petrel_pol_stats: (direction-1)*PolicyStatsPerDir + verdict.
const (
	PolicyVerdictAllowed    = 0
	PolicyVerdictDenied     = 1
	PolicyVerdictUnisolated = 2
	PolicyVerdictHost       = 3
	PolicyStatsPerDir       = 4
	// PolicyVerdictNone, in events only: the direction was not judged at
	// this point (its pod is on another node).
	PolicyVerdictNone = 4
)

// PolicyVerdictNames name the verdict slots for metrics and the CLI.
var PolicyVerdictNames = []string{"allowed", "denied", "unisolated", "host"}

// PrefixKey is an address prefix as petrel_ipcache and petrel_pol_cidr hold it.
func PrefixKey(p netip.Prefix) IPCacheKey {
	return IPCacheKey{Prefixlen: uint32(p.Bits()), Addr: AddrKey(p.Masked().Addr())}
}

// PrefixOf reads a prefix back.
func PrefixOf(k IPCacheKey) netip.Prefix {
	return netip.PrefixFrom(AddrOf(k.Addr), int(k.Prefixlen))
}

// ParsePolicyEvent decodes a ring buffer record.
func ParsePolicyEvent(raw []byte) (PolicyEvent, error) {
	var ev PolicyEvent
	if len(raw) < binary.Size(ev) {
		return ev, fmt.Errorf("policy event of %d bytes, want %d", len(raw), binary.Size(ev))
	}
	_, err := binary.Decode(raw, binary.NativeEndian, &ev)
	return ev, err
}

// PolicyMaps are the pinned policy maps the userspace engine writes.
type PolicyMaps struct {
	IPCache, CIDR, Endpoints, Policy, CT, Stats, Config *ebpf.Map
}

// OpenPolicyMaps opens the policy maps pinned under dir (LoadPodProgram
// made them); readOnly for readers such as petrelctl.
func OpenPolicyMaps(dir string, readOnly bool) (*PolicyMaps, error) {
	m := &PolicyMaps{}
	targets := []struct {
		name string
		to   **ebpf.Map
	}{{MapIPCache, &m.IPCache}, {MapPolicyCIDR, &m.CIDR}, {MapPolicyEndpoints, &m.Endpoints}, {MapPolicy, &m.Policy},
		{MapPolicyCT, &m.CT}, {MapPolicyStats, &m.Stats}, {MapPolicyConfig, &m.Config}}
	for _, t := range targets {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(dir, t.name), &ebpf.LoadPinOptions{ReadOnly: readOnly})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s under %s (is the node running?): %w", t.name, dir, err)
		}
		*t.to = mp
	}
	return m, nil
}

// Close releases the file descriptors; the pins stay.
func (m *PolicyMaps) Close() {
	for _, mp := range []*ebpf.Map{m.IPCache, m.CIDR, m.Endpoints, m.Policy, m.CT, m.Stats, m.Config} {
		if mp != nil {
			mp.Close()
		}
	}
}

// PolicyStats sums petrel_pol_stats over the CPUs: [direction-1][verdict].
func PolicyStats(stats *ebpf.Map) ([2][PolicyStatsPerDir]uint64, error) {
	var out [2][PolicyStatsPerDir]uint64
	for slot := uint32(0); slot < 2*PolicyStatsPerDir; slot++ {
		var per []uint64
		if err := stats.Lookup(slot, &per); err != nil {
			return out, fmt.Errorf("read policy stats slot %d: %w", slot, err)
		}
		for _, n := range per {
			out[slot/PolicyStatsPerDir][slot%PolicyStatsPerDir] += n
		}
	}
	return out, nil
}

// SetPolicyTrace turns the trace events of allowed connections on or off.
func (m *PolicyMaps) SetPolicyTrace(on bool) error {
	var flags uint32
	if on {
		flags = PolicyConfigTrace
	}
	if err := m.Config.Put(uint32(0), flags); err != nil {
		return fmt.Errorf("write %s: %w", MapPolicyConfig, err)
	}
	return nil
}
