package proxy

import (
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// FrontendKey is what a socket connects to: an address (zero for NodePort's
// any-node-address), a port and a protocol.
type FrontendKey struct {
	Address netip.Addr
	Port    uint16
	Proto   uint8
}

// Protocol numbers as the BPF maps hold them.
const (
	protoTCP = 6
	protoUDP = 17
)

// BackendAddr is one endpoint's address and port.
type BackendAddr struct {
	Address     netip.Addr
	Port        uint16
	Terminating bool
}

// Frontend is the desired state of one frontend.
type Frontend struct {
	Key             FrontendKey
	Flags           uint8
	AffinityTimeout uint32
	Backends        []BackendAddr
}

// LocalRedirect sends one Service to a fixed address on this node instead of
// its endpoints: the node-local DNS behind kube-dns.
type LocalRedirect struct {
	Namespace, Name string
	Address         netip.Addr
}

const defaultAffinityTimeout = 10800 // seconds, as Kubernetes defaults ClientIP affinity

// desiredFrontends computes the frontends of a Service on node from its
// EndpointSlices.
func desiredFrontends(svc *corev1.Service, slices []*discoveryv1.EndpointSlice, node string, redirect *LocalRedirect) []Frontend {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	var out []Frontend
	clusterIPs := serviceIPs(svc.Spec.ClusterIPs, svc.Spec.ClusterIP)
	external := serviceIPs(svc.Spec.ExternalIPs, "")
	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if a, err := netip.ParseAddr(ing.IP); err == nil && a.Is4() {
			external = append(external, a)
		}
	}
	var baseFlags uint8
	var timeout uint32
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		baseFlags |= bpfobj.FlagAffinity
		timeout = defaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = uint32(*c.ClientIP.TimeoutSeconds)
		}
	}
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	externalLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	redirected := redirect != nil && redirect.Namespace == svc.Namespace && redirect.Name == svc.Name

	for _, sp := range svc.Spec.Ports {
		proto, ok := l4Proto(sp.Protocol)
		if !ok {
			continue
		}
		var all, local []BackendAddr
		if redirected {
			all = []BackendAddr{{Address: redirect.Address, Port: uint16(sp.Port)}}
			local = all
		} else {
			all, local = endpointsFor(sp, slices, node)
		}
		add := func(addr netip.Addr, port uint16, flags uint8, local bool, backends []BackendAddr) {
			if local {
				flags |= bpfobj.FlagLocal
			}
			out = append(out, Frontend{Key: FrontendKey{Address: addr, Port: port, Proto: proto},
				Flags: baseFlags | flags, AffinityTimeout: timeout, Backends: backends})
		}
		pick := func(localPolicy bool) []BackendAddr {
			if localPolicy {
				return local
			}
			return all
		}
		for _, ip := range clusterIPs {
			add(ip, uint16(sp.Port), 0, internalLocal, pick(internalLocal))
		}
		if sp.NodePort != 0 && (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) {
			add(netip.IPv4Unspecified(), uint16(sp.NodePort), bpfobj.FlagNodePort, externalLocal, pick(externalLocal))
		}
		for _, ip := range external {
			add(ip, uint16(sp.Port), bpfobj.FlagExternal, externalLocal, pick(externalLocal))
		}
	}
	return out
}

func serviceIPs(ips []string, single string) []netip.Addr {
	if len(ips) == 0 && single != "" {
		ips = []string{single}
	}
	var out []netip.Addr
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			out = append(out, a)
		}
	}
	return out
}

func l4Proto(p corev1.Protocol) (uint8, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return protoTCP, true
	case corev1.ProtocolUDP:
		return protoUDP, true
	}
	return 0, false
}

// endpointsFor returns the backends of a service port: all of the cluster's
// and this node's. Ready endpoints serve; when none is ready, serving
// endpoints that are terminating do, as Kubernetes' proxies fall back.
func endpointsFor(sp corev1.ServicePort, eps []*discoveryv1.EndpointSlice, node string) (all, local []BackendAddr) {
	var ready, terminating, readyLocal, terminatingLocal []BackendAddr
	seen := map[BackendAddr]bool{}
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		port, ok := slicePort(s, sp)
		if !ok {
			continue
		}
		for _, ep := range s.Endpoints {
			isReady := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			serving := isReady
			if ep.Conditions.Serving != nil {
				serving = *ep.Conditions.Serving
			}
			isTerminating := ep.Conditions.Terminating != nil && *ep.Conditions.Terminating
			onNode := ep.NodeName != nil && *ep.NodeName == node
			for _, a := range ep.Addresses {
				addr, err := netip.ParseAddr(a)
				if err != nil || !addr.Is4() {
					continue
				}
				b := BackendAddr{Address: addr, Port: port}
				switch {
				case isReady && !isTerminating:
				case serving && isTerminating:
					b.Terminating = true
				default:
					continue
				}
				if seen[b] {
					continue
				}
				seen[b] = true
				if b.Terminating {
					terminating = append(terminating, b)
					if onNode {
						terminatingLocal = append(terminatingLocal, b)
					}
				} else {
					ready = append(ready, b)
					if onNode {
						readyLocal = append(readyLocal, b)
					}
				}
			}
		}
	}
	all = ready
	if len(all) == 0 {
		all = terminating
	}
	local = readyLocal
	if len(local) == 0 {
		local = terminatingLocal
	}
	sortBackends(all)
	sortBackends(local)
	return all, local
}

func slicePort(s *discoveryv1.EndpointSlice, sp corev1.ServicePort) (uint16, bool) {
	for _, p := range s.Ports {
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		proto := corev1.ProtocolTCP
		if p.Protocol != nil {
			proto = *p.Protocol
		}
		if name == sp.Name && proto == sp.Protocol && p.Port != nil {
			return uint16(*p.Port), true
		}
	}
	return 0, false
}

// sortBackends gives backends a stable order, so that an unchanged set keeps
// its slots and a change rewrites few of them.
func sortBackends(b []BackendAddr) {
	slices.SortFunc(b, func(x, y BackendAddr) int {
		if c := x.Address.Compare(y.Address); c != 0 {
			return c
		}
		return int(x.Port) - int(y.Port)
	})
}

// String formats a frontend key as operators write it: 10.96.0.10:53/UDP.
func (k FrontendKey) String() string {
	addr := k.Address.String()
	if k.Address == netip.IPv4Unspecified() {
		addr = "*"
	}
	return addr + ":" + strconv.Itoa(int(k.Port)) + "/" + ProtoName(k.Proto)
}

// ProtoName is TCP, UDP or the number.
func ProtoName(p uint8) string {
	switch p {
	case protoTCP:
		return "TCP"
	case protoUDP:
		return "UDP"
	}
	return strconv.Itoa(int(p))
}
