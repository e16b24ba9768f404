// Package rootca publishes the cluster's CA certificate as the ConfigMap
// kube-root-ca.crt (key ca.crt) in every active namespace, as Kubernetes'
// root-ca-cert-publisher does, so that pods trust the API server through
// the projected volume the ServiceAccount admission gives them. A changed
// or deleted ConfigMap is put back.
package rootca

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
	"github.com/petrel-project/petrel/controlplane/registry"
)

const (
	dataKey = "ca.crt"
	manager = "root-ca-cert-publisher"
	// description is the annotation Kubernetes puts on the ConfigMap.
	description = "kubernetes.io/description"
)

// Controller keeps kube-root-ca.crt in every namespace.
type Controller struct {
	client     kubernetes.Interface
	caPEM      string
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	// cmInformer sees only the ConfigMaps named kube-root-ca.crt: watching
	// every ConfigMap would copy each one the cluster stores into this
	// controller's cache and decode every write for nothing.
	cmInformer cache.SharedIndexInformer
	loop       *loop.Loop
}

// New builds the controller on a shared informer factory; caPEM is the
// cluster CA's certificate.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, caPEM []byte) *Controller {
	nsInf := factory.Core().V1().Namespaces()
	cmInf := coreinformers.NewFilteredConfigMapInformer(cs, metav1.NamespaceAll, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", registry.RootCAConfigMap).String()
		})
	c := &Controller{client: cs, caPEM: string(caPEM), namespaces: nsInf.Lister(),
		configMaps: corelisters.NewConfigMapLister(cmInf.GetIndexer()), cmInformer: cmInf}
	c.loop = loop.New("root CA publisher", loop.Simple(c.sync))
	c.loop.Synced(nsInf.Informer().HasSynced, cmInf.HasSynced)
	_, _ = nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj interface{}) { c.loop.Add(obj.(*corev1.Namespace).Name) },
		UpdateFunc: func(_, obj interface{}) { c.loop.Add(obj.(*corev1.Namespace).Name) },
	})
	ours := func(obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Name == registry.RootCAConfigMap {
			c.loop.Add(cm.Namespace)
		}
	}
	_, _ = cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj interface{}) { ours(obj) },
		DeleteFunc: ours,
	})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	go c.cmInformer.Run(ctx.Done())
	c.loop.Run(ctx, 2)
}

func (c *Controller) sync(ctx context.Context, namespace string) error {
	ns, err := c.namespaces.Get(namespace)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	want := map[string]string{dataKey: c.caPEM}
	cm, err := c.configMaps.ConfigMaps(namespace).Get(registry.RootCAConfigMap)
	if apierrors.IsNotFound(err) {
		_, err = c.client.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: registry.RootCAConfigMap, Annotations: map[string]string{
				description: "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
			Data: want}, metav1.CreateOptions{FieldManager: manager})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		// Forbidden is a terminating namespace (the next sync sees it and
		// stops) or a refusal that passes: a ResourceQuota whose usage is
		// not computed yet refuses every create it covers. Try again.
		return err
	}
	if err != nil {
		return err
	}
	if len(cm.Data) == 1 && cm.Data[dataKey] == c.caPEM {
		return nil
	}
	fixed := cm.DeepCopy()
	fixed.Data = want
	_, err = c.client.CoreV1().ConfigMaps(namespace).Update(ctx, fixed, metav1.UpdateOptions{FieldManager: manager})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		c.loop.Add(namespace)
		return nil
	}
	return err
}
