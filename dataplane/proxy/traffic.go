package proxy

import (
	"errors"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// TrafficRow is what the BPF programs counted for one frontend of a Service
// and one of its backends.
type TrafficRow struct {
	Namespace  string `json:"namespace"`
	Service    string `json:"service"`
	Frontend   string `json:"frontend"`
	Backend    string `json:"backend"`
	BackendPod string `json:"backendPod,omitempty"`
	// Connections are new connections (and new UDP socket → backend pairs).
	Connections uint64 `json:"connections"`
	// Packets and Bytes are those of load-balanced sockets on this node,
	// both ways (IP packets with their headers), and those tc_nodeport
	// forwarded from clients of other hosts.
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// forgetTraffic deletes the counters of one frontend's backend as its id
// is released, so that the id's next owner starts from zero. Not counted as
// a map write: it is bookkeeping of the counters, not of forwarding.
func (t *tables) forgetTraffic(revNat uint16, backendID uint32) {
	if t.maps.Traffic == nil {
		return
	}
	k := bpfobj.TrafficKey{BackendId: backendID, RevNatIndex: revNat}
	if err := t.maps.Traffic.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		// Left for the map's LRU to reclaim; a re-used id then carries
		// the old counts, which a scraper sees as a counter that went on.
		return
	}
}

type trafficOwner struct {
	owner    string
	frontend string
}

// Traffic reads the traffic counters and names them by the Services and
// pods the proxy programmed. Counters of ids the proxy does not know (left
// by an earlier run and not yet rewritten) are left out.
func (p *Proxy) Traffic() ([]TrafficRow, error) {
	p.mu.Lock()
	fronts := make(map[uint16]trafficOwner, len(p.tables.frontends))
	backends := map[uint32]BackendAddr{}
	for key, f := range p.tables.frontends {
		fronts[f.revNat] = trafficOwner{owner: f.owner, frontend: key.String()}
		for _, b := range f.backends {
			backends[b.id] = b.addr
		}
	}
	maps := p.tables.maps
	p.mu.Unlock()

	counts, err := bpfobj.ReadTraffic(maps)
	if err != nil {
		return nil, err
	}
	pods := map[string]map[netip.Addr]string{} // owner → address → pod
	rows := make([]TrafficRow, 0, len(counts))
	for k, v := range counts {
		fo, ok := fronts[k.RevNatIndex]
		b, bok := backends[k.BackendId]
		if !ok || !bok || fo.owner == "" {
			continue
		}
		ns, name, _ := cache.SplitMetaNamespaceKey(fo.owner)
		if _, done := pods[fo.owner]; !done {
			pods[fo.owner] = p.backendPods(ns, name)
		}
		rows = append(rows, TrafficRow{Namespace: ns, Service: name, Frontend: fo.frontend,
			Backend: netip.AddrPortFrom(b.Address, b.Port).String(), BackendPod: pods[fo.owner][b.Address],
			Connections: v.Connections, Packets: v.Packets, Bytes: v.Bytes})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Frontend != rows[j].Frontend {
			return rows[i].Frontend < rows[j].Frontend
		}
		return rows[i].Backend < rows[j].Backend
	})
	return rows, nil
}

// backendPods names the pods behind a Service's endpoint addresses, from
// its EndpointSlices' targetRefs.
func (p *Proxy) backendPods(ns, name string) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	if p.slices == nil {
		return out
	}
	slices, _ := sliceindex.All(p.slices, ns, name)
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			for _, a := range ep.Addresses {
				if addr, err := netip.ParseAddr(a); err == nil {
					out[addr] = ep.TargetRef.Name
				}
			}
		}
	}
	return out
}

// trafficCollector exports the counters when scraped: reading the per-CPU
// map then costs nothing between scrapes.
type trafficCollector struct {
	proxy                       *Proxy
	connections, packets, bytes *prometheus.Desc
}

func newTrafficCollector(p *Proxy) *trafficCollector {
	labels := []string{"namespace", "service", "frontend", "backend", "backend_pod"}
	return &trafficCollector{proxy: p,
		connections: prometheus.NewDesc("petrel_service_connections_total",
			"New connections to a Service frontend sent to a backend, counted by the BPF load balancer.", labels, nil),
		packets: prometheus.NewDesc("petrel_service_packets_total",
			"IP packets between clients and a Service frontend's backend: both ways for sockets on this node (socket load balancer), from clients for tc_nodeport.", labels, nil),
		bytes: prometheus.NewDesc("petrel_service_bytes_total",
			"Bytes (IP headers included) of the packets in petrel_service_packets_total.", labels, nil),
	}
}

func (c *trafficCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.connections
	ch <- c.packets
	ch <- c.bytes
}

func (c *trafficCollector) Collect(ch chan<- prometheus.Metric) {
	rows, err := c.proxy.Traffic()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.connections, err)
		return
	}
	for _, r := range rows {
		lv := []string{r.Namespace, r.Service, r.Frontend, r.Backend, r.BackendPod}
		ch <- prometheus.MustNewConstMetric(c.connections, prometheus.CounterValue, float64(r.Connections), lv...)
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(r.Packets), lv...)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(r.Bytes), lv...)
	}
}
