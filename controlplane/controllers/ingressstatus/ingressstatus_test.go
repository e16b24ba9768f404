package ingressstatus

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
)

func node(name, ip string, ready bool) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}}}
}

// Ingresses of Petrel's class (by name, by its controller, or by default)
// get the Ready nodes' addresses; another controller's are left alone.
func TestStatus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ing := func(name string, class *string) *networkingv1.Ingress {
		return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name}, Spec: networkingv1.IngressSpec{IngressClassName: class}}
	}
	cs := fake.NewClientset(node("n1", "198.51.100.11", true), node("n0", "198.51.100.10", true), node("n2", "203.0.113.12", false),
		Class(), &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "mine"}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}},
		ing("default", nil), ing("named", ptr.To("petrel")), ing("other-name", ptr.To("mine")), ing("nginx", ptr.To("nginx")))
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory)
	factory.Start(ctx.Done())
	go c.Run(ctx)
	want := "[{198.51.100.10  []} {198.51.100.11  []}]"
	deadline := time.Now().Add(10 * time.Second)
	for _, name := range []string{"default", "named", "other-name"} {
		for {
			got, err := cs.NetworkingV1().Ingresses("web").Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got.Status.LoadBalancer.Ingress) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: status %v, want %s", name, got.Status.LoadBalancer.Ingress, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	got, _ := cs.NetworkingV1().Ingresses("web").Get(ctx, "nginx", metav1.GetOptions{})
	if len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("another controller's Ingress got %v", got.Status.LoadBalancer.Ingress)
	}
}
