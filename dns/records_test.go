package dns

import (
	"context"
	"fmt"
	"math/rand"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
)

// randomService is one of a few shapes of Service, in one of two
// namespaces, with slices whose addresses (and so reverse names) other
// Services may share.
func randomService(r *rand.Rand, i int) (*ServiceInfo, []*EndpointInfo) {
	ns := []string{"default", "other"}[r.Intn(2)]
	svc := &ServiceInfo{Name: fmt.Sprintf("s%d", i), Namespace: ns, Type: corev1.ServiceTypeClusterIP}
	switch r.Intn(4) {
	case 0:
		svc.Type = corev1.ServiceTypeExternalName
		svc.ExternalName = []string{"example.com", fmt.Sprintf("s%d.default.svc.cluster.local", r.Intn(6))}[r.Intn(2)]
		return svc, nil
	case 1, 2:
		svc.ClusterIPs = []string{fmt.Sprintf("10.96.0.%d", r.Intn(4)+1)} // shared now and then: PTR claimed twice
		svc.Ports = []corev1.ServicePort{{Name: "http", Port: int32(80 + r.Intn(2)), Protocol: corev1.ProtocolTCP}}
		return svc, nil
	}
	svc.ClusterIPs = []string{corev1.ClusterIPNone}
	var eps []discoveryv1.Endpoint
	for j := r.Intn(4); j > 0; j-- {
		ep := discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.0.%d", r.Intn(6)+1)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(r.Intn(4) > 0)}}
		if r.Intn(2) == 0 {
			ep.Hostname = ptr(fmt.Sprintf("h%d", r.Intn(3)))
		}
		eps = append(eps, ep)
	}
	return svc, []*EndpointInfo{{Service: svc.Name, Namespace: ns, AddressType: discoveryv1.AddressTypeIPv4, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: ptr("pg"), Port: ptr(int32(5432)), Protocol: ptr(corev1.ProtocolTCP)}}}}
}

// TestIncrementalMatchesFullBuild changes Services one at a time in a
// snapshot whose answers (and the fast path's packed answers) are kept warm,
// and checks after each change that every name answers as a snapshot built
// whole from the same Services does.
func TestIncrementalMatchesFullBuild(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	type entry struct {
		svc    *ServiceInfo
		slices []*EndpointInfo
	}
	state := map[int]entry{}
	inc := NewHandler("cluster.local", nil, nil)
	snap := NewSnapshot("cluster.local")
	inc.Swap(snap)

	var names []string
	for i := 0; i < 6; i++ {
		for _, ns := range []string{"default", "other"} {
			fqdn := fmt.Sprintf("s%d.%s.svc.cluster.local.", i, ns)
			names = append(names, fqdn, "_http._tcp."+fqdn, "_pg._tcp."+fqdn, "_tcp."+fqdn, "nope."+fqdn)
			for j := 0; j < 3; j++ {
				names = append(names, fmt.Sprintf("h%d.%s", j, fqdn))
			}
			for j := 1; j <= 6; j++ {
				names = append(names, fmt.Sprintf("10-244-0-%d.%s", j, fqdn))
			}
		}
	}
	names = append(names, "default.svc.cluster.local.", "other.svc.cluster.local.", "svc.cluster.local.", "dns-version.cluster.local.")
	for j := 1; j <= 6; j++ {
		names = append(names, fmt.Sprintf("%d.0.96.10.in-addr.arpa.", j), fmt.Sprintf("%d.0.244.10.in-addr.arpa.", j))
	}
	types := []uint16{mdns.TypeA, mdns.TypeSRV, mdns.TypePTR, mdns.TypeCNAME, mdns.TypeTXT}

	var sc fastScratch
	out := make([]byte, 4096)
	for step := 0; step < 150; step++ {
		i := r.Intn(6)
		if old, ok := state[i]; ok && r.Intn(3) == 0 {
			delete(state, i)
			snap.DeleteService(old.svc.Namespace, old.svc.Name)
		} else {
			if ok {
				// A Service keeps its namespace; one in another is another Service.
				snap.DeleteService(old.svc.Namespace, old.svc.Name)
			}
			svc, slices := randomService(r, i)
			state[i] = entry{svc, slices}
			snap.SetService(svc, slices)
		}
		var svcs []*ServiceInfo
		var slices []*EndpointInfo
		for _, e := range state {
			svcs = append(svcs, e.svc)
			slices = append(slices, e.slices...)
		}
		full := NewHandler("cluster.local", nil, nil)
		full.Swap(BuildSnapshot("cluster.local", svcs, slices))
		for _, name := range names {
			for _, qt := range types {
				q := new(mdns.Msg)
				q.SetQuestion(name, qt)
				q.Id = 7
				want := full.Answer(q, true).String()
				if got := inc.Answer(q, true).String(); got != want {
					t.Fatalf("step %d, %s %s:\nincremental:\n%s\nfull build:\n%s", step, name, mdns.TypeToString[qt], got, want)
				}
				pkt, _ := q.Pack()
				if n := inc.FastAnswer(pkt, out, &sc); n > 0 {
					got := new(mdns.Msg)
					if err := got.Unpack(out[:n]); err != nil {
						t.Fatalf("step %d, %s: fast reply does not unpack: %v", step, name, err)
					}
					if got.String() != want {
						t.Fatalf("step %d, %s %s:\nfast path (packed before a change?):\n%s\nfull build:\n%s", step, name, mdns.TypeToString[qt], got, want)
					}
				}
			}
		}
	}
}

