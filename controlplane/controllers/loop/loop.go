// Package loop is the control loop every controller here shares, shaped
// like client-go's examples: informer events put namespace/name keys on a
// rate-limited workqueue, workers call the controller's sync for each key,
// failures come back with backoff and a sync may ask to look again later.
package loop

import (
	"context"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc reconciles one key; a positive duration asks for another look
// after it (a deadline, a schedule), an error for a retry with backoff.
type SyncFunc func(ctx context.Context, key string) (time.Duration, error)

// Loop is a named workqueue and the sync that works it.
type Loop struct {
	name    string
	queue   workqueue.TypedRateLimitingInterface[string]
	sync    SyncFunc
	synced  []cache.InformerSynced
	prepare []func()
}

// New makes a loop; Watch adds the informers it waits for.
func New(name string, sync SyncFunc) *Loop {
	return &Loop{name: name, sync: sync, queue: workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: name})}
}

// NewWithQueue makes a loop on a queue of the caller's (another clock or
// rate limiter).
func NewWithQueue(name string, queue workqueue.TypedRateLimitingInterface[string], sync SyncFunc) *Loop {
	return &Loop{name: name, sync: sync, queue: queue}
}

// Synced adds informers whose caches must fill before the workers start.
func (l *Loop) Synced(fns ...cache.InformerSynced) { l.synced = append(l.synced, fns...) }

// Prepare runs fn once the caches are in, before any sync: for state a
// controller rebuilds from the cluster (allocations) at start.
func (l *Loop) Prepare(fn func()) { l.prepare = append(l.prepare, fn) }

// Add queues a key.
func (l *Loop) Add(key string) { l.queue.Add(key) }

// Enqueue queues an object's own key (tombstones included).
func (l *Loop) Enqueue(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		l.queue.Add(key)
	}
}

// Handlers queue the object on add, update and delete.
func (l *Loop) Handlers() cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{AddFunc: l.Enqueue, UpdateFunc: func(_, obj interface{}) { l.Enqueue(obj) }, DeleteFunc: l.Enqueue}
}

// OwnerHandlers queue, for every event of an owned object, the key of its
// controller when that controller is of kind.
func (l *Loop) OwnerHandlers(kind string) cache.ResourceEventHandlerFuncs {
	owner := func(obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(m); ref != nil && ref.Kind == kind {
			l.queue.Add(m.GetNamespace() + "/" + ref.Name)
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: owner, UpdateFunc: func(_, obj interface{}) { owner(obj) }, DeleteFunc: owner}
}

// NamespaceHandlers queue, for every event of any object, each object that
// inNamespace lists for its namespace: for objects whose state sums up a
// whole namespace (disruption budgets, quotas).
func (l *Loop) NamespaceHandlers(inNamespace func(namespace string) []interface{}) cache.ResourceEventHandlerFuncs {
	queue := func(obj interface{}) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if m, ok := obj.(metav1.Object); ok {
			for _, o := range inNamespace(m.GetNamespace()) {
				l.Enqueue(o)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: queue, UpdateFunc: func(_, obj interface{}) { queue(obj) }, DeleteFunc: queue}
}

// Objects returns a lister's result as NamespaceHandlers wants it.
func Objects[T any](items []T) []interface{} {
	out := make([]interface{}, len(items))
	for i := range items {
		out[i] = items[i]
	}
	return out
}

// Run starts workers once the caches are in and blocks until ctx ends.
func (l *Loop) Run(ctx context.Context, workers int) {
	defer l.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), l.synced...) {
		return
	}
	for _, fn := range l.prepare {
		fn()
	}
	for range max(workers, 1) {
		go wait.UntilWithContext(ctx, l.work, time.Second)
	}
	<-ctx.Done()
}

func (l *Loop) work(ctx context.Context) {
	for {
		key, quit := l.queue.Get()
		if quit {
			return
		}
		after, err := l.sync(ctx, key)
		switch {
		case err != nil:
			slog.Warn(l.name+": sync failed; retrying", "key", key, "err", err)
			l.queue.AddRateLimited(key)
		case after > 0:
			l.queue.Forget(key)
			l.queue.AddAfter(key, after)
		default:
			l.queue.Forget(key)
		}
		l.queue.Done(key)
	}
}

// Simple adapts a sync that never asks to look again later.
func Simple(sync func(ctx context.Context, key string) error) SyncFunc {
	return func(ctx context.Context, key string) (time.Duration, error) { return 0, sync(ctx, key) }
}
