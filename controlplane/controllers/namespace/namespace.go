// Package namespace finishes namespace deletion: when a namespace is
// Terminating it deletes everything inside it, then removes the namespace's
// "kubernetes" finalizer so that the namespace itself goes.
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// Controller deletes the content of terminating namespaces.
type Controller struct {
	client    kubernetes.Interface
	dynamic   dynamic.Interface
	resources []schema.GroupVersionResource
	lister    func(name string) (*corev1.Namespace, error)
	queue     workqueue.TypedRateLimitingInterface[string]
}

// Run starts the controller with the given kubeconfig and blocks until ctx ends.
func Run(ctx context.Context, kubeconfig string, resources []*registry.Resource) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		slog.Error("namespace controller: kubeconfig", "err", err)
		return
	}
	cfg.QPS, cfg.Burst = 200, 400
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		slog.Error("namespace controller", "err", err)
		return
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		slog.Error("namespace controller", "err", err)
		return
	}
	var gvrs []schema.GroupVersionResource
	for _, r := range resources {
		if r.Namespaced {
			gvrs = append(gvrs, r.GVR)
		}
	}
	New(cs, dc, gvrs).Run(ctx)
}

// New builds the controller.
func New(cs kubernetes.Interface, dc dynamic.Interface, gvrs []schema.GroupVersionResource) *Controller {
	return &Controller{client: cs, dynamic: dc, resources: gvrs,
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
}

// Run watches namespaces and works the queue until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	factory := informers.NewSharedInformerFactory(c.client, 10*time.Minute)
	inf := factory.Core().V1().Namespaces()
	enqueue := func(obj interface{}) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj interface{}) { enqueue(obj) },
	})
	c.lister = func(name string) (*corev1.Namespace, error) { return inf.Lister().Get(name) }
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	go wait.UntilWithContext(ctx, c.worker, time.Second)
	<-ctx.Done()
}

func (c *Controller) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		requeue, err := c.sync(ctx, key)
		switch {
		case err != nil:
			slog.Warn("namespace controller: sync failed, retrying", "namespace", key, "err", err)
			c.queue.AddRateLimited(key)
		case requeue:
			c.queue.AddAfter(key, time.Second)
			c.queue.Forget(key)
		default:
			c.queue.Forget(key)
		}
		c.queue.Done(key)
	}
}

// sync deletes what is left in a terminating namespace; it reports whether the
// namespace must be looked at again.
func (c *Controller) sync(ctx context.Context, name string) (bool, error) {
	ns, err := c.lister(name)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if ns.DeletionTimestamp == nil {
		return false, nil
	}
	remaining := 0
	bg := metav1.DeletePropagationBackground
	for _, gvr := range c.resources {
		ri := c.dynamic.Resource(gvr).Namespace(name)
		if err := ri.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("deleting %s in %s: %w", gvr.Resource, name, err)
		}
		list, err := ri.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, fmt.Errorf("listing %s in %s: %w", gvr.Resource, name, err)
		}
		remaining += len(list.Items)
	}
	if remaining > 0 {
		return true, nil
	}
	fresh, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var keep []corev1.FinalizerName
	for _, f := range fresh.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			keep = append(keep, f)
		}
	}
	fresh.Spec.Finalizers = keep
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, fresh, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("finalizing namespace %s: %w", name, err)
	}
	return false, nil
}
