package lbview

import "github.com/petrel-project/petrel/dataplane/bpfobj"

// Counters are what the BPF programs counted for a frontend or a backend:
// new connections, and IP packets and bytes (both ways for sockets on the
// node, from clients for tc_nodeport).
type Counters struct {
	Connections uint64 `json:"connections"`
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
}

func (c *Counters) add(v bpfobj.TrafficValue) {
	c.Connections += v.Connections
	c.Packets += v.Packets
	c.Bytes += v.Bytes
}

// AddTraffic fills in the traffic counters of each frontend and of each of
// its backends from the traffic map (zero where nothing was counted).
func AddTraffic(m *bpfobj.Maps, fronts []Frontend) error {
	counts, err := bpfobj.ReadTraffic(m)
	if err != nil {
		return err
	}
	for i := range fronts {
		f := &fronts[i]
		f.Traffic = &Counters{}
		for j := range f.Backends {
			b := &f.Backends[j]
			b.Traffic = &Counters{}
			if v, ok := counts[bpfobj.TrafficKey{BackendId: b.ID, RevNatIndex: f.RevNatID}]; ok {
				b.Traffic.add(v)
				f.Traffic.add(v)
			}
		}
	}
	return nil
}