// TestWatchFollowsEachService drives Watch through Service and slice
// changes: a headless Service gains and loses endpoints, and deleting the
// namespace's last Service makes the namespace's name NXDOMAIN.
func TestWatchFollowsEachService(t *testing.T) {
	cs := fake.NewSimpleClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := NewHandler("cluster.local", nil, nil)
	m := NewMetrics(nil)
	if _, err := cs.CoreV1().Services("apps").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "apps"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone}}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Watch(ctx, cs, "cluster.local", h, m); err != nil {
		t.Fatal(err)
	}
	answer := func(name string) *mdns.Msg {
		q := new(mdns.Msg)
		q.SetQuestion(name, mdns.TypeA)
		return h.Answer(q, true)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("never: %s", what)
			}
		}
	}
	if r := answer("db.apps.svc.cluster.local."); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("headless Service without endpoints: %v", r)
	}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "db-1", Namespace: "apps", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.9.1"}, Hostname: ptr("db-0")}}}
	if _, err := cs.DiscoveryV1().EndpointSlices("apps").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the slice's endpoint answers", func() bool { return len(answer("db-0.db.apps.svc.cluster.local.").Answer) == 1 })
	if err := cs.DiscoveryV1().EndpointSlices("apps").Delete(ctx, "db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the endpoint's name goes with its slice", func() bool { return answer("db-0.db.apps.svc.cluster.local.").Rcode == mdns.RcodeNameError })
	if err := cs.CoreV1().Services("apps").Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the namespace's name goes with its last Service", func() bool { return answer("apps.svc.cluster.local.").Rcode == mdns.RcodeNameError })
	if r := answer("db.apps.svc.cluster.local."); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("deleted Service: %v", r)
	}
}

// BenchmarkSetService rebuilds one Service among n others: the cost must
// not grow with n (a whole rebuild per change did).
func BenchmarkSetService(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			snap := NewSnapshot("cluster.local")
			svc := func(i int) *ServiceInfo {
				return &ServiceInfo{Name: fmt.Sprintf("svc-%d", i), Namespace: "bench", Type: corev1.ServiceTypeClusterIP,
					ClusterIPs: []string{fmt.Sprintf("10.96.%d.%d", i>>8, i&255)},
					Ports:      []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}
			}
			for i := 0; i < n; i++ {
				snap.SetService(svc(i), nil)
			}
			s := svc(n / 2)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				snap.SetService(s, nil)
			}
		})
	}
}

// TestWatchSharedAfterProxy watches informers another user (the node's
// proxy) indexed, started and synced first, as petrel node does: the
// Services already there answer, and later changes follow.
func TestWatchSharedAfterProxy(t *testing.T) {
	cs := fake.NewSimpleClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"}}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory := informers.NewSharedInformerFactory(cs, 0)
	if err := sliceindex.Add(factory.Discovery().V1().EndpointSlices().Informer()); err != nil {
		t.Fatal(err)
	}
	factory.Core().V1().Services().Informer()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	h := NewHandler("cluster.local", nil, nil)
	if err := WatchShared(ctx, factory, "cluster.local", h, NewMetrics(nil)); err != nil {
		t.Fatal(err)
	}
	q := new(mdns.Msg)
	q.SetQuestion("web.default.svc.cluster.local.", mdns.TypeA)
	if r := h.Answer(q, true); len(r.Answer) != 1 {
		t.Fatalf("Service there before the DNS started: %v", r)
	}
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); h.Answer(q, true).Rcode != mdns.RcodeNameError; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("deleted Service still answers")
		}
	}
}

// TestInputVersions: a Service's records are rebuilt when the objects they
// read change, and only then; a cluster IP's records do not read slices.
func TestInputVersions(t *testing.T) {
	svc := func(rv string, ips ...string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n", ResourceVersion: rv},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIPs: ips}}
	}
	slice := func(name, rv string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "n", ResourceVersion: rv}}
	}
	if readsSlices(svc("1", "10.96.0.1")) || !readsSlices(svc("1", corev1.ClusterIPNone)) || !readsSlices(svc("1")) {
		t.Fatal("readsSlices: only headless Services read their slices")
	}
	a, ok1 := inputVersions(svc("1"), []*discoveryv1.EndpointSlice{slice("a", "2"), slice("b", "3")})
	b, ok2 := inputVersions(svc("1"), []*discoveryv1.EndpointSlice{slice("b", "3"), slice("a", "2")})
	c, _ := inputVersions(svc("1"), []*discoveryv1.EndpointSlice{slice("a", "2"), slice("b", "4")})
	d, _ := inputVersions(svc("5"), []*discoveryv1.EndpointSlice{slice("a", "2"), slice("b", "3")})
	if !ok1 || !ok2 || a != b || a == c || a == d {
		t.Fatalf("versions: %q %q %q %q", a, b, c, d)
	}
	if _, ok := inputVersions(svc(""), nil); ok {
		t.Fatal("a Service without a version must always be rebuilt")
	}
	if _, ok := inputVersions(svc("1"), []*discoveryv1.EndpointSlice{slice("a", "")}); ok {
		t.Fatal("a slice without a version must always rebuild its Service")
	}
}
