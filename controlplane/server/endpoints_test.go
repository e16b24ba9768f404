package server

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestPublishEndpointsSkipsMirroring: the kubernetes Endpoints carries
// skip-mirror, as Kubernetes' does, so that the mirroring controller does not
// add kubernetes-mirror-0 beside the kubernetes EndpointSlice; a cluster made
// before gets the label at the next start, its address already there.
func TestPublishEndpointsSkipsMirroring(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, cs *fake.Clientset, wantAddrs int) {
		t.Helper()
		ep, err := cs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
			t.Fatalf("kubernetes Endpoints labels = %v, want %s=true", ep.Labels, discoveryv1.LabelSkipMirror)
		}
		if n := len(ep.Subsets[0].Addresses); n != wantAddrs {
			t.Fatalf("kubernetes Endpoints has %d addresses, want %d: %+v", n, wantAddrs, ep.Subsets)
		}
	}
	t.Run("new cluster", func(t *testing.T) {
		cs := fake.NewClientset()
		if err := publishEndpoints(ctx, cs, "198.51.100.1", 6443); err != nil {
			t.Fatal(err)
		}
		check(t, cs, 1)
		// A second server joins: both addresses, the label kept.
		if err := publishEndpoints(ctx, cs, "198.51.100.2", 6443); err != nil {
			t.Fatal(err)
		}
		check(t, cs, 2)
	})
	t.Run("existing cluster", func(t *testing.T) {
		old := &corev1.Endpoints{
			ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault, ResourceVersion: "5"},
			Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "198.51.100.1"}},
				Ports: []corev1.EndpointPort{{Name: "https", Port: 6443, Protocol: corev1.ProtocolTCP}}}},
		}
		cs := fake.NewClientset(old)
		if err := publishEndpoints(ctx, cs, "198.51.100.1", 6443); err != nil {
			t.Fatal(err)
		}
		check(t, cs, 1)
	})
}

// TestSetEndpointAddresses: the endpoints become exactly the live servers;
// a dead one's address goes from the EndpointSlice and the Endpoints.
func TestSetEndpointAddresses(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	for _, a := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3"} {
		if err := publishEndpoints(ctx, cs, a, 6443); err != nil {
			t.Fatal(err)
		}
	}
	if err := setEndpointAddresses(ctx, cs, []string{"198.51.100.3", "198.51.100.1"}); err != nil {
		t.Fatal(err)
	}
	es, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es.Endpoints {
		got = append(got, e.Addresses...)
	}
	if len(got) != 2 || got[0] != "198.51.100.1" || got[1] != "198.51.100.3" || *es.Ports[0].Port != 6443 {
		t.Fatalf("EndpointSlice = %v ports %v; want 198.51.100.1 and .3 on 6443", got, es.Ports)
	}
	ep, err := cs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := ep.Subsets[0].Addresses; len(a) != 2 || a[0].IP != "198.51.100.1" || a[1].IP != "198.51.100.3" {
		t.Fatalf("Endpoints addresses = %+v", a)
	}
}
