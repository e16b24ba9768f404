package ingressstatus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// With --ingress-service NAMESPACE/NAME the Ingresses' address is that of a
// LoadBalancer Service instead of the nodes': the controller keeps the
// Service (ports 80 and 443, no selector) and an EndpointSlice of it that
// lists the Ready nodes, whose ingress listens on those ports (the node's
// defaults). The load balancer controller gives the Service an address
// from --lb-pool, the nodes forward it as any Service's, and that address
// goes into every Petrel Ingress's status — as k3s reports its Traefik
// Service's address.

// Ports the ingress Service forwards: the node's default ingress ports.
const (
	ingressHTTPPort  = 80
	ingressHTTPSPort = 443
)

// managedBy marks the Service and EndpointSlice this controller keeps.
const managedBy = "petrel-ingress"

// ParseService splits --ingress-service's NAMESPACE/NAME.
func ParseService(s string) (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(s, "/")
	if !ok || namespace == "" || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("--ingress-service %q: want NAMESPACE/NAME (kube-system/petrel-ingress, say)", s)
	}
	return namespace, name, nil
}

// ingressService is the Service the controller keeps.
func (c *Controller) ingressService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: c.svcName, Namespace: c.svcNamespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": managedBy}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: ingressHTTPPort, TargetPort: intstr.FromInt32(ingressHTTPPort)},
			{Name: "https", Protocol: corev1.ProtocolTCP, Port: ingressHTTPSPort, TargetPort: intstr.FromInt32(ingressHTTPSPort)},
		}},
	}
}

// ensureService makes the Service if it is missing and keeps its
// EndpointSlice listing the Ready nodes.
func (c *Controller) ensureService(ctx context.Context) error {
	svc, err := c.services.Services(c.svcNamespace).Get(c.svcName)
	if apierrors.IsNotFound(err) {
		svc, err = c.client.CoreV1().Services(c.svcNamespace).Create(ctx, c.ingressService(), metav1.CreateOptions{FieldManager: managedBy})
		if apierrors.IsAlreadyExists(err) {
			return nil // the informer brings it, and another sync
		}
	}
	if err != nil {
		return fmt.Errorf("ingress service %s/%s: %w", c.svcNamespace, c.svcName, err)
	}
	want := c.nodeSlice(svc)
	cur, err := c.slices.EndpointSlices(c.svcNamespace).Get(want.Name)
	switch {
	case apierrors.IsNotFound(err):
		_, err = c.client.DiscoveryV1().EndpointSlices(c.svcNamespace).Create(ctx, want, metav1.CreateOptions{FieldManager: managedBy})
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	case err != nil:
	case !equality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) || !equality.Semantic.DeepEqual(cur.Ports, want.Ports):
		upd := cur.DeepCopy()
		upd.Endpoints, upd.Ports = want.Endpoints, want.Ports
		_, err = c.client.DiscoveryV1().EndpointSlices(c.svcNamespace).Update(ctx, upd, metav1.UpdateOptions{FieldManager: managedBy})
	}
	if err != nil {
		return fmt.Errorf("endpoints of ingress service %s/%s: %w", c.svcNamespace, c.svcName, err)
	}
	return nil
}

// nodeSlice is the EndpointSlice of the ingress Service: one ready endpoint
// per Ready node, at its InternalIP.
func (c *Controller) nodeSlice(svc *corev1.Service) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: c.svcName + "-nodes", Namespace: c.svcNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: c.svcName, discoveryv1.LabelManagedBy: managedBy},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(ingressHTTPPort))},
			{Name: ptr.To("https"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(ingressHTTPSPort))},
		},
	}
	for _, n := range c.readyNodes() {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{n.ip}, NodeName: ptr.To(n.name),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
	}
	return es
}

// serviceAddresses are the addresses the load balancer controller gave the
// ingress Service (none until it has).
func (c *Controller) serviceAddresses() []string {
	svc, err := c.services.Services(c.svcNamespace).Get(c.svcName)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range svc.Status.LoadBalancer.Ingress {
		if a.IP != "" {
			out = append(out, a.IP)
		}
	}
	slices.Sort(out)
	return out
}
