package bpfobj

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"

	"github.com/petrel-project/petrel/dataplane/maglev"
)

// loadNodePortUnpinned loads tc_nodeport with maps of its own (none pinned),
// for BPF_PROG_TEST_RUN.
func loadNodePortUnpinned(t *testing.T) *tcNodePortObjects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs (CI runs as root)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift the memlock limit: %v", err)
	}
	spec, err := loadTcNodePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var objs tcNodePortObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load tc_nodeport: %v", describeVerifierError(err))
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// synPacket is an Ethernet/IPv4/TCP SYN from client:sport to node:dport.
func synPacket(client, node netip.Addr, sport, dport uint16) []byte {
	p := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(p[12:], 0x0800)
	ip := p[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 40)
	c, n := client.As4(), node.As4()
	copy(ip[12:], c[:])
	copy(ip[16:], n[:])
	tcp := ip[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12], tcp[13] = 5<<4, 0x02
	return p
}

// With the Maglev flag, tc_nodeport sends each new flow to the backend the
// Go table and flow hash predict — the same one every node would pick.
func TestNodePortMaglevPicksThePredictedBackend(t *testing.T) {
	objs := loadNodePortUnpinned(t)
	node := netip.MustParseAddr("192.0.2.1")
	const nodePort, revNat = 30080, 7
	if err := objs.PetrelNodeAddr4.Put(AddrKey(node), uint8(1)); err != nil {
		t.Fatal(err)
	}
	var backends []netip.Addr
	var names []string
	for i := range 5 {
		a := netip.AddrFrom4([4]byte{10, 244, 1, byte(10 + i)})
		backends = append(backends, a)
		names = append(names, net.JoinHostPort(a.String(), strconv.Itoa(8080)))
		id := uint32(100 + i)
		if err := objs.PetrelLb4Be.Put(id, Backend{Address: AddrKey(a), Port: PortKey(8080), Proto: 6}); err != nil {
			t.Fatal(err)
		}
		key := ServiceKey{Address: 0, Dport: PortKey(nodePort), BackendSlot: uint16(i + 1), Proto: 6}
		if err := objs.PetrelLb4Svc.Put(key, ServiceValue{BackendId: id}); err != nil {
			t.Fatal(err)
		}
		// Local pods, so that the packet is handed to a pod (not the FIB).
		if err := objs.PetrelEndpoints.Put(AddrKey(a), EndpointInfo{Ifindex: 1}); err != nil {
			t.Fatal(err)
		}
	}
	slot0 := ServiceKey{Address: 0, Dport: PortKey(nodePort), Proto: 6}
	if err := objs.PetrelLb4Svc.Put(slot0, ServiceValue{Count: 5, RevNatIndex: revNat, Flags: FlagNodePort | FlagMaglev}); err != nil {
		t.Fatal(err)
	}
	table := maglev.Table(names, maglev.TableSize)
	inner, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: maglev.TableSize})
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	for i, b := range table {
		if err := inner.Put(uint32(i), uint32(100+b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := objs.PetrelLb4Maglev.Put(uint16(revNat), inner); err != nil {
		t.Fatal(err)
	}

	hits := map[netip.Addr]int{}
	for i := range 200 {
		client := netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%50)})
		sport := uint16(40000 + i*7)
		pkt := synPacket(client, node, sport, nodePort)
		out := make([]byte, len(pkt))
		ret, err := objs.PetrelNodeport.Run(&ebpf.RunOptions{Data: pkt, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		if ret != 7 { // TC_ACT_REDIRECT
			t.Fatalf("flow %d: verdict %d, want a redirect to the pod", i, ret)
		}
		got := netip.AddrFrom4([4]byte(out[14+16 : 14+20]))
		want := backends[table[maglev.FlowHash(client, node, sport, nodePort, 6)%maglev.TableSize]]
		if got != want {
			t.Fatalf("flow %s:%d went to %s, the table says %s", client, sport, got, want)
		}
		hits[got]++
	}
	if len(hits) != len(backends) {
		t.Errorf("200 flows reached %d of %d backends: %v", len(hits), len(backends), hits)
	}
	if spec, err := loadTcNodePort(); err == nil {
		if n := spec.Maps[MapMaglev].InnerMap.MaxEntries; n != maglev.TableSize {
			t.Errorf("LB_MAGLEV_SIZE is %d, maglev.TableSize %d", n, maglev.TableSize)
		}
	}
}

func countCT(t *testing.T, m *ebpf.Map) (forward, reverse int) {
	t.Helper()
	var k NodePortCTKey
	var v NodePortCTValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		if v.Ifindex == 0 {
			forward++
		} else {
			reverse++
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return forward, reverse
}

// Connections through tc_nodeport are stamped with their last packet and
// marked by a FIN; the node's collection drops a finished connection's two
// entries after the closing timeout, an idle one after its protocol's, and
// reverse entries whose forward entry the LRU dropped.
func TestNodePortConntrackCollection(t *testing.T) {
	objs := loadNodePortUnpinned(t)
	node := netip.MustParseAddr("192.0.2.1")
	backend := netip.MustParseAddr("10.244.1.10")
	const nodePort = 30081
	if err := objs.PetrelNodeAddr4.Put(AddrKey(node), uint8(1)); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelLb4Be.Put(uint32(1), Backend{Address: AddrKey(backend), Port: PortKey(8080), Proto: 6}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelLb4Svc.Put(ServiceKey{Dport: PortKey(nodePort), BackendSlot: 1, Proto: 6}, ServiceValue{BackendId: 1}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelLb4Svc.Put(ServiceKey{Dport: PortKey(nodePort), Proto: 6}, ServiceValue{Count: 1, RevNatIndex: 1, Flags: FlagNodePort}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelEndpoints.Put(AddrKey(backend), EndpointInfo{Ifindex: 1}); err != nil {
		t.Fatal(err)
	}
	send := func(client string, sport uint16, tcpFlags byte) {
		t.Helper()
		pkt := synPacket(netip.MustParseAddr(client), node, sport, nodePort)
		pkt[14+20+13] = tcpFlags
		// __sk_buff up to tc_index, with ingress_ifindex (offset 36) the
		// loopback's: a reverse entry records where the client came in.
		skb := make([]byte, 48)
		binary.LittleEndian.PutUint32(skb[36:], 1)
		if _, err := objs.PetrelNodeport.Run(&ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)), Context: skb}); err != nil {
			t.Fatal(err)
		}
	}
	now := MonotonicSeconds()
	send("198.51.100.1", 40000, 0x02) // SYN
	send("198.51.100.1", 40000, 0x11) // FIN+ACK: ending
	send("198.51.100.2", 40001, 0x02) // SYN: going on
	ct := objs.PetrelNpCt
	if f, r := countCT(t, ct); f != 2 || r != 2 {
		t.Fatalf("%d forward and %d reverse entries, want 2 and 2", f, r)
	}
	var v NodePortCTValue
	key := NodePortCTKey{Saddr: AddrKey(netip.MustParseAddr("198.51.100.1")), Daddr: AddrKey(node), Sport: PortKey(40000), Dport: PortKey(nodePort), Proto: 6}
	if err := ct.Lookup(&key, &v); err != nil {
		t.Fatal(err)
	}
	if v.Flags&NodePortCTClosing == 0 || v.LastSeen < now-1 || v.LastSeen > now+1 {
		t.Fatalf("the finished connection's entry: flags %d, last seen %d (now %d)", v.Flags, v.LastSeen, now)
	}

	if n, err := CollectNodePortCT(ct, now+5, DefaultCTTimeouts); err != nil || n != 0 {
		t.Fatalf("within the closing timeout: %d deleted (%v)", n, err)
	}
	if n, err := CollectNodePortCT(ct, now+11, DefaultCTTimeouts); err != nil || n != 2 {
		t.Fatalf("after the closing timeout: %d deleted (%v), want the finished pair", n, err)
	}
	if err := ct.Lookup(&key, &v); err == nil {
		t.Error("the finished connection is still tracked")
	}
	if n, err := CollectNodePortCT(ct, now+3601, DefaultCTTimeouts); err != nil || n != 2 {
		t.Fatalf("after the TCP idle timeout: %d deleted (%v)", n, err)
	}
	orphan := NodePortCTKey{Saddr: AddrKey(backend), Daddr: AddrKey(netip.MustParseAddr("198.51.100.9")), Sport: PortKey(8080), Dport: PortKey(40009), Proto: 6}
	if err := ct.Put(&orphan, &NodePortCTValue{Addr: AddrKey(node), Port: PortKey(nodePort), Ifindex: 1, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if n, err := CollectNodePortCT(ct, now+11, DefaultCTTimeouts); err != nil || n != 1 {
		t.Fatalf("a reverse entry without its forward entry: %d deleted (%v)", n, err)
	}
	if f, r := countCT(t, ct); f != 0 || r != 0 {
		t.Errorf("left: %d forward, %d reverse", f, r)
	}
}
