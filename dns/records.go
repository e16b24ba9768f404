// Package dns is Petrel's cluster DNS: Kubernetes DNS-based service discovery
// (specification 1.1.0) answered from an in-memory snapshot of Services and
// EndpointSlices, other names forwarded to upstream resolvers with a cache.
// Each Service's records are rebuilt from informer events on their own and
// swapped atomically, so the answer path takes no lock and a change costs
// what the changed Service holds.
package dns

import (
	"net"
	"sort"
	"strings"
	"sync"

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

// Snapshot is the cluster's names as the DNS answers them. Each Service's
// records (its name, its SRV names, its headless endpoints' names) are
// built on their own and published with one atomic store, so that a change
// to one Service costs what that Service holds, however many others the
// cluster has: rebuilding every name after each burst of changes kept a core
// busy under a bulk load of Services. The answer path reads without a lock
// and sees each Service whole, as it was before or after a change.
type Snapshot struct {
	zone    string // "cluster.local." with trailing dot, lower case
	svcZone string // "svc." + zone
	// static holds the names outside Services (dns-version), staticExists
	// the zone's own names (the zone, svc., pod., dns-version.), for
	// NXDOMAIN versus NODATA; both are fixed at creation.
	static       map[string]*node
	staticExists map[string]bool
	staticWire   wireCache
	// services maps a Service's name (lower case, fully qualified) to its
	// *serviceRecords.
	services sync.Map
	// namespaces holds "<ns>.svc.<zone>" while a Service is in it.
	namespaces sync.Map
	// ptr maps a reverse name to its *ptrRecord.
	ptr sync.Map
	// soaWire is the packed SOA for negative answers of the fast path.
	soaWire []byte

	mu sync.Mutex // serialises writers; guards what follows
	// current is what services holds, for writers.
	current map[string]*serviceRecords
	// nsServices counts the Services of each namespace name.
	nsServices map[string]int
	// ptrOwners is, for each reverse name, the target that each Service
	// claiming it gives it.
	ptrOwners map[string]map[string]string
}

// serviceRecords is everything one Service contributes to the zone. It is
// not changed once published: a change publishes new records, with an empty
// cache of packed answers.
type serviceRecords struct {
	fqdn  string
	names map[string]*node
	// exists holds every name at or under fqdn that has records or
	// children.
	exists map[string]bool
	ptr    map[string]string // reverse name → target
	// wire caches packed answers for names of this Service.
	wire wireCache
}

// ptrRecord is the target of one reverse name, and its packed answers.
type ptrRecord struct {
	target string
	wire   wireCache
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

// add returns the node of name (fqdn or a name under it), made if new, and
// marks it and its parents up to fqdn as existing.
func (r *serviceRecords) add(name string) *node {
	n := r.names[name]
	if n == nil {
		n = &node{}
		r.names[name] = n
	}
	for !r.exists[name] {
		r.exists[name] = true
		i := strings.IndexByte(name, '.')
		if name == r.fqdn || i < 0 {
			break
		}
		name = name[i+1:]
	}
	return n
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

// NewSnapshot makes an empty snapshot for zone (e.g. "cluster.local").
func NewSnapshot(zone string) *Snapshot {
	z := mdns.Fqdn(lower(zone))
	s := &Snapshot{zone: z, svcZone: "svc." + z,
		static:       map[string]*node{"dns-version." + z: {txt: []string{SpecVersion}}},
		staticExists: map[string]bool{z: true, "svc." + z: true, "pod." + z: true, "dns-version." + z: true},
		current:      map[string]*serviceRecords{}, nsServices: map[string]int{}, ptrOwners: map[string]map[string]string{}}
	s.soaWire = packSOA(s)
	return s
}

// BuildSnapshot makes the snapshot for zone (e.g. "cluster.local") of
// services and their slices.
func BuildSnapshot(zone string, services []*ServiceInfo, slices []*EndpointInfo) *Snapshot {
	s := NewSnapshot(zone)
	bySvc := map[string][]*EndpointInfo{}
	for _, es := range slices {
		k := es.Namespace + "/" + es.Service
		bySvc[k] = append(bySvc[k], es)
	}
	for _, svc := range services {
		s.SetService(svc, bySvc[svc.Namespace+"/"+svc.Name])
	}
	return s
}

// SetService publishes the records of svc, computed from its EndpointSlices
// alone, in place of what it had. Its cost does not depend on the other
// Services.
func (s *Snapshot) SetService(svc *ServiceInfo, slices []*EndpointInfo) {
	rec := buildService(s.zone, svc, slices)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current[rec.fqdn]
	if old == nil {
		// The namespace exists before a reader can see the Service in it.
		ns := lower(svc.Namespace + "." + s.svcZone)
		if s.nsServices[ns]++; s.nsServices[ns] == 1 {
			s.namespaces.Store(ns, struct{}{})
		}
	}
	s.current[rec.fqdn] = rec
	s.services.Store(rec.fqdn, rec)
	s.updatePTRs(rec.fqdn, old, rec)
}

// DeleteService removes the records of the Service namespace/name, if any.
func (s *Snapshot) DeleteService(namespace, name string) {
	fqdn := lower(name + "." + namespace + "." + s.svcZone)
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current[fqdn]
	if old == nil {
		return
	}
	delete(s.current, fqdn)
	s.services.Delete(fqdn)
	s.updatePTRs(fqdn, old, nil)
	ns := lower(namespace + "." + s.svcZone)
	if s.nsServices[ns]--; s.nsServices[ns] <= 0 {
		delete(s.nsServices, ns)
		s.namespaces.Delete(ns)
	}
}

// updatePTRs moves the reverse names the Service fqdn claims from old's to
// now's (either may be nil). When Services claim the same reverse name, the
// one of the lowest name answers it, whatever order they came in.
func (s *Snapshot) updatePTRs(fqdn string, old, now *serviceRecords) {
	var touched []string // a name may come twice: looked at twice
	if old != nil {
		for rev, target := range old.ptr {
			if now == nil || now.ptr[rev] != target {
				delete(s.ptrOwners[rev], fqdn)
				touched = append(touched, rev)
			}
		}
	}
	if now != nil {
		for rev, target := range now.ptr {
			if old == nil || old.ptr[rev] != target {
				if s.ptrOwners[rev] == nil {
					s.ptrOwners[rev] = map[string]string{}
				}
				s.ptrOwners[rev][fqdn] = target
				touched = append(touched, rev)
			}
		}
	}
	for _, rev := range touched {
		owners := s.ptrOwners[rev]
		if len(owners) == 0 {
			delete(s.ptrOwners, rev)
			s.ptr.Delete(rev)
			continue
		}
		first := ""
		for o := range owners {
			if first == "" || o < first {
				first = o
			}
		}
		if v, ok := s.ptr.Load(rev); !ok || v.(*ptrRecord).target != owners[first] {
			s.ptr.Store(rev, &ptrRecord{target: owners[first]})
		}
	}
}

// buildService computes the records of one Service from its slices.
func buildService(zone string, svc *ServiceInfo, slices []*EndpointInfo) *serviceRecords {
	fqdn := lower(svc.Name + "." + svc.Namespace + ".svc." + zone)
	r := &serviceRecords{fqdn: fqdn, names: map[string]*node{}, exists: map[string]bool{}, ptr: map[string]string{}}
	if svc.Type == corev1.ServiceTypeExternalName {
		r.add(fqdn).cname = mdns.Fqdn(lower(svc.ExternalName))
		return r
	}
	headless := len(svc.ClusterIPs) == 0 || svc.ClusterIPs[0] == corev1.ClusterIPNone
	if !headless {
		n := r.add(fqdn)
		for _, ip := range svc.ClusterIPs {
			parsed := net.ParseIP(ip)
			appendIP(n, parsed)
			if rev, err := mdns.ReverseAddr(ip); err == nil {
				r.ptr[rev] = fqdn
			}
		}
		for _, p := range svc.Ports {
			if p.Name == "" {
				continue
			}
			srvName := lower("_" + p.Name + "._" + string(p.Protocol) + "." + fqdn)
			sn := r.add(srvName)
			sn.srv = append(sn.srv, srvTarget{port: uint16(p.Port), target: fqdn})
		}
		r.sort()
		return r
	}
	// Headless: the ready endpoints themselves.
	n := r.add(fqdn)
	seen := map[string]bool{}
	for _, es := range slices {
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
				appendIP(r.add(hostName), ip)
				if ep.Hostname != nil && *ep.Hostname != "" {
					if rev, err := mdns.ReverseAddr(addr); err == nil {
						r.ptr[rev] = hostName
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
					sn := r.add(srvName)
					sn.srv = append(sn.srv, srvTarget{port: uint16(*p.Port), target: hostName})
				}
			}
		}
	}
	r.sort()
	return r
}

// sort puts addresses and SRV targets in a fixed order, so that answers do
// not depend on the order endpoints came in.
func (r *serviceRecords) sort() {
	for _, n := range r.names {
		sortIPs(n.a)
		sortIPs(n.aaaa)
		sort.Slice(n.srv, func(i, j int) bool {
			if n.srv[i].target != n.srv[j].target {
				return n.srv[i].target < n.srv[j].target
			}
			return n.srv[i].port < n.srv[j].port
		})
	}
}

// service returns the records of the Service that name (lower case, fully
// qualified) is at or under, and whether name is a namespace's own name
// "<ns>.svc.<zone>".
func (s *Snapshot) service(name string) (rec *serviceRecords, namespace bool) {
	z := s.svcZone
	if len(name) <= len(z) || name[len(name)-len(z)-1] != '.' || name[len(name)-len(z):] != z {
		return nil, false
	}
	rest := name[:len(name)-len(z)-1] // "_http._tcp.web.default"
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return nil, true
	}
	j := strings.LastIndexByte(rest[:i], '.') // -1: name is the Service's
	if v, ok := s.services.Load(name[j+1:]); ok {
		return v.(*serviceRecords), false
	}
	return nil, false
}

// lookup returns the node of name (lower case, fully qualified) and the
// cache of packed answers it belongs to; nil when name has no records.
func (s *Snapshot) lookup(name string) (*node, *wireCache) {
	if rec, _ := s.service(name); rec != nil {
		if n := rec.names[name]; n != nil {
			return n, &rec.wire
		}
		return nil, nil
	}
	if n := s.static[name]; n != nil {
		return n, &s.staticWire
	}
	return nil, nil
}

// has says whether name exists in the zone (it has records or children):
// NODATA rather than NXDOMAIN.
func (s *Snapshot) has(name string) bool {
	rec, namespace := s.service(name)
	switch {
	case rec != nil:
		return rec.exists[name]
	case namespace:
		_, ok := s.namespaces.Load(name)
		return ok
	}
	return s.staticExists[name]
}

// reverse returns the record of a reverse name, or nil.
func (s *Snapshot) reverse(name string) *ptrRecord {
	if v, ok := s.ptr.Load(name); ok {
		return v.(*ptrRecord)
	}
	return nil
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
