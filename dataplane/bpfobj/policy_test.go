package bpfobj

import (
	"encoding/binary"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
)

// loadPodUnpinned loads tc_pod with maps of its own, for BPF_PROG_TEST_RUN.
func loadPodUnpinned(t testing.TB) *tcPodObjects {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF programs (CI runs as root)")
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Skipf("cannot lift the memlock limit: %v", err)
	}
	spec, err := loadTcPod()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	var objs tcPodObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatalf("load tc_pod: %v", describeVerifierError(err))
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// l4Packet is an Ethernet/IPv4 packet of proto (TCP with the given flags,
// or UDP) from src:sport to dst:dport.
func l4Packet(src, dst netip.Addr, proto uint8, sport, dport uint16, tcpFlags uint8) []byte {
	p := make([]byte, 14+20+20)
	binary.BigEndian.PutUint16(p[12:], 0x0800)
	ip := p[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], 40)
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	l4 := ip[20:]
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	if proto == 6 {
		l4[12], l4[13] = 5<<4, tcpFlags
	} else {
		binary.BigEndian.PutUint16(l4[4:], 20)
	}
	return p
}

const (
	tcActOK       = 0
	tcActShot     = 2
	tcActRedirect = 7
)

func run(t *testing.T, prog *ebpf.Program, pkt []byte) uint32 {
	t.Helper()
	ret, err := prog.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatal(err)
	}
	return ret
}

