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
