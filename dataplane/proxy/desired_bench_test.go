package proxy

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
)

// proxyWithServices is a Proxy whose listers hold n Services of one namespace,
// each with one EndpointSlice, as a bulk load leaves them.
func proxyWithServices(n int) *Proxy {
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, sliceindex.Indexers())
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("svc-%d", i)
		ip := fmt.Sprintf("10.96.%d.%d", i/250, 1+i%250)
		_ = svcs.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
				Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}})
		_ = slices.Add(&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.244.%d.%d", i/250, 1+i%250)}}}})
	}
	return &Proxy{svcLister: corelisters.NewServiceLister(svcs), slices: slices}
}

// The desired state of one Service must not cost more when other Services
// exist: a bulk load of 10,000 once took 11 ms per Service against 1 ms at
// 1,000, as each sync walked every EndpointSlice of the namespace.
func BenchmarkDesiredOneService(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			p := proxyWithServices(n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				want, slices := p.desired(fmt.Sprintf("default/svc-%d", i%n))
				if len(want) != 1 || len(slices) != 1 {
					b.Fatalf("desired: %d frontends from %d slices", len(want), len(slices))
				}
			}
		})
	}
}

// TestDesiredFindsSlicesByService: the index leads each Service to its own
// slices only, across namespaces.
func TestDesiredFindsSlicesByService(t *testing.T) {
	p := proxyWithServices(50)
	other := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "svc-3-1",
		Labels: map[string]string{discoveryv1.LabelServiceName: "svc-3"}}, AddressType: discoveryv1.AddressTypeIPv4}
	_ = p.slices.Add(other)
	_, slices := p.desired("default/svc-3")
	if len(slices) != 1 || slices[0].Namespace != "default" || slices[0].Name != "svc-3-1" {
		t.Fatalf("slices of default/svc-3: %v", slices)
	}
}
