package bpfobj

import (
	"net/netip"
	"testing"
)

// BenchmarkPodProgram measures tc_pod's own cost per packet
// (BPF_PROG_TEST_RUN, the kernel's clock around many repeats) on the paths
// that carry pod traffic: to a pod of another node natively, and to a pod
// of this node; a connection's first packet (SYN) and one in the middle
// (ACK). `go test -run - -bench PodProgram -benchtime 300000x
// ./dataplane/bpfobj` as root; subtract the not-IP row, which is the test
// run's own cost around one run.
func BenchmarkPodProgram(b *testing.B) {
	objs := loadPodUnpinned(b)
	src := netip.MustParseAddr("10.244.0.10")
	local := netip.MustParseAddr("10.244.0.11")
	remote := netip.MustParseAddr("10.244.1.12")
	if err := objs.PetrelEndpoints.Put(AddrKey(local), EndpointInfo{Ifindex: 1}); err != nil {
		b.Fatal(err)
	}
	if err := objs.PetrelTunnel.Put(TunnelKeyOf(netip.MustParsePrefix("10.244.1.0/24")),
		TunnelInfo{NodeAddr: AddrKey(netip.MustParseAddr("198.51.100.11")), Ifindex: 1, How: TunnelNative}); err != nil {
		b.Fatal(err)
	}
	const syn, ack = 0x02, 0x10
	for _, c := range []struct {
		name string
		pkt  []byte
	}{
		{"not-ip (the floor: test-run overhead)", arpLike()},
		{"remote/ack", l4Packet(src, remote, 6, 40000, 8080, ack)},
		{"remote/syn", l4Packet(src, remote, 6, 40001, 8080, syn)},
		{"local/ack", l4Packet(src, local, 6, 40002, 8080, ack)},
		{"local/syn", l4Packet(src, local, 6, 40003, 8080, syn)},
	} {
		b.Run(c.name, func(b *testing.B) {
			// One run per call: the program rewrites the packet (TTL,
			// MACs), so repeats in the kernel would judge another packet.
			var total float64
			for range b.N {
				_, d, err := objs.PetrelFromPod.Benchmark(c.pkt, 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				total += float64(d.Nanoseconds())
			}
			b.ReportMetric(total/float64(b.N), "ns/packet")
		})
	}
}

// arpLike is a frame tc_pod leaves alone at once: not IPv4.
func arpLike() []byte {
	p := make([]byte, 60)
	p[12], p[13] = 0x08, 0x06
	return p
}

// BenchmarkPodProgramPolicyLoaded is BenchmarkPodProgram's local path with
// policy loaded as `bench policy` loads it (1,000 isolated pods, 30,000
// policy entries) against the same maps empty: a new connection pays for
// the judgment, a packet in the middle of one only for its conntrack hit,
// loaded or not.
func BenchmarkPodProgramPolicyLoaded(b *testing.B) {
	src := netip.MustParseAddr("10.244.0.10")
	dst := netip.MustParseAddr("10.244.0.11")
	for _, loaded := range []bool{false, true} {
		objs := loadPodUnpinned(b)
		if err := objs.PetrelEndpoints.Put(AddrKey(dst), EndpointInfo{Ifindex: 1}); err != nil {
			b.Fatal(err)
		}
		name := "empty"
		if loaded {
			name = "1000-pods-30000-entries"
			put := func(ep netip.Addr, id uint32, port uint16) {
				k := PolicyKey{Prefixlen: PolicyPrefixFull, EpAddr: AddrKey(ep), Identity: id, Dir: DirIngress, Proto: 6, Dport: PortKey(port)}
				if err := objs.PetrelPolicy.Put(k, PolicyValue{}); err != nil {
					b.Fatal(err)
				}
			}
			for i := range 1000 {
				ip := netip.AddrFrom4([4]byte{10, 252, byte(i / 250), byte(i%250 + 1)})
				if err := objs.PetrelIpcache.Put(PrefixKey(netip.PrefixFrom(ip, 32)), IPCacheValue{Identity: uint32(300 + i%100)}); err != nil {
					b.Fatal(err)
				}
				if err := objs.PetrelPolEp.Put(AddrKey(ip), PolicyEndpoint{Identity: uint32(300 + i%100), Flags: EndpointIngressIsolated}); err != nil {
					b.Fatal(err)
				}
				for j := range 30 {
					put(ip, uint32(300+j), uint16(8000+j))
				}
			}
			for addr, id := range map[netip.Addr]uint32{src: 200, dst: 201} {
				if err := objs.PetrelIpcache.Put(PrefixKey(netip.PrefixFrom(addr, 32)), IPCacheValue{Identity: id}); err != nil {
					b.Fatal(err)
				}
				if err := objs.PetrelPolEp.Put(AddrKey(addr), PolicyEndpoint{Identity: id, Flags: EndpointIngressIsolated}); err != nil {
					b.Fatal(err)
				}
			}
			put(dst, 200, 8080)
		}
		const syn, ack = 0x02, 0x10
		for _, c := range []struct {
			name string
			pkt  []byte
		}{
			{"syn", l4Packet(src, dst, 6, 40003, 8080, syn)},
			{"ack", l4Packet(src, dst, 6, 40003, 8080, ack)},
		} {
			b.Run(name+"/"+c.name, func(b *testing.B) {
				var total float64
				for range b.N {
					ret, d, err := objs.PetrelFromPod.Benchmark(c.pkt, 1, nil)
					if err != nil || ret != tcActRedirect {
						b.Fatalf("verdict %d, %v", ret, err)
					}
					total += float64(d.Nanoseconds())
				}
				b.ReportMetric(total/float64(b.N), "ns/packet")
			})
		}
	}
}
