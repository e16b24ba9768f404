package endpointslicemirroring

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func selectorless(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "https", Port: 443}}}}
}

func endpoints(name string, lbls map[string]string) *corev1.Endpoints {
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: lbls},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "198.51.100.1"}},
			Ports: []corev1.EndpointPort{{Name: "https", Port: 6443, Protocol: corev1.ProtocolTCP}}}}}
}

// syncOnce runs one sync of the key against a fake API holding objs, and
// returns the slices left.
func syncOnce(t *testing.T, key string, objs ...runtime.Object) []discoveryv1.EndpointSlice {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory)
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			t.Fatalf("%v did not sync", typ)
		}
	}
	if err := c.sync(ctx, key); err != nil {
		t.Fatal(err)
	}
	l, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// TestSkipMirrorRemovesStrayMirror: an Endpoints labelled skip-mirror (the
// kubernetes one) has no mirrored slice, and one made before the label came
// (clusters where it was missing) is removed.
func TestSkipMirrorRemovesStrayMirror(t *testing.T) {
	stray := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes-mirror-0", Namespace: "default",
		Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: ManagedBy}},
		AddressType: discoveryv1.AddressTypeIPv4}
	left := syncOnce(t, "default/kubernetes", selectorless("kubernetes"),
		endpoints("kubernetes", map[string]string{discoveryv1.LabelSkipMirror: "true"}), stray)
	if len(left) != 0 {
		t.Fatalf("slices left: %v", cache.MetaObjectToName(&left[0].ObjectMeta))
	}

	// The same without the label is mirrored: the test can see a mirror.
	left = syncOnce(t, "default/other", selectorless("other"), endpoints("other", nil))
	if len(left) != 1 || left[0].Name != "other-mirror-0" {
		t.Fatalf("slices = %v, want other-mirror-0", left)
	}
}
