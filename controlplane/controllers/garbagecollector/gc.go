// Package garbagecollector deletes objects whose owners are gone and carries out
// the orphan and foreground deletion modes, from ownerReferences, as Kubernetes'
// garbage collector does. It watches every resource's metadata only.
package garbagecollector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

const ownerIndex = "ownerUID"

// Collector is the garbage collector.
type Collector struct {
	client    metadata.Interface
	informers map[schema.GroupVersionResource]cache.SharedIndexInformer
	// byKind maps "<apiVersion>/<kind>" to the resource, to find owners.
	byKind map[string]schema.GroupVersionResource
	queue  workqueue.TypedRateLimitingInterface[item]
}

// item is one object to look at.
type item struct {
	gvr       schema.GroupVersionResource
	namespace string
	name      string
}

// Resource is a resource the collector watches.
type Resource struct {
	GVR  schema.GroupVersionResource
	Kind string
}

// New builds a collector over the given resources.
func New(cfg *rest.Config, resources []Resource) (*Collector, error) {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	c := &Collector{client: mc, informers: map[schema.GroupVersionResource]cache.SharedIndexInformer{}, byKind: map[string]schema.GroupVersionResource{},
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[item]())}
	for _, r := range resources {
		c.byKind[r.GVR.GroupVersion().String()+"/"+r.Kind] = r.GVR
	}
	factory := metadatainformer.NewSharedInformerFactory(mc, 10*time.Minute)
	for _, r := range resources {
		gvr := r.GVR
		inf := factory.ForResource(gvr).Informer()
		if err := inf.AddIndexers(cache.Indexers{ownerIndex: func(obj interface{}) ([]string, error) {
			acc, err := meta.Accessor(obj)
			if err != nil {
				return nil, nil
			}
			var uids []string
			for _, ref := range acc.GetOwnerReferences() {
				uids = append(uids, string(ref.UID))
			}
			return uids, nil
		}}); err != nil {
			return nil, err
		}
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj interface{}) { c.enqueue(gvr, obj) },
			UpdateFunc: func(_, obj interface{}) { c.enqueue(gvr, obj) },
			DeleteFunc: func(obj interface{}) { c.ownerGone(obj) },
		})
		c.informers[gvr] = inf
	}
	return c, nil
}

func (c *Collector) enqueue(gvr schema.GroupVersionResource, obj interface{}) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	interesting := len(acc.GetOwnerReferences()) > 0
	if acc.GetDeletionTimestamp() != nil {
		for _, f := range acc.GetFinalizers() {
			if f == metav1.FinalizerOrphanDependents || f == metav1.FinalizerDeleteDependents {
				interesting = true
			}
		}
	}
	if interesting {
		c.queue.Add(item{gvr: gvr, namespace: acc.GetNamespace(), name: acc.GetName()})
	}
}

// ownerGone queues the dependents of a deleted object.
func (c *Collector) ownerGone(obj interface{}) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for gvr, dep := range c.dependents(acc.GetUID()) {
		for _, d := range dep {
			c.queue.Add(item{gvr: gvr, namespace: d.GetNamespace(), name: d.GetName()})
		}
	}
}

func (c *Collector) dependents(uid types.UID) map[schema.GroupVersionResource][]metav1.Object {
	out := map[schema.GroupVersionResource][]metav1.Object{}
	for gvr, inf := range c.informers {
		objs, _ := inf.GetIndexer().ByIndex(ownerIndex, string(uid))
		for _, o := range objs {
			if acc, err := meta.Accessor(o); err == nil {
				out[gvr] = append(out[gvr], acc)
			}
		}
	}
	return out
}

// Run starts the informers and workers; it blocks until ctx ends.
func (c *Collector) Run(ctx context.Context, workers int) {
	defer c.queue.ShutDown()
	for _, inf := range c.informers {
		go inf.Run(ctx.Done())
	}
	for _, inf := range c.informers {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return
		}
	}
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
}

func (c *Collector) worker(ctx context.Context) {
	for {
		it, quit := c.queue.Get()
		if quit {
			return
		}
		requeue, err := c.sync(ctx, it)
		switch {
		case err != nil:
			slog.Debug("garbage collector: retrying", "resource", it.gvr.Resource, "name", it.namespace+"/"+it.name, "err", err)
			c.queue.AddRateLimited(it)
		case requeue:
			c.queue.Forget(it)
			c.queue.AddAfter(it, 500*time.Millisecond)
		default:
			c.queue.Forget(it)
		}
		c.queue.Done(it)
	}
}

