// Package lbview reads the load balancer's pinned BPF maps into rows that
// operators read: frontends with their backends, backends, reverse NAT,
// socket translations and map pressure. It only reads, so it works while the
// node daemon is down.
package lbview

import (
	"fmt"
	"net"
	"net/netip"
	"sort"

	"github.com/cilium/ebpf"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// Backend is one backend as a frontend's slot names it.
type Backend struct {
	ID      uint32 `json:"id"`
	Slot    uint16 `json:"slot,omitempty"`
	Address string `json:"address"`
	State   string `json:"state"`
	// Pod names the backend's pod (filled by callers that read the API).
	Pod string `json:"pod,omitempty"`
	// Traffic is what was counted for this frontend and backend (AddTraffic).
	Traffic *Counters `json:"traffic,omitempty"`
}

// Frontend is one service frontend and its backends in slot order.
type Frontend struct {
	Frontend        string    `json:"frontend"`
	Address         string    `json:"address"`
	Port            uint16    `json:"port"`
	Protocol        string    `json:"protocol"`
	RevNatID        uint16    `json:"revNatID"`
	Flags           []string  `json:"flags,omitempty"`
	AffinityTimeout uint32    `json:"affinityTimeoutSeconds,omitempty"`
	Backends        []Backend `json:"backends"`
	// Traffic sums its backends' counters (AddTraffic).
	Traffic *Counters `json:"traffic,omitempty"`
}

// RevNat is one reverse-NAT entry: service id → the address replies show.
type RevNat struct {
	ID      uint16 `json:"id"`
	Address string `json:"address"`
}

// Socket is one socket the load balancer translated: which backend it went
// to and which frontend it asked for.
type Socket struct {
	Cookie   uint64 `json:"socketCookie"`
	Backend  string `json:"backend"`
	Frontend string `json:"frontend"`
	RevNatID uint16 `json:"revNatID"`
}

// Map is one map's fill level.
type Map struct {
	Name     string  `json:"name"`
	Type     string  `json:"type"`
	Entries  int     `json:"entries"`
	Capacity uint32  `json:"capacity"`
	Pressure float64 `json:"pressure"`
}

func proto(p uint8) string {
	switch p {
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	}
	return fmt.Sprint(p)
}

func hostPort(a uint32, p uint16) string {
	return netip.AddrPortFrom(bpfobj.AddrOf(a), bpfobj.PortOf(p)).String()
}

func frontendName(a uint32, p uint16, pr uint8) string {
	host := bpfobj.AddrOf(a).String()
	if a == 0 {
		host = "*" // NodePort: every node address
	}
	return fmt.Sprintf("%s:%d/%s", host, bpfobj.PortOf(p), proto(pr))
}

func flagNames(f uint8) []string {
	var out []string
	for _, n := range []struct {
		bit  uint8
		name string
	}{{bpfobj.FlagNodePort, "nodeport"}, {bpfobj.FlagExternal, "external"}, {bpfobj.FlagLocal, "local"}, {bpfobj.FlagAffinity, "affinity"}, {bpfobj.FlagMaglev, "maglev"}} {
		if f&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func state(s uint8) string {
	if s == bpfobj.BackendTerminating {
		return "terminating"
	}
	return "active"
}

// Backends lists the backend map by id.
func Backends(m *bpfobj.Maps) ([]Backend, error) {
	var id uint32
	var b bpfobj.Backend
	var out []Backend
	it := m.Backends.Iterate()
	for it.Next(&id, &b) {
		out = append(out, Backend{ID: id, Address: hostPort(b.Address, b.Port) + "/" + proto(b.Proto), State: state(b.State)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read backends: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Frontends lists every frontend with its backends in slot order.
func Frontends(m *bpfobj.Maps) ([]Frontend, error) {
	backends := map[uint32]bpfobj.Backend{}
	var id uint32
	var b bpfobj.Backend
	bit := m.Backends.Iterate()
	for bit.Next(&id, &b) {
		backends[id] = b
	}
	if err := bit.Err(); err != nil {
		return nil, fmt.Errorf("read backends: %w", err)
	}
	type fkey struct {
		a  uint32
		p  uint16
		pr uint8
	}
	fronts := map[fkey]*Frontend{}
	slots := map[fkey][]Backend{}
	var k bpfobj.ServiceKey
	var v bpfobj.ServiceValue
	it := m.Services.Iterate()
	for it.Next(&k, &v) {
		fk := fkey{k.Address, k.Dport, k.Proto}
		if k.BackendSlot == 0 {
			fronts[fk] = &Frontend{Frontend: frontendName(k.Address, k.Dport, k.Proto), Address: bpfobj.AddrOf(k.Address).String(),
				Port: bpfobj.PortOf(k.Dport), Protocol: proto(k.Proto), RevNatID: v.RevNatIndex, Flags: flagNames(v.Flags),
				AffinityTimeout: v.AffinityTimeout, Backends: make([]Backend, 0, v.Count)}
			continue
		}
		row := Backend{ID: v.BackendId, Slot: k.BackendSlot, Address: "(missing)", State: "missing"}
		if be, ok := backends[v.BackendId]; ok {
			row.Address, row.State = hostPort(be.Address, be.Port), state(be.State)
		}
		slots[fk] = append(slots[fk], row)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	out := make([]Frontend, 0, len(fronts))
	for fk, f := range fronts {
		s := slots[fk]
		sort.Slice(s, func(i, j int) bool { return s[i].Slot < s[j].Slot })
		for _, b := range s {
			// Slots beyond the count are being deleted; lookups never reach them.
			if int(b.Slot) <= cap(f.Backends) {
				f.Backends = append(f.Backends, b)
			}
		}
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Address != out[j].Address {
			return addrLess(out[i].Address, out[j].Address)
		}
		if out[i].Port != out[j].Port {
			return out[i].Port < out[j].Port
		}
		return out[i].Protocol < out[j].Protocol
	})
	return out, nil
}

func addrLess(a, b string) bool {
	x, _ := netip.ParseAddr(a)
	y, _ := netip.ParseAddr(b)
	return x.Less(y)
}

// RevNats lists the reverse-NAT map by id.
func RevNats(m *bpfobj.Maps) ([]RevNat, error) {
	var id uint16
	var v bpfobj.RevNat
	var out []RevNat
	it := m.RevNat.Iterate()
	for it.Next(&id, &v) {
		out = append(out, RevNat{ID: id, Address: hostPort(v.Address, v.Port)})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read reverse NAT: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Sockets lists the sockets translated at connect or sendmsg, newest not
// first: the map is an LRU and keeps the last 131072.
func Sockets(m *bpfobj.Maps) ([]Socket, error) {
	var k bpfobj.SockRevNatKey
	var v bpfobj.SockRevNatValue
	var out []Socket
	it := m.SockRevNat.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Socket{Cookie: k.Cookie, Backend: hostPort(k.Address, k.Port),
			Frontend: hostPort(v.Address, v.Port), RevNatID: v.RevNatIndex})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read socket translations: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cookie < out[j].Cookie })
	return out, nil
}

// Maps lists every map's entries against its capacity.
func Maps(m *bpfobj.Maps) ([]Map, error) {
	var out []Map
	for _, name := range append(append([]string{}, bpfobj.MapNames...), bpfobj.PodMapNames...) {
		mp := m.ByName(name)
		if mp == nil {
			continue // a pod map of a node that runs no pods
		}
		n, err := bpfobj.CountEntries(mp)
		if err != nil {
			return nil, fmt.Errorf("count %s: %w", name, err)
		}
		row := Map{Name: name, Type: mp.Type().String(), Entries: n, Capacity: mp.MaxEntries()}
		if row.Capacity > 0 && mp.Type() != ebpf.PerCPUArray && mp.Type() != ebpf.Array {
			row.Pressure = float64(n) / float64(row.Capacity)
		}
		out = append(out, row)
	}
	return out, nil
}

// NodePortFlow is a connection from another host through a NodePort, as
// tc_nodeport tracks it.
type NodePortFlow struct {
	Client    string `json:"client"`
	Frontend  string `json:"frontend"`
	Backend   string `json:"backend"`
	Protocol  string `json:"protocol"`
	Interface string `json:"interface,omitempty"`
	// SNAT is the node's address and port toward a backend on another
	// node; empty for a backend on this one.
	SNAT string `json:"snat,omitempty"`
	// IdleSeconds since a packet of the connection passed either way.
	IdleSeconds uint32 `json:"idleSeconds"`
	// Closing says a TCP FIN or RST passed: the node drops the entries soon.
	Closing bool `json:"closing,omitempty"`
}

// NodePortFlows lists the NodePort connections in petrel_np_ct (forward
// entries, with the interface from their reverse entry); none when the
// node does not run tc_nodeport.
func NodePortFlows(m *bpfobj.Maps) ([]NodePortFlow, error) {
	ct := m.ByName(bpfobj.MapNodePortCT)
	if ct == nil {
		return nil, nil
	}
	var k bpfobj.NodePortCTKey
	var v bpfobj.NodePortCTValue
	var out []NodePortFlow
	now := bpfobj.MonotonicSeconds()
	it := ct.Iterate()
	for it.Next(&k, &v) {
		if v.Ifindex != 0 {
			continue // a reverse entry
		}
		f := NodePortFlow{Client: hostPort(k.Saddr, k.Sport), Frontend: hostPort(k.Daddr, k.Dport), Backend: hostPort(v.Addr, v.Port), Protocol: proto(k.Proto)}
		rev := bpfobj.NodePortCTKey{Saddr: v.Addr, Daddr: k.Saddr, Sport: v.Port, Dport: k.Sport, Proto: k.Proto}
		if v.NatPort != 0 {
			f.SNAT = hostPort(k.Daddr, v.NatPort)
			rev.Daddr, rev.Dport = k.Daddr, v.NatPort
		}
		last, flags := v.LastSeen, v.Flags
		var back bpfobj.NodePortCTValue
		if err := ct.Lookup(&rev, &back); err == nil {
			if iface, err := net.InterfaceByIndex(int(back.Ifindex)); err == nil {
				f.Interface = iface.Name
			}
			last, flags = max(last, back.LastSeen), flags|back.Flags
		}
		if last != 0 && now > last {
			f.IdleSeconds = now - last
		}
		f.Closing = flags&bpfobj.NodePortCTClosing != 0
		out = append(out, f)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("read NodePort connections: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Client < out[j].Client })
	return out, nil
}
