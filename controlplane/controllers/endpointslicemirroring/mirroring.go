// Package endpointslicemirroring copies the Endpoints that users write for
// Services without a selector into EndpointSlices, which is what the node
// proxies and the DNS read: one slice per Endpoints subset (split at 100
// addresses), ready addresses ready and notReadyAddresses not.
package endpointslicemirroring

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
)

// ManagedBy marks mirrored slices, with Kubernetes' own value.
const ManagedBy = "endpointslicemirroring-controller.k8s.io"

// SkipMirrorLabel on an Endpoints object keeps it from being mirrored.
const SkipMirrorLabel = "endpointslice.kubernetes.io/skip-mirror"

const maxPerSlice = 100

// Controller mirrors Endpoints into EndpointSlices.
type Controller struct {
	client    kubernetes.Interface
	loop      *loop.Loop
	endpoints corelisters.EndpointsLister
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	// sliceInformer is indexed by Service (sliceindex).
	sliceInformer cache.SharedIndexInformer
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs}
	c.loop = loop.New("endpointslice mirroring", loop.Simple(c.sync))
	eInf, sInf, slInf := factory.Core().V1().Endpoints(), factory.Core().V1().Services(), factory.Discovery().V1().EndpointSlices()
	c.endpoints, c.services, c.slices = eInf.Lister(), sInf.Lister(), slInf.Lister()
	c.sliceInformer = slInf.Informer()
	if err := sliceindex.Add(c.sliceInformer); err != nil {
		panic(err) // only before the informer starts, which New is
	}
	c.loop.Synced(eInf.Informer().HasSynced, sInf.Informer().HasSynced, slInf.Informer().HasSynced)
	_, _ = eInf.Informer().AddEventHandler(c.loop.Handlers())
	_, _ = sInf.Informer().AddEventHandler(c.loop.Handlers())
	return c
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 1)
}

// content is what one mirrored slice holds.
type content struct {
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint
}

// desired turns an Endpoints object into slice contents.
func desired(ep *corev1.Endpoints) []content {
	var out []content
	for _, sub := range ep.Subsets {
		var ports []discoveryv1.EndpointPort
		for _, p := range sub.Ports {
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Port: ptr.To(p.Port), Protocol: ptr.To(p.Protocol), AppProtocol: p.AppProtocol})
		}
		var eps []discoveryv1.Endpoint
		add := func(a corev1.EndpointAddress, ready bool) {
			e := discoveryv1.Endpoint{Addresses: []string{a.IP},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
				NodeName:   a.NodeName, TargetRef: a.TargetRef}
			if a.Hostname != "" {
				e.Hostname = ptr.To(a.Hostname)
			}
			eps = append(eps, e)
		}
		for _, a := range sub.Addresses {
			add(a, true)
		}
		for _, a := range sub.NotReadyAddresses {
			add(a, false)
		}
		for start := 0; start < len(eps); start += maxPerSlice {
			out = append(out, content{ports, eps[start:min(start+maxPerSlice, len(eps))]})
		}
	}
	return out
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	existing, err := sliceindex.ForService(c.sliceInformer, ns, name, ManagedBy)
	if err != nil {
		return err
	}
	api := c.client.DiscoveryV1().EndpointSlices(ns)
	svc, svcErr := c.services.Services(ns).Get(name)
	ep, epErr := c.endpoints.Endpoints(ns).Get(name)
	var want []content
	if svcErr == nil && epErr == nil && len(svc.Spec.Selector) == 0 && ep.Labels[SkipMirrorLabel] != "true" {
		want = desired(ep)
	}
	for i, w := range want {
		sliceName := fmt.Sprintf("%s-mirror-%d", name, i)
		ports, eps := w.ports, w.endpoints
		cur, err := c.slices.EndpointSlices(ns).Get(sliceName)
		if err == nil {
			if apiequality.Semantic.DeepEqual(cur.Ports, ports) && apiequality.Semantic.DeepEqual(cur.Endpoints, eps) {
				continue
			}
			upd := cur.DeepCopy()
			upd.Ports, upd.Endpoints = ports, eps
			upd.Annotations = trigger(ep, upd.Annotations)
			if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
				return fmt.Errorf("update mirrored slice %s: %w", sliceName, err)
			}
			continue
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: sliceName, Namespace: ns, Annotations: trigger(ep, nil),
				Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: ManagedBy},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Endpoints", Name: ep.Name, UID: ep.UID,
					Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
		}
		if _, err := api.Create(ctx, s, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create mirrored slice %s: %w", sliceName, err)
		}
	}
	keep := map[string]bool{}
	for i := range want {
		keep[fmt.Sprintf("%s-mirror-%d", name, i)] = true
	}
	for _, s := range existing {
		if !keep[s.Name] {
			if err := api.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func trigger(ep *corev1.Endpoints, a map[string]string) map[string]string {
	if a == nil {
		a = map[string]string{}
	}
	if t := ep.Annotations[corev1.EndpointsLastChangeTriggerTime]; t != "" {
		a[corev1.EndpointsLastChangeTriggerTime] = t
	} else {
		a[corev1.EndpointsLastChangeTriggerTime] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	return a
}
