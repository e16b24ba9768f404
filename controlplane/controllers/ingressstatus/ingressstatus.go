// Package ingressstatus keeps status.loadBalancer.ingress of the Ingresses
// Petrel's nodes serve: the InternalIP of every Ready node, since every
// node answers Ingress traffic (dataplane/ingress), or with
// --ingress-service the address of a LoadBalancer Service in front of the
// nodes (service.go), as k3s reports its Traefik's addresses. It also says
// which Ingresses those are (Serves), for the nodes and the Node authorizer
// alike.
package ingressstatus

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

// The class Petrel serves.
const (
	// ClassName is the IngressClass the server creates at start, marked
	// default.
	ClassName = "petrel"
	// ControllerName is that class's spec.controller; any IngressClass
	// naming it is served too.
	ControllerName = "petrel.io/ingress"
	// LegacyClassAnnotation names a class on Ingresses older than
	// spec.ingressClassName.
	LegacyClassAnnotation = "kubernetes.io/ingress.class"
)

// Class is the IngressClass the server creates.
func Class() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: ClassName,
			Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec: networkingv1.IngressClassSpec{Controller: ControllerName},
	}
}

// Serves says whether Petrel's nodes serve an Ingress: its class (by
// spec.ingressClassName or the older annotation) is one whose controller is
// petrel.io/ingress, or it names none and the default class is Petrel's
// (or no class is marked default).
func Serves(ing *networkingv1.Ingress, classes networkinglisters.IngressClassLister) bool {
	name := ""
	if ing.Spec.IngressClassName != nil {
		name = *ing.Spec.IngressClassName
	} else if a, ok := ing.Annotations[LegacyClassAnnotation]; ok {
		name = a
	}
	if name != "" {
		if name == ClassName {
			return true
		}
		class, err := classes.Get(name)
		return err == nil && class.Spec.Controller == ControllerName
	}
	all, _ := classes.List(labels.Everything())
	for _, class := range all {
		if class.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" && class.Spec.Controller != ControllerName {
			return false
		}
	}
	return true
}

// Controller writes the addresses.
type Controller struct {
	client    kubernetes.Interface
	ingresses networkinglisters.IngressLister
	classes   networkinglisters.IngressClassLister
	nodes     corelisters.NodeLister
	loop      *loop.Loop
	// svcNamespace and svcName name the ingress Service (--ingress-service),
	// empty without one; services and slices are read for it.
	svcNamespace, svcName string
	services              corelisters.ServiceLister
	slices                discoverylisters.EndpointSliceLister
}

// serviceKey is the work item that keeps the ingress Service.
const serviceKey = "\x00ingress-service"

