package bpfobj

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// tc_nodeport counts a new flow's first packet as a connection and every
// packet of it with its bytes, for the frontend and backend it went to —
// and counts nothing while the switch is off.
func TestNodePortCountsTraffic(t *testing.T) {
	objs := loadNodePortUnpinned(t)
	node := netip.MustParseAddr("198.51.100.1")
	backend := netip.MustParseAddr("10.244.1.10")
	const nodePort, revNat, backendID = 30090, 9, 42
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(objs.PetrelNodeAddr4.Put(AddrKey(node), uint8(1)))
	must(objs.PetrelLb4Be.Put(uint32(backendID), Backend{Address: AddrKey(backend), Port: PortKey(8080), Proto: 6}))
	must(objs.PetrelLb4Svc.Put(ServiceKey{Dport: PortKey(nodePort), BackendSlot: 1, Proto: 6}, ServiceValue{BackendId: backendID}))
	must(objs.PetrelLb4Svc.Put(ServiceKey{Dport: PortKey(nodePort), Proto: 6}, ServiceValue{Count: 1, RevNatIndex: revNat, Flags: FlagNodePort}))
	must(objs.PetrelEndpoints.Put(AddrKey(backend), EndpointInfo{Ifindex: 1}))
	maps := &Maps{Traffic: objs.PetrelLbTraffic, LBConfig: objs.PetrelLbConfig}

	send := func(client netip.Addr, sport uint16, n int) {
		t.Helper()
		for range n {
			pkt := synPacket(client, node, sport, nodePort)
			ret, err := objs.PetrelNodeport.Run(&ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt))})
			must(err)
			if ret != 7 { // TC_ACT_REDIRECT
				t.Fatalf("verdict %d, want a redirect to the pod", ret)
			}
		}
	}
	// Off (the map's zero value): forwarded, not counted.
	send(netip.MustParseAddr("203.0.113.5"), 41000, 2)
	got, err := ReadTraffic(maps)
	must(err)
	if len(got) != 0 {
		t.Fatalf("counting off, yet the map holds %v", got)
	}

	must(SetTrafficCounting(maps, true))
	if on, err := TrafficCounting(maps); err != nil || !on {
		t.Fatalf("TrafficCounting = %v, %v after switching on", on, err)
	}
	send(netip.MustParseAddr("203.0.113.6"), 41001, 3) // one connection, three packets
	send(netip.MustParseAddr("203.0.113.7"), 41002, 1) // another connection
	got, err = ReadTraffic(maps)
	must(err)
	want := TrafficValue{Connections: 2, Packets: 4, Bytes: 4 * 54}
	if v := got[TrafficKey{BackendId: backendID, RevNatIndex: revNat}]; v != want || len(got) != 1 {
		t.Fatalf("traffic = %+v, want only {backend %d, rev-NAT %d}: %+v", got, backendID, revNat, want)
	}

}
