package dns

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func ptr[T any](v T) *T { return &v }

func sampleSnapshot() *Snapshot {
	svcs := []*ServiceInfo{
		{Name: "web", Namespace: "default", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"10.96.0.20"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		{Name: "db", Namespace: "default", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"None"}},
		{Name: "empty", Namespace: "default", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"None"}},
		{Name: "ext", Namespace: "default", Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
		{Name: "alias", Namespace: "default", Type: corev1.ServiceTypeExternalName, ExternalName: "web.default.svc.cluster.local"},
		{Name: "big", Namespace: "default", Type: corev1.ServiceTypeClusterIP, ClusterIPs: []string{"None"}},
	}
	var bigEps []discoveryv1.Endpoint
	for i := 0; i < 100; i++ {
		bigEps = append(bigEps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.2.%d", i+1)}})
	}
	slices := []*EndpointInfo{
		{Service: "db", Namespace: "default", AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{
				{Addresses: []string{"10.244.1.5"}, Hostname: ptr("db-0"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
				{Addresses: []string{"10.244.1.6"}, Hostname: ptr("db-1"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}},
				{Addresses: []string{"10.244.1.7"}, Hostname: ptr("db-2"), Conditions: discoveryv1.EndpointConditions{Ready: ptr(false)}},
			},
			Ports: []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}}},
		{Service: "big", Namespace: "default", AddressType: discoveryv1.AddressTypeIPv4, Endpoints: bigEps},
	}
	return BuildSnapshot("cluster.local", svcs, slices)
}

// fakeUpstream answers every A query with 192.0.2.1 (TTL 60) and counts queries.
func fakeUpstream(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		n.Add(1)
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Qtype == mdns.TypeA {
			m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: r.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.1")})
		}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &n
}

func startServer(t *testing.T, upstreams []string) (*Server, *Handler) {
	t.Helper()
	h := NewHandler("cluster.local", NewForwarder(upstreams, NewMetrics(nil)), NewMetrics(nil))
	h.Swap(sampleSnapshot())
	srv, err := Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv, h
}

func query(t *testing.T, addr, netw, name string, qtype uint16, edns bool) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(4096, false)
	}
	c := &mdns.Client{Net: netw, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], netw, err)
	}
	if resp.Id != m.Id {
		t.Fatalf("answer ID %d, query ID %d", resp.Id, m.Id)
	}
	return resp
}

// rrs renders the answer section compactly: "TYPE value" per record, sorted.
func rrs(section []mdns.RR) []string {
	var out []string
	for _, rr := range section {
		parts := strings.Fields(rr.String())
		// name ttl class type rdata...
		out = append(out, rr.Header().Name+" "+parts[3]+" "+strings.Join(parts[4:], " "))
	}
	sort.Strings(out)
	return out
}

