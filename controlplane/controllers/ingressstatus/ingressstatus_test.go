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
	c, err := New(cs, factory, "")
	if err != nil {
		t.Fatal(err)
	}
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

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With --ingress-service the controller keeps a LoadBalancer Service whose
// endpoints are the Ready nodes, and the Ingresses get its address once the
// pool gives it one.
func TestIngressService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := New(fake.NewClientset(), informers.NewSharedInformerFactory(fake.NewClientset(), 0), "no-slash"); err == nil {
		t.Fatal("a service name without a namespace was taken")
	}
	cs := fake.NewClientset(node("n1", "198.51.100.11", true), node("n0", "198.51.100.10", true), node("n2", "203.0.113.12", false), Class(),
		&networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "shop"}})
	factory := informers.NewSharedInformerFactory(cs, 0)
	c, err := New(cs, factory, "kube-system/petrel-ingress")
	if err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	go c.Run(ctx)
	waitFor(t, "the ingress Service and its node endpoints", func() error {
		svc, err := cs.CoreV1().Services("kube-system").Get(ctx, "petrel-ingress", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 2 || svc.Spec.Selector != nil {
			return fmt.Errorf("service %+v", svc.Spec)
		}
		es, err := cs.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, "petrel-ingress-nodes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var ips []string
		for _, e := range es.Endpoints {
			ips = append(ips, e.Addresses...)
		}
		if fmt.Sprint(ips) != "[198.51.100.10 198.51.100.11]" || es.Labels["kubernetes.io/service-name"] != "petrel-ingress" {
			return fmt.Errorf("endpoints %v labels %v, want the two Ready nodes", ips, es.Labels)
		}
		return nil
	})
	got, _ := cs.NetworkingV1().Ingresses("web").Get(ctx, "shop", metav1.GetOptions{})
	if len(got.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("the nodes' addresses were written while the Service has none: %v", got.Status.LoadBalancer.Ingress)
	}
	svc, _ := cs.CoreV1().Services("kube-system").Get(ctx, "petrel-ingress", metav1.GetOptions{})
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.240"}}
	if _, err := cs.CoreV1().Services("kube-system").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the Service's address in the Ingress", func() error {
		got, _ := cs.NetworkingV1().Ingresses("web").Get(ctx, "shop", metav1.GetOptions{})
		if fmt.Sprint(got.Status.LoadBalancer.Ingress) != "[{203.0.113.240  []}]" {
			return fmt.Errorf("status %v", got.Status.LoadBalancer.Ingress)
		}
		return nil
	})
	// A node that stops being Ready leaves the Service's endpoints.
	n1, _ := cs.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
	n1.Status.Conditions[0].Status = corev1.ConditionFalse
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n1 out of the endpoints", func() error {
		es, _ := cs.DiscoveryV1().EndpointSlices("kube-system").Get(ctx, "petrel-ingress-nodes", metav1.GetOptions{})
		if len(es.Endpoints) != 1 || es.Endpoints[0].Addresses[0] != "198.51.100.10" {
			return fmt.Errorf("endpoints %+v", es.Endpoints)
		}
		return nil
	})
}
