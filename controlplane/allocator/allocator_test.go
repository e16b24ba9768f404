package allocator

import (
	"context"
	"fmt"
	"net"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/test/cluster"
)

// freeURL is a loopback URL on a port no other caller in this test binary
// got (two URLs of one etcd must differ).
func freeURL(t *testing.T) string {
	return fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t))
}

func newAllocator(t *testing.T, cidr string, lo, hi int) *ServiceAllocator {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := etcd.Start(ctx, etcd.Config{DataDir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); b.Close() })
	_, n, _ := net.ParseCIDR(cidr)
	a, err := New(b.Client, n, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func svc(name string, typ corev1.ServiceType) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "d"},
		Spec: corev1.ServiceSpec{Type: typ, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

func TestNeverTwiceAndExhaustion(t *testing.T) {
	a := newAllocator(t, "10.96.0.0/28", 30000, 30004) // 14 usable addresses, 5 ports
	ctx := context.Background()
	ips, ports := map[string]bool{}, map[int32]bool{}
	for i := 0; i < 5; i++ {
		s := svc(fmt.Sprintf("s%d", i), corev1.ServiceTypeNodePort)
		if _, err := a.BeforeCreate(ctx, s, false); err != nil {
			t.Fatal(err)
		}
		if ips[s.Spec.ClusterIP] || ports[s.Spec.Ports[0].NodePort] {
			t.Fatalf("handed out twice: %s %d", s.Spec.ClusterIP, s.Spec.Ports[0].NodePort)
		}
		ips[s.Spec.ClusterIP], ports[s.Spec.Ports[0].NodePort] = true, true
	}
	if _, err := a.BeforeCreate(ctx, svc("one-too-many", corev1.ServiceTypeNodePort), false); err == nil {
		t.Fatal("a sixth NodePort from a range of five")
	}
	// The failed create released the address it had taken: 9 remain for ClusterIP services.
	for i := 0; i < 9; i++ {
		if _, err := a.BeforeCreate(ctx, svc(fmt.Sprintf("c%d", i), corev1.ServiceTypeClusterIP), false); err != nil {
			t.Fatalf("address %d of the remaining 9: %v", i, err)
		}
	}
	if _, err := a.BeforeCreate(ctx, svc("full", corev1.ServiceTypeClusterIP), false); err == nil {
		t.Fatal("an address from a full range")
	}
}

func TestRepairFreesLeaksOnly(t *testing.T) {
	a := newAllocator(t, "10.96.0.0/24", 30000, 30100)
	ctx := context.Background()
	leaked := svc("leaked", corev1.ServiceTypeNodePort)
	kept := svc("kept", corev1.ServiceTypeNodePort)
	for _, s := range []*corev1.Service{leaked, kept} {
		if _, err := a.BeforeCreate(ctx, s, false); err != nil {
			t.Fatal(err)
		}
	}
	// "kept" is not in the list (another server is creating it) but reads fresh.
	lookup := func(_ context.Context, ns, name string) (*corev1.Service, error) {
		if name == "kept" {
			return kept, nil
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "services"}, name)
	}
	if err := a.Repair(ctx, nil, lookup); err != nil {
		t.Fatal(err)
	}
	again := svc("again", corev1.ServiceTypeNodePort)
	again.Spec.ClusterIP = leaked.Spec.ClusterIP
	again.Spec.Ports[0].NodePort = leaked.Spec.Ports[0].NodePort
	if _, err := a.BeforeCreate(ctx, again, false); err != nil {
		t.Fatalf("leaked allocation not freed: %v", err)
	}
	steal := svc("steal", corev1.ServiceTypeNodePort)
	steal.Spec.ClusterIP = kept.Spec.ClusterIP
	if _, err := a.BeforeCreate(ctx, steal, false); err == nil {
		t.Fatal("repair freed an allocation its Service still holds")
	}
}