func TestRecords(t *testing.T) {
	up, _ := fakeUpstream(t)
	srv, _ := startServer(t, []string{up})
	cases := []struct {
		name    string
		qtype   uint16
		rcode   int
		answers []string // nil: expect none (then an SOA in authority)
	}{
		{"web.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"web.default.svc.cluster.local. A 10.96.0.20"}},
		{"WEB.Default.Svc.Cluster.Local.", mdns.TypeA, mdns.RcodeSuccess, []string{"WEB.Default.Svc.Cluster.Local. A 10.96.0.20"}},
		{"web.default.svc.cluster.local.", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{"nope.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"nons.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"_http._tcp.web.default.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"_http._tcp.web.default.svc.cluster.local. SRV 0 100 80 web.default.svc.cluster.local."}},
		{"_nope._tcp.web.default.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeNameError, nil},
		{"db.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"db.default.svc.cluster.local. A 10.244.1.5", "db.default.svc.cluster.local. A 10.244.1.6"}},
		{"db-0.db.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"db-0.db.default.svc.cluster.local. A 10.244.1.5"}},
		{"db-2.db.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, mdns.RcodeSuccess, []string{
			"_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 db-0.db.default.svc.cluster.local.",
			"_pg._tcp.db.default.svc.cluster.local. SRV 0 50 5432 db-1.db.default.svc.cluster.local."}},
		{"empty.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"ext.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"ext.default.svc.cluster.local. CNAME example.com."}},
		{"alias.default.svc.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"alias.default.svc.cluster.local. CNAME web.default.svc.cluster.local.", "web.default.svc.cluster.local. A 10.96.0.20"}},
		{"20.0.96.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"20.0.96.10.in-addr.arpa. PTR web.default.svc.cluster.local."}},
		{"5.1.244.10.in-addr.arpa.", mdns.TypePTR, mdns.RcodeSuccess, []string{"5.1.244.10.in-addr.arpa. PTR db-0.db.default.svc.cluster.local."}},
		{"10-244-1-9.default.pod.cluster.local.", mdns.TypeA, mdns.RcodeSuccess, []string{"10-244-1-9.default.pod.cluster.local. A 10.244.1.9"}},
		{"not-an-ip.default.pod.cluster.local.", mdns.TypeA, mdns.RcodeNameError, nil},
		{"dns-version.cluster.local.", mdns.TypeTXT, mdns.RcodeSuccess, []string{`dns-version.cluster.local. TXT "1.1.0"`}},
		{"cluster.local.", mdns.TypeSOA, mdns.RcodeSuccess, []string{"cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5"}},
		{"web.default.svc.cluster.local.", mdns.TypeANY, mdns.RcodeSuccess, []string{`web.default.svc.cluster.local. HINFO "RFC8482" ""`}},
		{"example.org.", mdns.TypeA, mdns.RcodeSuccess, []string{"example.org. A 192.0.2.1"}},
	}
	for _, c := range cases {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(netw+" "+c.name+" "+mdns.TypeToString[c.qtype], func(t *testing.T) {
				resp := query(t, srv.Addr, netw, c.name, c.qtype, false)
				if resp.Rcode != c.rcode {
					t.Fatalf("rcode %s, want %s\n%s", mdns.RcodeToString[resp.Rcode], mdns.RcodeToString[c.rcode], resp)
				}
				got := rrs(resp.Answer)
				if strings.Join(got, "\n") != strings.Join(c.answers, "\n") {
					t.Fatalf("answers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.answers, "\n"))
				}
				inZone := strings.HasSuffix(strings.ToLower(c.name), "cluster.local.")
				if inZone && len(c.answers) == 0 && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != mdns.TypeSOA) {
					t.Fatalf("negative answer without SOA: %v", resp.Ns)
				}
				if inZone && !resp.Authoritative {
					t.Fatal("cluster answer not authoritative")
				}
			})
		}
	}
}

func TestSRVCarriesAddresses(t *testing.T) {
	srv, _ := startServer(t, nil)
	resp := query(t, srv.Addr, "udp", "_pg._tcp.db.default.svc.cluster.local.", mdns.TypeSRV, true)
	var noOPT []mdns.RR
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != mdns.TypeOPT {
			noOPT = append(noOPT, rr)
		}
	}
	want := []string{"db-0.db.default.svc.cluster.local. A 10.244.1.5", "db-1.db.default.svc.cluster.local. A 10.244.1.6"}
	if got := rrs(noOPT); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("additional section: %v", got)
	}
}

func TestTruncationAndEDNS(t *testing.T) {
	srv, _ := startServer(t, nil)
	udp := query(t, srv.Addr, "udp", "big.default.svc.cluster.local.", mdns.TypeA, false)
	if !udp.Truncated {
		t.Fatalf("100 A records over plain UDP must truncate (got %d answers)", len(udp.Answer))
	}
	udp.Compress = true // as it went on the wire
	if l := udp.Len(); l > mdns.MinMsgSize {
		t.Fatalf("UDP answer of %d bytes exceeds 512", l)
	}
	edns := query(t, srv.Addr, "udp", "big.default.svc.cluster.local.", mdns.TypeA, true)
	if edns.IsEdns0() == nil {
		t.Fatal("EDNS0 query answered without OPT")
	}
	if len(edns.Answer) <= len(udp.Answer) {
		t.Fatalf("EDNS0 answer (%d records) no larger than plain UDP (%d)", len(edns.Answer), len(udp.Answer))
	}
	tcp := query(t, srv.Addr, "tcp", "big.default.svc.cluster.local.", mdns.TypeA, false)
	if tcp.Truncated || len(tcp.Answer) != 100 {
		t.Fatalf("TCP answer: truncated=%v answers=%d", tcp.Truncated, len(tcp.Answer))
	}
}

func TestForwardCacheAndFailure(t *testing.T) {
	up, count := fakeUpstream(t)
	srv, _ := startServer(t, []string{up})
	for i := 0; i < 3; i++ {
		if resp := query(t, srv.Addr, "udp", "cached.example.", mdns.TypeA, false); len(resp.Answer) != 1 {
			t.Fatalf("forwarded answer: %v", resp)
		}
	}
	if n := count.Load(); n != 1 {
		t.Fatalf("upstream asked %d times for one name within its TTL, want 1", n)
	}
	// An upstream that does not answer: SERVFAIL, not a hang.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	srv2, _ := startServer(t, []string{dead.LocalAddr().String()})
	resp := query(t, srv2.Addr, "udp", "nowhere.example.", mdns.TypeA, false)
	if resp.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("dead upstream: rcode %s", mdns.RcodeToString[resp.Rcode])
	}
}

func TestBadInput(t *testing.T) {
	srv, _ := startServer(t, nil)
	conn, err := net.Dial("udp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	good := new(mdns.Msg)
	good.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	packed, _ := good.Pack()
	for _, junk := range [][]byte{{}, {0x12}, packed[:7], packed[:len(packed)-3], []byte(strings.Repeat("\xff", 600))} {
		_, _ = conn.Write(junk)
	}
	// Unknown class, a huge name, several questions, a non-query opcode.
	chaos := new(mdns.Msg)
	chaos.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	c := &mdns.Client{Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(chaos, srv.Addr)
	if err != nil || resp.Rcode != mdns.RcodeRefused {
		t.Fatalf("CHAOS class: %v %v", err, resp)
	}
	long := new(mdns.Msg)
	long.SetQuestion(strings.Repeat("a.", 115)+"svc.cluster.local.", mdns.TypeA) // 248 bytes: long but legal
	if resp, _, err := c.Exchange(long, srv.Addr); err != nil || resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("long name: %v %v", err, resp)
	}
	huge := new(mdns.Msg)
	huge.SetQuestion(strings.Repeat("a.", 130)+"svc.cluster.local.", mdns.TypeA) // over 255 bytes
	if resp, _, err := c.Exchange(huge, srv.Addr); err == nil && resp.Rcode != mdns.RcodeFormatError {
		t.Fatalf("over-long name: want FORMERR or no answer, got %v", resp)
	}
	two := new(mdns.Msg)
	two.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	if resp, _, err := c.Exchange(two, srv.Addr); err != nil || resp.Rcode != mdns.RcodeFormatError {
		t.Fatalf("two questions: %v %v", err, resp)
	}
	notify := new(mdns.Msg)
	notify.SetNotify("cluster.local.")
	if resp, _, err := c.Exchange(notify, srv.Addr); err != nil || resp.Rcode != mdns.RcodeNotImplemented {
		t.Fatalf("NOTIFY: %v %v", err, resp)
	}
	// Still serving after all that.
	if resp := query(t, srv.Addr, "udp", "web.default.svc.cluster.local.", mdns.TypeA, false); len(resp.Answer) != 1 {
		t.Fatalf("server broken after bad input: %v", resp)
	}
}

func FuzzAnswer(f *testing.F) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	for _, name := range []string{"web.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local.", "10-1-2-3.x.pod.cluster.local.", "5.1.244.10.in-addr.arpa."} {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		m.SetEdns0(1232, true)
		data, _ := m.Pack()
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(mdns.Msg)
		if err := m.Unpack(data); err != nil {
			return
		}
		if resp := h.Answer(m, true); resp != nil {
			if _, err := resp.Pack(); err != nil {
				t.Fatalf("answer does not pack: %v", err)
			}
		}
	})
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig (dnsutils) is not installed; make test installs it")
	}
	srv, _ := startServer(t, nil)
	host, port, _ := net.SplitHostPort(srv.Addr)
	for _, c := range []struct{ args, want string }{
		{"web.default.svc.cluster.local A +short", "10.96.0.20"},
		{"alias.default.svc.cluster.local A +short +tcp", "web.default.svc.cluster.local.\n10.96.0.20"},
		{"_http._tcp.web.default.svc.cluster.local SRV +short", "0 100 80 web.default.svc.cluster.local."},
		{"-x 10.96.0.20 +short", "web.default.svc.cluster.local."},
	} {
		args := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, strings.Fields(c.args)...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Fatalf("dig %s: %v\n%s\nwant:\n%s", c.args, err, out, c.want)
		}
	}
	out, _ := exec.Command(dig, "@"+host, "-p", port, "+time=2", "+tries=1", "nope.default.svc.cluster.local").CombinedOutput()
	if !strings.Contains(string(out), "status: NXDOMAIN") || !strings.Contains(string(out), "SOA") {
		t.Fatalf("dig NXDOMAIN:\n%s", out)
	}
}