func (c *Collector) get(it item) (metav1.Object, bool) {
	inf := c.informers[it.gvr]
	key := it.name
	if it.namespace != "" {
		key = it.namespace + "/" + it.name
	}
	obj, exists, err := inf.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return nil, false
	}
	acc, err := meta.Accessor(obj)
	return acc, err == nil
}

func (c *Collector) sync(ctx context.Context, it item) (bool, error) {
	obj, ok := c.get(it)
	if !ok {
		return false, nil
	}
	if obj.GetDeletionTimestamp() != nil {
		if has(obj.GetFinalizers(), metav1.FinalizerOrphanDependents) {
			return false, c.orphan(ctx, it, obj)
		}
		if has(obj.GetFinalizers(), metav1.FinalizerDeleteDependents) {
			return c.foreground(ctx, it, obj)
		}
	}
	return false, c.collectIfOrphaned(ctx, it, obj)
}

// orphan removes the owner's references from its dependents, then the finalizer.
func (c *Collector) orphan(ctx context.Context, it item, owner metav1.Object) error {
	for gvr, deps := range c.dependents(owner.GetUID()) {
		for _, d := range deps {
			var refs []metav1.OwnerReference
			for _, r := range d.GetOwnerReferences() {
				if r.UID != owner.GetUID() {
					refs = append(refs, r)
				}
			}
			if err := c.patchMeta(ctx, gvr, d, map[string]interface{}{"ownerReferences": refs}); err != nil {
				return err
			}
		}
	}
	return c.patchMeta(ctx, it.gvr, owner, map[string]interface{}{"finalizers": without(owner.GetFinalizers(), metav1.FinalizerOrphanDependents)})
}

// foreground deletes the owner's dependents and drops its finalizer once no
// dependent blocks it, as Kubernetes' collector does:
//   - a dependent with another owner that stays (present, not itself
//     deleting its dependents) only loses its references to the owners that
//     are going, and lives on;
//   - any other dependent is deleted, in the foreground when it has
//     dependents of its own; when one of those is itself waiting for its
//     dependents (a circle of owners), its references are made non-blocking
//     first, which is what lets a circle unwind;
//   - only dependents whose reference to the owner has blockOwnerDeletion
//     hold the owner back.
func (c *Collector) foreground(ctx context.Context, it item, owner metav1.Object) (bool, error) {
	blocking := 0
	for gvr, deps := range c.dependents(owner.GetUID()) {
		for _, d := range deps {
			blocks, err := c.deleteDependent(ctx, gvr, d, owner)
			if err != nil {
				return false, err
			}
			if blocks {
				blocking++
			}
		}
	}
	if blocking > 0 {
		return true, nil
	}
	return false, c.patchMeta(ctx, it.gvr, owner, map[string]interface{}{"finalizers": without(owner.GetFinalizers(), metav1.FinalizerDeleteDependents)})
}

// deletingDependents says whether obj is being deleted in the foreground.
func deletingDependents(obj metav1.Object) bool {
	return obj.GetDeletionTimestamp() != nil && has(obj.GetFinalizers(), metav1.FinalizerDeleteDependents)
}

