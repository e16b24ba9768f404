package storage

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// AttrFunc returns the labels and fields of an object that selectors match.
// The cache keeps both for every object it holds, so implementations should
// share the object's own maps and strings rather than copy them.
type AttrFunc func(obj runtime.Object) (labels.Set, fields.Fields, error)

type cacheEntry struct {
	key    string
	obj    runtime.Object
	labels labels.Set
	fields fields.Fields
	// json and proto are the object's encodings, each made at most once per
	// object version and only when a list asks for it: entries never change,
	// so every list after the first reuses them.
	json, proto atomic.Pointer[[]byte]
}

// JSON returns the entry's cached JSON encoding, computing it on first use.
func (e *cacheEntry) JSON(encode func(runtime.Object) ([]byte, error)) ([]byte, error) {
	return e.encoded(&e.json, encode)
}

// Proto returns the entry's cached protobuf message, computing it on first use.
func (e *cacheEntry) Proto(encode func(runtime.Object) ([]byte, error)) ([]byte, error) {
	return e.encoded(&e.proto, encode)
}

func (e *cacheEntry) encoded(cached *atomic.Pointer[[]byte], encode func(runtime.Object) ([]byte, error)) ([]byte, error) {
	if p := cached.Load(); p != nil {
		return *p, nil
	}
	data, err := encode(e.obj)
	if err != nil {
		return nil, err
	}
	cached.Store(&data)
	return data, nil
}

type cacheEvent struct {
	typ  watch.EventType
	rev  int64
	cur  *cacheEntry // the object after the event (the last state for deletes)
	prev *cacheEntry // the object before the event, nil for adds
}

// watchCache mirrors one resource prefix of etcd in memory: the current objects
// ordered by key and a ring of recent events, fed by one etcd watch.
type watchCache struct {
	store *Store
	attrs AttrFunc

	mu      sync.RWMutex
	cond    *sync.Cond
	objects *btree.BTreeG[*cacheEntry]
	// ring grows up to ringCap events, then wraps.
	ring     []cacheEvent
	ringCap  int
	ringHead int // index of the oldest event
	ringLen  int
	// oldestRev is the revision from which the ring holds every event: a watch from
	// a revision >= oldestRev can be served.
	oldestRev int64
	rev       atomic.Int64
	watchers  map[*cacheWatcher]struct{}

	etcdWatcher clientv3.Watcher
}

func entryLess(a, b *cacheEntry) bool { return a.key < b.key }

func newWatchCache(ctx context.Context, s *Store, attrs AttrFunc, capacity int) (*watchCache, error) {
	c := &watchCache{
		store:    s,
		attrs:    attrs,
		objects:  btree.NewG(32, entryLess),
		ringCap:  capacity,
		watchers: map[*cacheWatcher]struct{}{},
	}
	c.cond = sync.NewCond(&c.mu)
	rev, err := c.relist(ctx)
	if err != nil {
		return nil, err
	}
	go c.run(ctx, rev)
	return c, nil
}

func (c *watchCache) makeEntry(key string, obj runtime.Object) *cacheEntry {
	e := &cacheEntry{key: key, obj: obj}
	if c.attrs != nil {
		l, f, err := c.attrs(obj)
		if err == nil {
			e.labels, e.fields = l, f
		}
	}
	return e
}