// TestFollowsInformers drives the snapshot from a (fake) clientset: a new
// Service answers soon after the API event.
func TestFollowsInformers(t *testing.T) {
	cs := fake.NewSimpleClientset()
	h := NewHandler("cluster.local", nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Watch(ctx, cs, "cluster.local", h, NewMetrics(nil)); err != nil {
		t.Fatal(err)
	}
	q := new(mdns.Msg)
	q.SetQuestion("late.default.svc.cluster.local.", mdns.TypeA)
	if resp := h.Answer(q, true); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("before create: %v", resp)
	}
	start := time.Now()
	_, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.3.3", ClusterIPs: []string{"10.96.3.3"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if resp := h.Answer(q, true); len(resp.Answer) == 1 {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("new Service never answered")
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("Service answered %s after create", time.Since(start))
}

// TestFastPathMatchesSlowPath packs the same queries through the fast path
// and through miekg/dns and the full handler: the replies must be the same.
func TestFastPathMatchesSlowPath(t *testing.T) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	names := []string{"web.default.svc.cluster.local.", "Web.DEFAULT.svc.cluster.local.", "db.default.svc.cluster.local.",
		"db-0.db.default.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local.", "_http._tcp.web.default.svc.cluster.local.",
		"alias.default.svc.cluster.local.", "ext.default.svc.cluster.local.", "nope.default.svc.cluster.local.", "default.svc.cluster.local.",
		"20.0.96.10.in-addr.arpa.", "dns-version.cluster.local.", "empty.default.svc.cluster.local."}
	types := []uint16{mdns.TypeA, mdns.TypeAAAA, mdns.TypeSRV, mdns.TypeTXT, mdns.TypePTR, mdns.TypeCNAME}
	var sc fastScratch
	out := make([]byte, 4096)
	fast := 0
	for _, name := range names {
		for _, qt := range types {
			for _, edns := range []bool{false, true} {
				q := new(mdns.Msg)
				q.SetQuestion(name, qt)
				q.Id = 4242
				if edns {
					q.SetEdns0(1232, true)
				}
				pkt, _ := q.Pack()
				n := h.FastAnswer(pkt, out, &sc)
				if n == 0 {
					continue
				}
				fast++
				got := new(mdns.Msg)
				if err := got.Unpack(out[:n]); err != nil {
					t.Fatalf("%s %s: fast reply does not unpack: %v", name, mdns.TypeToString[qt], err)
				}
				want := h.Answer(q, true)
				if got.String() != want.String() {
					t.Fatalf("%s %s edns=%v:\nfast:\n%s\nslow:\n%s", name, mdns.TypeToString[qt], edns, got, want)
				}
			}
		}
	}
	if fast < len(names)*4 {
		t.Fatalf("fast path answered only %d queries", fast)
	}
}