// deleteDependent handles one dependent of an owner deleted in the
// foreground and says whether it still holds the owner back.
func (c *Collector) deleteDependent(ctx context.Context, gvr schema.GroupVersionResource, d, owner metav1.Object) (bool, error) {
	blocksOwner := false
	for _, r := range d.GetOwnerReferences() {
		if r.UID == owner.GetUID() && r.BlockOwnerDeletion != nil && *r.BlockOwnerDeletion {
			blocksOwner = true
		}
	}
	if d.GetDeletionTimestamp() != nil {
		return blocksOwner, nil
	}
	// The dependent's other owners: one that stays keeps it.
	var keep []metav1.OwnerReference
	solid := false
	for _, r := range d.GetOwnerReferences() {
		if r.UID == owner.GetUID() {
			continue
		}
		state, err := c.ownerState(ctx, d.GetNamespace(), r)
		if err != nil {
			return false, err
		}
		// An owner of a kind not served here is not ours to judge: it
		// stays, and keeps the dependent. One going (gone, or deleting its
		// dependents) loses its reference.
		if state == ownerPresent || state == ownerUnknownKind {
			solid = true
			keep = append(keep, r)
		}
	}
	if solid {
		return false, c.patchMeta(ctx, gvr, d, map[string]interface{}{"ownerReferences": keep})
	}
	policy := metav1.DeletePropagationBackground
	if deps := c.dependents(d.GetUID()); len(deps) > 0 {
		policy = metav1.DeletePropagationForeground
		circle := false
		for _, list := range deps {
			for _, dd := range list {
				circle = circle || deletingDependents(dd)
			}
		}
		if circle {
			refs := d.GetOwnerReferences()
			unblocked := make([]metav1.OwnerReference, len(refs))
			for i, r := range refs {
				r.BlockOwnerDeletion = ptr(false)
				unblocked[i] = r
			}
			if err := c.patchMeta(ctx, gvr, d, map[string]interface{}{"ownerReferences": unblocked}); err != nil {
				return false, err
			}
			blocksOwner = false
		}
	}
	err := c.client.Resource(gvr).Namespace(d.GetNamespace()).Delete(ctx, d.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy,
		Preconditions: &metav1.Preconditions{UID: ptr(d.GetUID())}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return false, err
	}
	return blocksOwner, nil
}

// What an owner reference points at.
const (
	ownerGoneState = iota
	ownerPresent
	ownerDeleting // present, deleting its dependents in the foreground
	ownerUnknownKind
)

// ownerState looks an owner reference up in the cache, and in the API
// before calling it gone (the cache may lag).
func (c *Collector) ownerState(ctx context.Context, namespace string, ref metav1.OwnerReference) (int, error) {
	gvr, known := c.byKind[ref.APIVersion+"/"+ref.Kind]
	if !known {
		return ownerUnknownKind, nil
	}
	if o, ok := c.get(item{gvr: gvr, namespace: namespace, name: ref.Name}); ok && o.GetUID() == ref.UID {
		if deletingDependents(o) {
			return ownerDeleting, nil
		}
		return ownerPresent, nil
	}
	live, err := c.client.Resource(gvr).Namespace(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return 0, err
	}
	if err == nil && live.UID == ref.UID {
		if deletingDependents(live) {
			return ownerDeleting, nil
		}
		return ownerPresent, nil
	}
	return ownerGoneState, nil
}

// collectIfOrphaned deletes obj when every owner it names is gone.
func (c *Collector) collectIfOrphaned(ctx context.Context, it item, obj metav1.Object) error {
	refs := obj.GetOwnerReferences()
	if len(refs) == 0 {
		return nil
	}
	policy := metav1.DeletePropagationBackground
	for _, ref := range refs {
		gvr, known := c.byKind[ref.APIVersion+"/"+ref.Kind]
		if !known {
			return nil // an owner of a kind we do not serve: leave it.
		}
		owner, ok := c.get(item{gvr: gvr, namespace: it.namespace, name: ref.Name})
		if ok && owner.GetUID() == ref.UID {
			if owner.GetDeletionTimestamp() != nil && has(owner.GetFinalizers(), metav1.FinalizerDeleteDependents) {
				policy = metav1.DeletePropagationForeground
				continue
			}
			return nil
		}
		// The cache may lag: ask the API before deleting anything.
		live, err := c.client.Resource(gvr).Namespace(it.namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err == nil && live.UID == ref.UID {
			return nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	err := c.client.Resource(it.gvr).Namespace(it.namespace).Delete(ctx, it.name, metav1.DeleteOptions{PropagationPolicy: &policy,
		Preconditions: &metav1.Preconditions{UID: ptr(obj.GetUID())}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

func (c *Collector) patchMeta(ctx context.Context, gvr schema.GroupVersionResource, obj metav1.Object, fields map[string]interface{}) error {
	fields["resourceVersion"] = obj.GetResourceVersion()
	data, err := json.Marshal(map[string]interface{}{"metadata": fields})
	if err != nil {
		return err
	}
	_, err = c.client.Resource(gvr).Namespace(obj.GetNamespace()).Patch(ctx, obj.GetName(), types.MergePatchType, data, metav1.PatchOptions{FieldManager: "petrel-garbage-collector"})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating %s %s: %w", gvr.Resource, strings.TrimPrefix(obj.GetNamespace()+"/"+obj.GetName(), "/"), err)
	}
	return nil
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	out := []string{}
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func ptr[T any](v T) *T { return &v }