// relist replaces the cache's content with etcd's current state.
func (c *watchCache) relist(ctx context.Context) (int64, error) {
	resp, err := c.store.client.Get(ctx, c.store.prefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", c.store.prefix, err)
	}
	objects := btree.NewG(32, entryLess)
	for _, kv := range resp.Kvs {
		obj, err := c.store.decode(kv.Key, kv.Value, kv.ModRevision)
		if err != nil {
			slog.Error("skipping undecodable object", "key", string(kv.Key), "err", err)
			continue
		}
		objects.ReplaceOrInsert(c.makeEntry(string(kv.Key), obj))
	}
	c.mu.Lock()
	c.objects = objects
	c.ring, c.ringHead, c.ringLen = c.ring[:0], 0, 0
	c.oldestRev = resp.Header.Revision
	c.rev.Store(resp.Header.Revision)
	for w := range c.watchers {
		w.stopLocked()
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return resp.Header.Revision, nil
}

func (c *watchCache) run(ctx context.Context, rev int64) {
	// The client's own watcher: it multiplexes every resource's watch on one
	// stream (and is the only kind an in-process client has).
	c.etcdWatcher = c.store.client.Watcher
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		ch := c.etcdWatcher.Watch(wctx, c.store.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1),
			clientv3.WithPrevKV(), clientv3.WithProgressNotify())
		for resp := range ch {
			if err := resp.Err(); err != nil {
				slog.Warn("watch cache: etcd watch failed, relisting", "prefix", c.store.prefix, "err", err)
				break
			}
			if resp.IsProgressNotify() {
				c.advance(resp.Header.Revision)
				rev = resp.Header.Revision
				continue
			}
			for _, ev := range resp.Events {
				c.apply(ev)
				rev = ev.Kv.ModRevision
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
		newRev, err := c.relist(ctx)
		if err != nil {
			slog.Error("watch cache: relist failed", "prefix", c.store.prefix, "err", err)
			continue
		}
		rev = newRev
	}
}

func (c *watchCache) advance(rev int64) {
	c.mu.Lock()
	if rev > c.rev.Load() {
		c.rev.Store(rev)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *watchCache) apply(ev *clientv3.Event) {
	key := string(ev.Kv.Key)
	var e cacheEvent
	e.rev = ev.Kv.ModRevision
	c.mu.Lock()
	defer c.mu.Unlock()
	old, hadOld := c.objects.Get(&cacheEntry{key: key})
	switch ev.Type {
	case mvccpb.PUT:
		obj, err := c.store.decode(ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
		if err != nil {
			slog.Error("watch cache: undecodable object", "key", key, "err", err)
			return
		}
		e.cur = c.makeEntry(key, obj)
		c.objects.ReplaceOrInsert(e.cur)
		if hadOld {
			e.typ, e.prev = watch.Modified, old
		} else {
			e.typ = watch.Added
		}
	case mvccpb.DELETE:
		e.typ = watch.Deleted
		if hadOld {
			c.objects.Delete(old)
			last := old.obj.DeepCopyObject()
			_ = setRV(last, ev.Kv.ModRevision)
			e.cur = &cacheEntry{key: key, obj: last, labels: old.labels, fields: old.fields}
			e.prev = old
		} else if ev.PrevKv != nil {
			obj, err := c.store.decode(ev.PrevKv.Key, ev.PrevKv.Value, ev.Kv.ModRevision)
			if err != nil {
				return
			}
			e.cur = c.makeEntry(key, obj)
		} else {
			return
		}
	}
	c.push(e)
	c.rev.Store(e.rev)
	for w := range c.watchers {
		w.deliverLocked(&e)
	}
	c.cond.Broadcast()
}

func (c *watchCache) push(e cacheEvent) {
	if len(c.ring) < c.ringCap {
		// Still growing: nothing has been evicted, so the head is at 0.
		c.ring = append(c.ring, e)
		c.ringLen++
		return
	}
	n := len(c.ring)
	if c.ringLen == n {
		// The oldest event falls out: a watch must now start after it.
		c.oldestRev = c.ring[c.ringHead].rev
		c.ringHead = (c.ringHead + 1) % n
		c.ringLen--
	}
	c.ring[(c.ringHead+c.ringLen)%n] = e
	c.ringLen++
}

// waitFresh blocks until the cache has seen revision rev, asking etcd for a
// progress notification when no event is coming.
func (c *watchCache) waitFresh(ctx context.Context, rev int64) error {
	if c.rev.Load() >= rev {
		return nil
	}
	if c.etcdWatcher != nil {
		_ = c.etcdWatcher.RequestProgress(clientv3.WithRequireLeader(ctx))
	}
	deadline := time.Now().Add(3 * time.Second)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		select {
		case <-done:
		case <-ctx.Done():
		case <-t.C:
		}
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	}()
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rev.Load() < rev {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("watch cache of %s did not reach revision %d (at %d)", c.store.prefix, rev, c.rev.Load())
		}
		c.cond.Wait()
	}
	return nil
}

// Predicate selects objects by label and field.
type Predicate struct {
	Label labels.Selector
	Field fields.Selector
}

// Empty reports whether the predicate matches everything.
func (p Predicate) Empty() bool {
	return (p.Label == nil || p.Label.Empty()) && (p.Field == nil || p.Field.Empty())
}

func (p Predicate) matches(e *cacheEntry) bool {
	if e == nil {
		return false
	}
	if p.Label != nil && !p.Label.Empty() && !p.Label.Matches(e.labels) {
		return false
	}
	if p.Field != nil && !p.Field.Empty() && !p.Field.Matches(e.fields) {
		return false
	}
	return true
}

// snapshot returns the cached entries under prefix that match p, in key order.
func (c *watchCache) snapshot(prefix string, p Predicate) ([]*cacheEntry, int64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*cacheEntry
	c.objects.AscendGreaterOrEqual(&cacheEntry{key: prefix}, func(e *cacheEntry) bool {
		if !strings.HasPrefix(e.key, prefix) {
			return false
		}
		if p.matches(e) {
			out = append(out, e)
		}
		return true
	})
	return out, c.rev.Load()
}

// CachedGet returns the object under key from the watch cache, which may lag
// etcd by a moment; callers that need the latest state use Get.
func (s *Store) CachedGet(key string) (runtime.Object, bool) {
	s.cache.mu.RLock()
	defer s.cache.mu.RUnlock()
	e, ok := s.cache.objects.Get(&cacheEntry{key: key})
	if !ok {
		return nil, false
	}
	return e.obj, true
}
