// Package podgc removes pods nothing else will: pods bound to a Node that no
// longer exists (no kubelet will ever confirm them), pods being deleted that
// were never scheduled, and the oldest finished pods beyond a threshold, as
// Kubernetes' pod garbage collector does.
package podgc

import (
	"context"
	"log/slog"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Controller collects pods.
type Controller struct {
	client     kubernetes.Interface
	pods       corelisters.PodLister
	nodes      corelisters.NodeLister
	synced     []cache.InformerSynced
	kick       chan struct{}
	period     time.Duration
	terminated int
}

// New builds the collector; it keeps at most terminated finished pods.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory, terminated int) *Controller {
	pInf, nInf := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	c := &Controller{client: cs, pods: pInf.Lister(), nodes: nInf.Lister(), kick: make(chan struct{}, 1),
		period: 20 * time.Second, terminated: terminated,
		synced: []cache.InformerSynced{pInf.Informer().HasSynced, nInf.Informer().HasSynced}}
	// A deleted Node is the common case: collect its pods at once.
	_, _ = nInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(interface{}) {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}})
	return c
}

// Run collects every period, and after every Node deletion, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		c.collect(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-c.kick:
			// Let the node's deletion settle in the caches.
			time.Sleep(500 * time.Millisecond)
		}
	}
}

func (c *Controller) collect(ctx context.Context) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return
	}
	var finished []*corev1.Pod
	for _, p := range pods {
		switch {
		case p.Spec.NodeName != "":
			if _, err := c.nodes.Get(p.Spec.NodeName); apierrors.IsNotFound(err) && c.nodeGone(ctx, p.Spec.NodeName) {
				c.forceDelete(ctx, p, "its node is gone")
				continue
			}
		case p.DeletionTimestamp != nil:
			c.forceDelete(ctx, p, "deleted before it was scheduled")
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			finished = append(finished, p)
		}
	}
	if extra := len(finished) - c.terminated; extra > 0 {
		sort.Slice(finished, func(i, j int) bool { return finished[i].CreationTimestamp.Before(&finished[j].CreationTimestamp) })
		for _, p := range finished[:extra] {
			c.forceDelete(ctx, p, "more finished pods than the threshold")
		}
	}
}

// nodeGone asks the API, not the cache: a Node just created may not be in
// the informer yet.
func (c *Controller) nodeGone(ctx context.Context, name string) bool {
	_, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func (c *Controller) forceDelete(ctx context.Context, p *corev1.Pod, why string) {
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0)),
		Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		slog.Warn("pod GC: delete failed", "pod", p.Namespace+"/"+p.Name, "err", err)
		return
	}
	slog.Info("pod GC: deleted", "pod", p.Namespace+"/"+p.Name, "why", why)
}