func BenchmarkFastAnswer(b *testing.B) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	q := new(mdns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	pkt, _ := q.Pack()
	out := make([]byte, 4096)
	var sc fastScratch
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if h.FastAnswer(pkt, out, &sc) == 0 {
			b.Fatal("slow path")
		}
	}
}

func BenchmarkSlowAnswer(b *testing.B) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	q := new(mdns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	pkt, _ := q.Pack()
	out := make([]byte, 4096)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if h.slowAnswer(pkt, out) == 0 {
			b.Fatal("no answer")
		}
	}
}

// answerPacket answers pkt as the UDP server does: the fast path first, then
// miekg/dns.
func answerPacket(t *testing.T, h *Handler, pkt []byte) (reply *mdns.Msg, fast bool) {
	t.Helper()
	var sc fastScratch
	out := make([]byte, 4096)
	n := h.FastAnswer(pkt, out, &sc)
	fast = n > 0
	if !fast {
		n = h.slowAnswer(pkt, out)
	}
	if n == 0 {
		t.Fatal("no reply")
	}
	reply = new(mdns.Msg)
	if err := reply.Unpack(out[:n]); err != nil {
		t.Fatalf("reply does not unpack: %v", err)
	}
	return reply, fast
}

// TestEDNSVersionAndOPTCount: RFC 6891 §6.1.1 and §6.1.3 — a query with an
// OPT of a version we do not speak gets BADVERS (extended rcode 16) with an
// OPT of version 0, one with more than one OPT gets FORMERR; on the packet
// path (fast path and miekg/dns behind it) and on the handler (TCP), for
// cluster names, negative answers and forwarded names alike.
func TestEDNSVersionAndOPTCount(t *testing.T) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	// Warm the fast path's packed answers, as earlier queries would have.
	for _, name := range []string{"web.default.svc.cluster.local.", "nope.default.svc.cluster.local."} {
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		q.SetEdns0(1232, false)
		pkt, _ := q.Pack()
		answerPacket(t, h, pkt)
	}
	withOPT := func(versions ...uint8) func(*mdns.Msg) {
		return func(m *mdns.Msg) {
			for _, v := range versions {
				o := &mdns.OPT{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeOPT}}
				o.SetUDPSize(1232)
				o.SetVersion(v)
				m.Extra = append(m.Extra, o)
			}
		}
	}
	rows := []struct {
		name     string
		edit     func(*mdns.Msg)
		rcode    int
		optVer   int // -1: no OPT in the reply
		answered bool
	}{
		{"version 0", withOPT(0), mdns.RcodeSuccess, 0, true},
		{"version 5", withOPT(5), mdns.RcodeBadVers, 0, false},
		{"version 1", withOPT(1), mdns.RcodeBadVers, 0, false},
		{"two OPTs", withOPT(0, 0), mdns.RcodeFormatError, -1, false},
		{"two OPTs, one new", withOPT(0, 5), mdns.RcodeFormatError, -1, false},
	}
	for _, qname := range []string{"web.default.svc.cluster.local.", "nope.default.svc.cluster.local.", "example.com."} {
		for _, row := range rows {
			if row.answered && qname != "web.default.svc.cluster.local." {
				continue
			}
			t.Run(qname+" "+row.name, func(t *testing.T) {
				q := new(mdns.Msg)
				q.SetQuestion(qname, mdns.TypeA)
				q.Id = 777
				row.edit(q)
				pkt, err := q.Pack()
				if err != nil {
					t.Fatal(err)
				}
				check := func(path string, m *mdns.Msg) {
					t.Helper()
					if m.Id != 777 || !m.Response {
						t.Fatalf("%s: not a reply to the query: %v", path, m)
					}
					if m.Rcode != row.rcode {
						t.Fatalf("%s: rcode %s, want %s:\n%v", path, mdns.RcodeToString[m.Rcode], mdns.RcodeToString[row.rcode], m)
					}
					opt := m.IsEdns0()
					switch {
					case row.optVer < 0 && opt != nil:
						t.Fatalf("%s: an OPT in the reply: %v", path, m)
					case row.optVer >= 0 && (opt == nil || int(opt.Version()) != row.optVer):
						t.Fatalf("%s: want an OPT of version %d: %v", path, row.optVer, m)
					}
					if row.answered != (len(m.Answer) > 0) {
						t.Fatalf("%s: answers %v, want answered=%v", path, m.Answer, row.answered)
					}
				}
				got, _ := answerPacket(t, h, pkt)
				check("packet", got)
				// The handler (TCP, miekg/dns's server), through the wire.
				m := h.Answer(q, false)
				if m == nil {
					t.Fatal("handler dropped the query")
				}
				data, err := m.Pack()
				if err != nil {
					t.Fatalf("handler's reply does not pack: %v", err)
				}
				back := new(mdns.Msg)
				if err := back.Unpack(data); err != nil {
					t.Fatal(err)
				}
				check("handler", back)
			})
		}
	}
}

