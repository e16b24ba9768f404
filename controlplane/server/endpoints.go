package server

import (
	"context"
	"fmt"
	"net"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
)

// advertiseAddress is the address other machines (and the node proxies)
// reach this API server at: the bind address, or the default route's source.
func advertiseAddress(bind string) string {
	if ip := net.ParseIP(bind); ip != nil && !ip.IsUnspecified() {
		return ip.String()
	}
	// A UDP "connection" sends nothing; it only picks the route's source.
	c, err := net.Dial("udp4", "192.0.2.1:9")
	if err != nil {
		return "127.0.0.1"
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String()
}

// publishEndpoints adds this server to the endpoints of the kubernetes
// Service (an EndpointSlice and the legacy Endpoints), so that pods reach the
// API at 10.96.0.1:443 through the node's proxy. Servers sharing one etcd each
// add themselves.
func publishEndpoints(ctx context.Context, cs kubernetes.Interface, address string, port int32) error {
	esClient := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		es, err := esClient.Get(ctx, "kubernetes", metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if create {
			es = &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault, Labels: map[string]string{
					discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "petrel-apiserver"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
			}
		} else if err != nil {
			return err
		}
		for _, e := range es.Endpoints {
			for _, a := range e.Addresses {
				if a == address {
					return nil
				}
			}
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{address},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}})
		if create {
			_, err = esClient.Create(ctx, es, metav1.CreateOptions{FieldManager: "petrel-apiserver"})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(discoveryv1.Resource("endpointslices"), "kubernetes", err)
			}
			return err
		}
		_, err = esClient.Update(ctx, es, metav1.UpdateOptions{FieldManager: "petrel-apiserver"})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubernetes EndpointSlice: %w", err)
	}
	endpoints := cs.CoreV1().Endpoints(metav1.NamespaceDefault)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ep, err := endpoints.Get(ctx, "kubernetes", metav1.GetOptions{})
		create := apierrors.IsNotFound(err)
		if create {
			ep = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault}}
		} else if err != nil {
			return err
		}
		changed := false
		// The EndpointSlice above is the kubernetes Service's own; without
		// skip-mirror the mirroring controller would copy these Endpoints into
		// a second one, kubernetes-mirror-0. Clusters made before the label
		// get it here, and the mirroring controller then removes that copy.
		if ep.Labels[discoveryv1.LabelSkipMirror] != "true" {
			if ep.Labels == nil {
				ep.Labels = map[string]string{}
			}
			ep.Labels[discoveryv1.LabelSkipMirror] = "true"
			changed = true
		}
		if len(ep.Subsets) == 0 {
			ep.Subsets = []corev1.EndpointSubset{{Ports: []corev1.EndpointPort{{Name: "https", Port: port, Protocol: corev1.ProtocolTCP}}}}
		}
		if !slices.ContainsFunc(ep.Subsets[0].Addresses, func(a corev1.EndpointAddress) bool { return a.IP == address }) {
			ep.Subsets[0].Addresses = append(ep.Subsets[0].Addresses, corev1.EndpointAddress{IP: address})
			changed = true
		}
		if !changed {
			return nil
		}
		if create {
			_, err = endpoints.Create(ctx, ep, metav1.CreateOptions{FieldManager: "petrel-apiserver"})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("endpoints"), "kubernetes", err)
			}
			return err
		}
		_, err = endpoints.Update(ctx, ep, metav1.UpdateOptions{FieldManager: "petrel-apiserver"})
		return err
	})
	if err != nil {
		return fmt.Errorf("kubernetes Endpoints: %w", err)
	}
	return nil
}