// New builds the controller on the control plane's informers. service is
// --ingress-service's NAMESPACE/NAME, or empty for the nodes' addresses.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, service string) (*Controller, error) {
	ingInf := factory.Networking().V1().Ingresses()
	classInf := factory.Networking().V1().IngressClasses()
	nodeInf := factory.Core().V1().Nodes()
	c := &Controller{client: cs, ingresses: ingInf.Lister(), classes: classInf.Lister(), nodes: nodeInf.Lister()}
	c.loop = loop.New("ingress status", loop.Simple(c.sync))
	c.loop.Synced(ingInf.Informer().HasSynced, classInf.Informer().HasSynced, nodeInf.Informer().HasSynced)
	if service != "" {
		var err error
		if c.svcNamespace, c.svcName, err = ParseService(service); err != nil {
			return nil, err
		}
		svcInf, sliceInf := factory.Core().V1().Services(), factory.Discovery().V1().EndpointSlices()
		c.services, c.slices = svcInf.Lister(), sliceInf.Lister()
		c.loop.Synced(svcInf.Informer().HasSynced, sliceInf.Informer().HasSynced)
		// The Service's address (or the Service itself) changing changes
		// every Ingress's status; its slice edited by hand is put back.
		mine := func(obj interface{}) {
			if m, err := meta.Accessor(obj); err == nil && m.GetNamespace() == c.svcNamespace &&
				(m.GetName() == c.svcName || m.GetName() == c.svcName+"-nodes") {
				c.enqueueAll()
			}
		}
		for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), sliceInf.Informer()} {
			_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: mine, DeleteFunc: func(obj interface{}) {
				if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = t.Obj
				}
				mine(obj)
			}, UpdateFunc: func(_, cur interface{}) { mine(cur) }})
		}
	}
	_, _ = ingInf.Informer().AddEventHandler(c.loop.Handlers())
	// A node's address or readiness, or a class, changes every Ingress's.
	all := func(interface{}) { c.enqueueAll() }
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all, DeleteFunc: all,
		UpdateFunc: func(old, cur interface{}) {
			o, n := old.(*corev1.Node), cur.(*corev1.Node)
			if nodeReady(o) != nodeReady(n) || !equality.Semantic.DeepEqual(o.Status.Addresses, n.Status.Addresses) {
				c.enqueueAll()
			}
		}})
	_, _ = classInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: all, DeleteFunc: all,
		UpdateFunc: func(interface{}, interface{}) { c.enqueueAll() }})
	return c, nil
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.enqueueAll()
	c.loop.Run(ctx, 1)
}

func (c *Controller) enqueueAll() {
	if c.svcName != "" {
		c.loop.Add(serviceKey)
	}
	ings, _ := c.ingresses.List(labels.Everything())
	for _, ing := range ings {
		c.loop.Add(ing.Namespace + "/" + ing.Name)
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyNode is a Ready node's name and InternalIP.
type readyNode struct{ name, ip string }

// readyNodes are the Ready nodes with an InternalIP, by address.
func (c *Controller) readyNodes() []readyNode {
	nodes, _ := c.nodes.List(labels.Everything())
	var out []readyNode
	for _, n := range nodes {
		if !nodeReady(n) {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				out = append(out, readyNode{n.Name, a.Address})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b readyNode) int { return strings.Compare(a.ip, b.ip) })
	return out
}

// addresses are the ingress Service's addresses with --ingress-service,
// else the InternalIPs of the Ready nodes, sorted.
func (c *Controller) addresses() []networkingv1.IngressLoadBalancerIngress {
	var ips []string
	if c.svcName != "" {
		ips = c.serviceAddresses()
	} else {
		for _, n := range c.readyNodes() {
			ips = append(ips, n.ip)
		}
	}
	out := make([]networkingv1.IngressLoadBalancerIngress, len(ips))
	for i, ip := range ips {
		out[i] = networkingv1.IngressLoadBalancerIngress{IP: ip}
	}
	return out
}

func (c *Controller) sync(ctx context.Context, key string) error {
	if key == serviceKey {
		return c.ensureService(ctx)
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	ing, err := c.ingresses.Ingresses(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	want := networkingv1.IngressLoadBalancerStatus{}
	if Serves(ing, c.classes) {
		want.Ingress = c.addresses()
	} else if len(ing.Status.LoadBalancer.Ingress) == 0 || !c.ours(ing) {
		return nil // another controller's
	}
	if equality.Semantic.DeepEqual(ing.Status.LoadBalancer, want) {
		return nil
	}
	upd := ing.DeepCopy()
	upd.Status.LoadBalancer = want
	if _, err := c.client.NetworkingV1().Ingresses(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("ingress %s status: %w", key, err)
	}
	return nil
}

// ours says whether the addresses in an Ingress's status are the ones this
// controller wrote (when it moves to another class, they are cleared).
func (c *Controller) ours(ing *networkingv1.Ingress) bool {
	mine := map[string]bool{}
	for _, a := range c.addresses() {
		mine[a.IP] = true
	}
	for _, a := range ing.Status.LoadBalancer.Ingress {
		if !mine[a.IP] {
			return false
		}
	}
	return true
}