// TestBadversCounted: the UDP server's metrics read the rcode from the reply
// packet; BADVERS (16) keeps its upper bits in the OPT, so it must not be
// counted as NOERROR (its header's four bits).
func TestBadversCounted(t *testing.T) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	q := new(mdns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(5)
	pkt, _ := q.Pack()
	out := make([]byte, 4096)
	n := h.slowAnswer(pkt, out)
	m.count(out[:n])
	if got := requestsCounted(t, reg, "A", "NOERROR"); got != 0 {
		t.Errorf("BADVERS counted as NOERROR")
	}
	if got := requestsCounted(t, reg, "A", "other"); got != 1 {
		t.Errorf("BADVERS counted %v times as other, want 1", got)
	}
	// An answer with an OPT stays NOERROR.
	q.IsEdns0().SetVersion(0)
	pkt, _ = q.Pack()
	var sc fastScratch
	n = h.FastAnswer(pkt, out, &sc)
	m.count(out[:n])
	if got := requestsCounted(t, reg, "A", "NOERROR"); got != 1 {
		t.Errorf("an answer with an OPT counted %v times as NOERROR, want 1", got)
	}
}

// requestsCounted reads petrel_dns_requests_total{type,rcode} from reg.
func requestsCounted(t *testing.T, reg *prometheus.Registry, typ, rcode string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "petrel_dns_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["type"] == typ && labels["rcode"] == rcode {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// FuzzFastAnswer feeds raw packets to the fast path, which parses them by
// hand: it must never read or write out of bounds, and whatever it answers
// must unpack and say what the slow path (miekg/dns) says.
func FuzzFastAnswer(f *testing.F) {
	h := NewHandler("cluster.local", nil, nil)
	h.Swap(sampleSnapshot())
	for _, name := range []string{"web.default.svc.cluster.local.", "Web.DEFAULT.svc.cluster.local.", "_pg._tcp.db.default.svc.cluster.local.", "nope.default.svc.cluster.local.", "20.0.96.10.in-addr.arpa."} {
		for _, edns := range []bool{false, true} {
			q := new(mdns.Msg)
			q.SetQuestion(name, mdns.TypeA)
			if edns {
				q.SetEdns0(1232, true)
			}
			pkt, _ := q.Pack()
			f.Add(pkt)
		}
	}
	var sc fastScratch
	out := make([]byte, 4096)
	f.Fuzz(func(t *testing.T, pkt []byte) {
		n := h.FastAnswer(pkt, out, &sc)
		if n == 0 {
			return
		}
		if n < 0 || n > len(out) {
			t.Fatalf("reply length %d", n)
		}
		q := new(mdns.Msg)
		if err := q.Unpack(pkt); err != nil {
			// The fast path answers only what it parsed as one question;
			// miekg/dns may still refuse trailing sections it does not
			// read. The reply must at least unpack.
			if err := new(mdns.Msg).Unpack(out[:n]); err != nil {
				t.Fatalf("fast reply to an unparsable query does not unpack: %v", err)
			}
			return
		}
		got := new(mdns.Msg)
		if err := got.Unpack(out[:n]); err != nil {
			t.Fatalf("fast reply does not unpack: %v", err)
		}
		if got.Id != q.Id || got.Rcode != h.Answer(q, true).Rcode {
			t.Fatalf("fast reply %v\nto %v\ndiffers from the slow path's %v", got, q, h.Answer(q, true))
		}
	})
}