// tc_pod judges a new connection by the sender's egress and, for a pod of
// this node, the receiver's ingress policy: identities from the ipcache,
// ports exact, as a range and as any, ipBlock prefixes through
// petrel_pol_cidr, the node always allowed, replies by conntrack, a drop
// reported on the ring buffer.
func TestPodProgramJudgesPolicy(t *testing.T) {
	objs := loadPodUnpinned(t)
	a := netip.MustParseAddr("10.244.0.10")     // local, egress isolated, identity 300
	b := netip.MustParseAddr("10.244.0.11")     // local, ingress isolated, identity 301
	c := netip.MustParseAddr("10.244.1.12")     // remote pod, identity 302
	host := netip.MustParseAddr("198.51.100.1") // this node
	ext := netip.MustParseAddr("203.0.113.7")   // outside, in an ipBlock
	for addr, id := range map[netip.Addr]uint32{a: 300, b: 301, c: 302, host: IdentityHost} {
		if err := objs.PetrelIpcache.Put(PrefixKey(netip.PrefixFrom(addr, 32)), IPCacheValue{Identity: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := objs.PetrelPolCidr.Put(PrefixKey(netip.MustParsePrefix("203.0.113.0/24")), IPCacheValue{Identity: 1<<24 | 1}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelEndpoints.Put(AddrKey(b), EndpointInfo{Ifindex: 1}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelPolEp.Put(AddrKey(a), PolicyEndpoint{Identity: 300, Flags: EndpointEgressIsolated}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PetrelPolEp.Put(AddrKey(b), PolicyEndpoint{Identity: 301, Flags: EndpointIngressIsolated | EndpointEgressIsolated}); err != nil {
		t.Fatal(err)
	}
	put := func(ep netip.Addr, id uint32, dir, proto uint8, port uint16, prefix uint32) {
		t.Helper()
		k := PolicyKey{Prefixlen: prefix, EpAddr: AddrKey(ep), Identity: id, Dir: dir, Proto: proto, Dport: PortKey(port)}
		if err := objs.PetrelPolicy.Put(k, PolicyValue{}); err != nil {
			t.Fatal(err)
		}
	}
	// a may send to c on TCP 8064-8191 (a range as one prefix), to the
	// ipBlock on UDP any port; b accepts a on TCP 8080 only.
	put(a, 302, DirEgress, 6, 8064, PolicyPrefixAnyPort+9)
	put(a, 1<<24|1, DirEgress, 17, 0, PolicyPrefixAnyPort)
	put(b, 300, DirIngress, 6, 8080, PolicyPrefixFull)

	rd, err := ringbuf.NewReader(objs.PetrelPolEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()

	const syn, ack = 0x02, 0x10
	for _, c := range []struct {
		name string
		pkt  []byte
		want uint32
	}{
		{"a→c TCP 8080 in the range", l4Packet(a, c, 6, 40000, 8080, syn), tcActOK},
		{"a→c TCP 8191, end of the range", l4Packet(a, c, 6, 40001, 8191, syn), tcActOK},
		{"a→c TCP 8192, past the range", l4Packet(a, c, 6, 40002, 8192, syn), tcActShot},
		{"a→c TCP 8063, before the range", l4Packet(a, c, 6, 40012, 8063, syn), tcActShot},
		{"a→c UDP, no rule", l4Packet(a, c, 17, 40003, 8080, 0), tcActShot},
		{"a→ipBlock UDP", l4Packet(a, ext, 17, 40004, 53, 0), tcActOK},
		{"a→ipBlock TCP", l4Packet(a, ext, 6, 40005, 53, syn), tcActShot},
		{"a→node, always", l4Packet(a, host, 6, 40006, 10250, syn), tcActOK},
		{"a→b TCP 8080: a's egress has no rule for b", l4Packet(a, b, 6, 40007, 8080, syn), tcActShot}, // a's egress has no rule for b
		{"c→b TCP 8080: not c", l4Packet(c, b, 6, 40008, 8080, syn), tcActShot},
	} {
		if got := run(t, objs.PetrelFromPod, c.pkt); got != c.want {
			t.Errorf("%s: verdict %d, want %d", c.name, got, c.want)
		}
	}
	// Once a's egress allows b too, b's ingress admits it on 8080 only.
	put(a, 301, DirEgress, 0, 0, PolicyPrefixAnyProto)
	if got := run(t, objs.PetrelFromPod, l4Packet(a, b, 6, 40009, 8080, syn)); got != tcActRedirect {
		t.Errorf("a→b TCP 8080 after allowing a's egress: %d, want redirect", got)
	}
	if got := run(t, objs.PetrelFromPod, l4Packet(a, b, 6, 40010, 9000, syn)); got != tcActShot {
		t.Errorf("a→b TCP 9000: %d, want drop", got)
	}
	// b's reply to a passes b's egress, which allows nothing (a is not in
	// this test's endpoint map, so the reply is left to routing); a new
	// connection from b does not.
	if got := run(t, objs.PetrelFromPod, l4Packet(b, a, 6, 8080, 40009, syn|ack)); got != tcActOK {
		t.Errorf("b's reply: %d, want pass", got)
	}
	if got := run(t, objs.PetrelFromPod, l4Packet(b, a, 6, 40011, 8080, syn)); got != tcActShot {
		t.Errorf("b's own SYN to a: %d, want drop", got)
	}
	// The second packet of an allowed UDP flow passes by conntrack.
	if got := run(t, objs.PetrelFromPod, l4Packet(a, ext, 17, 40004, 53, 0)); got != tcActOK {
		t.Errorf("second UDP packet: %d", got)
	}

	stats, err := PolicyStats(objs.PetrelPolStats)
	if err != nil {
		t.Fatal(err)
	}
	if stats[DirEgress-1][PolicyVerdictDenied] == 0 || stats[DirIngress-1][PolicyVerdictDenied] == 0 ||
		stats[DirEgress-1][PolicyVerdictHost] != 1 {
		t.Errorf("stats %v", stats)
	}
	// The first drop was reported with both identities.
	rd.SetDeadline(time.Now().Add(time.Second))
	rec, err := rd.Read()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := ParsePolicyEvent(rec.RawSample)
	if err != nil {
		t.Fatal(err)
	}
	if AddrOf(ev.Saddr) != a || AddrOf(ev.Daddr) != c || PortOf(ev.Dport) != 8192 || ev.Reason != DropEgress ||
		ev.SrcIdentity != 300 || ev.DstIdentity != 302 || ev.Point != PointPod ||
		ev.VerdictEgress != PolicyVerdictDenied || ev.VerdictIngress != PolicyVerdictNone {
		t.Errorf("event %+v", ev)
	}

	// Tracing on: an allowed new connection is reported once, with both
	// directions' verdicts; its next packet is not.
	for {
		rd.SetDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := rd.Read(); err != nil {
			break // the drops before are read
		}
	}
	maps := &PolicyMaps{Config: objs.PetrelPolCfg}
	if err := maps.SetPolicyTrace(true); err != nil {
		t.Fatal(err)
	}
	for _, flags := range []uint8{syn, ack} {
		if got := run(t, objs.PetrelFromPod, l4Packet(a, b, 6, 40020, 8080, flags)); got != tcActRedirect {
			t.Fatalf("a→b TCP 8080 traced (flags %#x): %d, want redirect", flags, got)
		}
	}
	rd.SetDeadline(time.Now().Add(time.Second))
	if rec, err = rd.Read(); err != nil {
		t.Fatal(err)
	}
	if ev, err = ParsePolicyEvent(rec.RawSample); err != nil {
		t.Fatal(err)
	}
	if ev.Reason != TraceAllowed || AddrOf(ev.Saddr) != a || AddrOf(ev.Daddr) != b || ev.SrcIdentity != 300 || ev.DstIdentity != 301 ||
		ev.VerdictEgress != PolicyVerdictAllowed || ev.VerdictIngress != PolicyVerdictAllowed {
		t.Errorf("trace event %+v", ev)
	}
	rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if rec, err := rd.Read(); err == nil {
		ev, _ := ParsePolicyEvent(rec.RawSample)
		t.Errorf("a second event for one connection: %+v", ev)
	}
	if err := maps.SetPolicyTrace(false); err != nil {
		t.Fatal(err)
	}
	if got := run(t, objs.PetrelFromPod, l4Packet(a, b, 6, 40021, 8080, syn)); got != tcActRedirect {
		t.Fatalf("a→b TCP 8080: %d, want redirect", got)
	}
	rd.SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := rd.Read(); err == nil {
		t.Errorf("a trace event with tracing off")
	}
}
