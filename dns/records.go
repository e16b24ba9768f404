// Package dns is Petrel's cluster DNS: Kubernetes DNS-based service discovery
// (specification 1.1.0) answered from an immutable in-memory snapshot of
// Services and EndpointSlices, other names forwarded to upstream resolvers
// with a cache. The snapshot is rebuilt from informer events and swapped
// atomically, so the answer path takes no lock.
package dns

import (
	"net"
	"sort"
	"strings"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// SpecVersion is the DNS schema version served in the dns-version TXT record.
const SpecVersion = "1.1.0"

// srvTarget is one SRV answer.
type srvTarget struct {
	port   uint16
	target string
}

// node is everything held for one owner name.
type node struct {
	a     []net.IP
	aaaa  []net.IP
	cname string
	srv   []srvTarget
	txt   []string
}

// Snapshot is an immutable view of the cluster's names.
type Snapshot struct {
	zone  string // "cluster.local." with trailing dot, lower case
	names map[string]*node
	// exists holds every name under the zone that has records or children, for
	// NXDOMAIN versus NODATA.
	exists map[string]bool
	ptr    map[string]string // reverse name → target
	// wire caches packed answers for the fast path; soaWire is the packed SOA
	// for negative answers.
	wire    wireCache
	soaWire []byte
}

// ServiceInfo is what the DNS keeps of a Service (the informer's transform
// reduces Services to this).
type ServiceInfo struct {
	Name, Namespace string
	Type            corev1.ServiceType
	ClusterIPs      []string
	ExternalName    string
	Ports           []corev1.ServicePort
}

// EndpointInfo is what the DNS keeps of an EndpointSlice.
type EndpointInfo struct {
	Service, Namespace string
	AddressType        discoveryv1.AddressType
	Endpoints          []discoveryv1.Endpoint
	Ports              []discoveryv1.EndpointPort
}

func lower(s string) string { return strings.ToLower(s) }

func (s *Snapshot) add(name string) *node {
	n := s.names[name]
	if n == nil {
		n = &node{}
		s.names[name] = n
	}
	s.markExists(name)
	return n
}

// markExists records name and every parent up to the zone.
func (s *Snapshot) markExists(name string) {
	for name != "" && name != "." {
		if s.exists[name] {
			return
		}
		s.exists[name] = true
		if name == s.zone {
			return
		}
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return
		}
		name = name[i+1:]
	}
}

func appendIP(n *node, ip net.IP) {
	if v4 := ip.To4(); v4 != nil {
		n.a = append(n.a, v4)
	} else if ip != nil {
		n.aaaa = append(n.aaaa, ip)
	}
}

func ready(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// dashed turns 10.1.2.3 into 10-1-2-3 and IPv6 colons into dashes.
func dashed(ip string) string { return strings.NewReplacer(".", "-", ":", "-").Replace(ip) }

// BuildSnapshot makes the snapshot for zone (e.g. "cluster.local").
func BuildSnapshot(zone string, services []*ServiceInfo, slices []*EndpointInfo) *Snapshot {
	s := &Snapshot{zone: mdns.Fqdn(lower(zone)), names: map[string]*node{}, exists: map[string]bool{}, ptr: map[string]string{}}
	s.markExists("svc." + s.zone)
	s.markExists("pod." + s.zone)
	s.add("dns-version." + s.zone).txt = []string{SpecVersion}
	bySvc := map[string][]*EndpointInfo{}
	for _, es := range slices {
		k := es.Namespace + "/" + es.Service
		bySvc[k] = append(bySvc[k], es)
	}
	for _, svc := range services {
		fqdn := lower(svc.Name + "." + svc.Namespace + ".svc." + s.zone)
		s.markExists(lower(svc.Namespace + ".svc." + s.zone))
		if svc.Type == corev1.ServiceTypeExternalName {
			s.add(fqdn).cname = mdns.Fqdn(lower(svc.ExternalName))
			continue
		}
		headless := len(svc.ClusterIPs) == 0 || svc.ClusterIPs[0] == corev1.ClusterIPNone
		if !headless {
			n := s.add(fqdn)
			for _, ip := range svc.ClusterIPs {
				parsed := net.ParseIP(ip)
				appendIP(n, parsed)
				if rev, err := mdns.ReverseAddr(ip); err == nil {
					s.ptr[rev] = fqdn
				}
			}
			for _, p := range svc.Ports {
				if p.Name == "" {
					continue
				}
				srvName := lower("_" + p.Name + "._" + string(p.Protocol) + "." + fqdn)
				s.add(srvName).srv = append(s.add(srvName).srv, srvTarget{port: uint16(p.Port), target: fqdn})
			}
			continue
		}
		// Headless: the ready endpoints themselves.
		n := s.add(fqdn)
		seen := map[string]bool{}
		for _, es := range bySvc[svc.Namespace+"/"+svc.Name] {
			for _, ep := range es.Endpoints {
				if !ready(ep) || len(ep.Addresses) == 0 {
					continue
				}
				for _, addr := range ep.Addresses {
					ip := net.ParseIP(addr)
					if ip == nil || seen[addr] {
						continue
					}
					seen[addr] = true
					appendIP(n, ip)
					host := dashed(addr)
					if ep.Hostname != nil && *ep.Hostname != "" {
						host = lower(*ep.Hostname)
					}
					hostName := host + "." + fqdn
					appendIP(s.add(hostName), ip)
					if ep.Hostname != nil && *ep.Hostname != "" {
						if rev, err := mdns.ReverseAddr(addr); err == nil {
							s.ptr[rev] = hostName
						}
					}
					for _, p := range es.Ports {
						if p.Name == nil || *p.Name == "" || p.Port == nil {
							continue
						}
						proto := corev1.ProtocolTCP
						if p.Protocol != nil {
							proto = *p.Protocol
						}
						srvName := lower("_" + *p.Name + "._" + string(proto) + "." + fqdn)
						sn := s.add(srvName)
						sn.srv = append(sn.srv, srvTarget{port: uint16(*p.Port), target: hostName})
					}
				}
			}
		}
	}
	s.soaWire = packSOA(s)
	for _, n := range s.names {
		sortIPs(n.a)
		sortIPs(n.aaaa)
		sort.Slice(n.srv, func(i, j int) bool {
			if n.srv[i].target != n.srv[j].target {
				return n.srv[i].target < n.srv[j].target
			}
			return n.srv[i].port < n.srv[j].port
		})
	}
	return s
}

func sortIPs(ips []net.IP) {
	sort.Slice(ips, func(i, j int) bool { return string(ips[i]) < string(ips[j]) })
}

// podIP parses "<a-b-c-d>.<ns>.pod.<zone>" into an address.
func (s *Snapshot) podIP(name string) net.IP {
	suffix := ".pod." + s.zone
	if !strings.HasSuffix(name, suffix) {
		return nil
	}
	rest := strings.TrimSuffix(name, suffix)
	parts := strings.SplitN(rest, ".", 2)
	if len(parts) != 2 || parts[1] == "" || strings.Contains(parts[1], ".") {
		return nil
	}
	label := parts[0]
	if ip := net.ParseIP(strings.ReplaceAll(label, "-", ".")); ip != nil && ip.To4() != nil && strings.Count(label, "-") == 3 {
		return ip
	}
	if strings.Count(label, "-") >= 2 {
		if ip := net.ParseIP(strings.ReplaceAll(label, "-", ":")); ip != nil {
			return ip
		}
	}
	return nil
}

// soa is the zone's SOA record for negative answers.
func (s *Snapshot) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: 5},
		Ns:      "ns.dns." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  1,
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: 5,
	}
}
