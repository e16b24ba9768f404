// Package endpointslice keeps each selector Service's EndpointSlices (and
// its legacy Endpoints) in line with the pods it selects: addresses,
// resolved ports, ready/serving/terminating conditions, node names, hostnames
// for StatefulSet-style pods, and the
// endpoints.kubernetes.io/last-change-trigger-time annotation that the node
// proxies time their programming from.
package endpointslice

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/controllers/sliceindex"
)

// ManagedBy is the managed-by label value of the slices this controller
// owns; it is Kubernetes' own, so that tools reading slices recognise them.
const ManagedBy = "endpointslice-controller.k8s.io"

// Controller reconciles EndpointSlices and Endpoints of selector Services.
type Controller struct {
	client   kubernetes.Interface
	loop     *loop.Loop
	services corelisters.ServiceLister
	pods     corelisters.PodLister
	slices   discoverylisters.EndpointSliceLister
	// sliceInformer is indexed by Service (sliceindex).
	sliceInformer cache.SharedIndexInformer
	endpoints     corelisters.EndpointsLister
	triggerMu     sync.Mutex
	triggerTime   map[string]time.Time // Service key → first change not yet written
}

// New builds the controller on a shared informer factory; call
// factory.Start before Run.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	c := &Controller{client: cs, triggerTime: map[string]time.Time{}}
	c.loop = loop.New("endpointslice controller", loop.Simple(c.sync))
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	epInf := factory.Core().V1().Endpoints()
	c.services, c.pods, c.slices, c.endpoints = svcInf.Lister(), podInf.Lister(), sliceInf.Lister(), epInf.Lister()
	c.sliceInformer = sliceInf.Informer()
	if err := sliceindex.Add(c.sliceInformer); err != nil {
		panic(err) // only before the informer starts, which New is
	}
	c.loop.Synced(svcInf.Informer().HasSynced, podInf.Informer().HasSynced, sliceInf.Informer().HasSynced, epInf.Informer().HasSynced)
	_, _ = svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueService,
		UpdateFunc: func(_, obj interface{}) { c.enqueueService(obj) },
		DeleteFunc: c.enqueueService,
	})
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj interface{}) { c.enqueuePod(obj, nil) },
		UpdateFunc: func(old, obj interface{}) {
			if o, n := old.(*corev1.Pod), obj.(*corev1.Pod); o.ResourceVersion != n.ResourceVersion {
				c.enqueuePod(obj, o.Labels)
			}
		},
		DeleteFunc: func(obj interface{}) { c.enqueuePod(obj, nil) },
	})
	_, _ = sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Someone else's edit of a managed slice gets repaired.
		UpdateFunc: func(_, obj interface{}) { c.enqueueSlice(obj) },
		DeleteFunc: c.enqueueSlice,
	})
	return c
}

func (c *Controller) noteTrigger(key string) {
	c.triggerMu.Lock()
	if _, ok := c.triggerTime[key]; !ok {
		c.triggerTime[key] = time.Now()
	}
	c.triggerMu.Unlock()
	c.loop.Add(key)
}

func (c *Controller) enqueueService(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.noteTrigger(key)
	}
}

func (c *Controller) enqueueSlice(obj interface{}) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelManagedBy] == ManagedBy {
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			c.loop.Add(s.Namespace + "/" + svc)
		}
	}
}

// enqueuePod queues every Service that selects the pod now or selected it
// before its labels changed.
func (c *Controller) enqueuePod(obj interface{}, oldLabels map[string]string) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	svcs, err := c.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 {
			continue
		}
		sel := labels.SelectorFromValidatedSet(s.Spec.Selector)
		if sel.Matches(labels.Set(pod.Labels)) || (oldLabels != nil && sel.Matches(labels.Set(oldLabels))) {
			c.noteTrigger(s.Namespace + "/" + s.Name)
		}
	}
}

// Run works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	c.loop.Run(ctx, workers)
}

func (c *Controller) takeTrigger(key string) time.Time {
	c.triggerMu.Lock()
	defer c.triggerMu.Unlock()
	t, ok := c.triggerTime[key]
	delete(c.triggerTime, key)
	if !ok {
		return time.Now()
	}
	return t
}

func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	trigger := c.takeTrigger(key)
	existing, err := sliceindex.ForService(c.sliceInformer, ns, name, ManagedBy)
	if err != nil {
		return err
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The Endpoints of a deleted Service go with it, whoever wrote
		// them, as Kubernetes' endpoints controller does.
		if _, err := c.endpoints.Endpoints(ns).Get(name); err == nil {
			if err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete Endpoints %s/%s of a deleted Service: %w", ns, name, err)
			}
		}
	}
	if apierrors.IsNotFound(err) || (err == nil && (len(svc.Spec.Selector) == 0 || svc.Spec.Type == corev1.ServiceTypeExternalName)) {
		// Gone, or endpoints are the user's business now: drop ours.
		for _, s := range existing {
			if err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	}
	if err != nil {
		return err
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	want := desiredSlices(svc, pods)
	if err := c.reconcileSlices(ctx, svc, want, existing, trigger); err != nil {
		return err
	}
	return c.reconcileEndpoints(ctx, svc, want, trigger)
}

// reconcileSlices pairs wanted contents with existing slices of the same
// ports, updates those that differ, creates what is missing and deletes the
// rest.
func (c *Controller) reconcileSlices(ctx context.Context, svc *corev1.Service, want map[string][]sliceContent, existing []*discoveryv1.EndpointSlice, trigger time.Time) error {
	api := c.client.DiscoveryV1().EndpointSlices(svc.Namespace)
	byKey := map[string][]*discoveryv1.EndpointSlice{}
	sort.Slice(existing, func(i, j int) bool { return existing[i].Name < existing[j].Name })
	for _, s := range existing {
		k := portsKey(s.Ports)
		byKey[k] = append(byKey[k], s)
	}
	stamp := trigger.UTC().Format(time.RFC3339Nano)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, content := range want[k] {
			if olds := byKey[k]; len(olds) > 0 {
				old := olds[0]
				byKey[k] = olds[1:]
				if apiequality.Semantic.DeepEqual(old.Endpoints, content.endpoints) && apiequality.Semantic.DeepEqual(old.Ports, content.ports) {
					continue
				}
				upd := old.DeepCopy()
				upd.Endpoints, upd.Ports = content.endpoints, content.ports
				setTrigger(&upd.ObjectMeta, stamp)
				if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
					return fmt.Errorf("update EndpointSlice %s: %w", old.Name, err)
				}
				continue
			}
			s := newSlice(svc)
			s.Ports, s.Endpoints = content.ports, content.endpoints
			setTrigger(&s.ObjectMeta, stamp)
			if _, err := api.Create(ctx, s, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
				return fmt.Errorf("create EndpointSlice for %s: %w", svc.Name, err)
			}
		}
	}
	// A Service with no endpoints keeps one empty slice, as Kubernetes does,
	// so that readers can tell "no endpoints" from "not reconciled yet".
	keptEmpty := false
	for _, rest := range byKey {
		for _, s := range rest {
			if len(want) == 0 && !keptEmpty && len(s.Endpoints) == 0 && len(s.Ports) == 0 {
				keptEmpty = true
				continue
			}
			if err := api.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("delete EndpointSlice %s: %w", s.Name, err)
			}
		}
	}
	if len(want) == 0 && !keptEmpty {
		s := newSlice(svc)
		setTrigger(&s.ObjectMeta, stamp)
		if _, err := api.Create(ctx, s, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("create EndpointSlice for %s: %w", svc.Name, err)
		}
	}
	return nil
}

// newSlice is an empty slice of svc, owned by it.
func newSlice(svc *corev1.Service) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{GenerateName: svc.Name + "-", Namespace: svc.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: ManagedBy},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
	}
}

func setTrigger(m *metav1.ObjectMeta, stamp string) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	m.Annotations[corev1.EndpointsLastChangeTriggerTime] = stamp
}

// reconcileEndpoints writes the legacy Endpoints object: ready addresses,
// not-ready ones apart, terminating pods left out.
func (c *Controller) reconcileEndpoints(ctx context.Context, svc *corev1.Service, want map[string][]sliceContent, trigger time.Time) error {
	var subsets []corev1.EndpointSubset
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var sub corev1.EndpointSubset
		for _, content := range want[k] {
			if len(sub.Ports) == 0 {
				for _, p := range content.ports {
					sub.Ports = append(sub.Ports, corev1.EndpointPort{Name: ptr.Deref(p.Name, ""), Port: ptr.Deref(p.Port, 0),
						Protocol: ptr.Deref(p.Protocol, corev1.ProtocolTCP), AppProtocol: p.AppProtocol})
				}
			}
			for _, ep := range content.endpoints {
				if ptr.Deref(ep.Conditions.Terminating, false) && !svc.Spec.PublishNotReadyAddresses {
					continue
				}
				addr := corev1.EndpointAddress{IP: ep.Addresses[0], NodeName: ep.NodeName, TargetRef: ep.TargetRef, Hostname: ptr.Deref(ep.Hostname, "")}
				if ptr.Deref(ep.Conditions.Ready, false) {
					sub.Addresses = append(sub.Addresses, addr)
				} else {
					sub.NotReadyAddresses = append(sub.NotReadyAddresses, addr)
				}
			}
		}
		if len(sub.Addresses)+len(sub.NotReadyAddresses) > 0 {
			subsets = append(subsets, sub)
		}
	}
	api := c.client.CoreV1().Endpoints(svc.Namespace)
	old, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if apierrors.IsNotFound(err) {
		ep := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels,
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: trigger.UTC().Format(time.RFC3339Nano)}}, Subsets: subsets}
		if _, err := api.Create(ctx, ep, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Endpoints %s: %w", svc.Name, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(old.Subsets, subsets) {
		return nil
	}
	upd := old.DeepCopy()
	upd.Subsets = subsets
	setTrigger(&upd.ObjectMeta, trigger.UTC().Format(time.RFC3339Nano))
	if _, err := api.Update(ctx, upd, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
		return fmt.Errorf("update Endpoints %s: %w", svc.Name, err)
	}
	return nil
}
