package storage

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// WatchOptions says where a watch starts and what it sees.
type WatchOptions struct {
	Prefix    string
	Predicate Predicate
	// ResourceVersion 0 means "from now, after the current state"; a positive
	// value replays every event after it.
	ResourceVersion int64
	// FromNow is true when the request gave no resourceVersion or "0": the watch
	// starts with synthetic ADDED events for the current state.
	InitialEvents bool
	// InitialEventsEndBookmark sends a bookmark with the
	// k8s.io/initial-events-end annotation after the initial events.
	InitialEventsEndBookmark bool
	AllowBookmarks           bool
	BookmarkInterval         time.Duration
}

// cacheWatcher is one client's watch on the cache.
type cacheWatcher struct {
	cache    *watchCache
	opts     WatchOptions
	initial  []watch.Event
	incoming chan watch.Event
	result   chan watch.Event
	done     chan struct{}
	stopOnce sync.Once
	stopped  bool // guarded by cache.mu
}

// watcherBuffer is how many events a watcher may fall behind before it is
// closed (its client then re-watches from the last resourceVersion it saw).
const watcherBuffer = 1024

// resultBuffer lets a consumer see that more events are waiting (len of
// the result channel): the API server flushes a watch stream only when
// none are, so a burst goes out in a few writes rather than one system
// call per event.
const resultBuffer = 64

// Watch starts a watch served from the cache.
func (s *Store) Watch(ctx context.Context, opts WatchOptions) (watch.Interface, error) {
	c := s.cache
	if opts.ResourceVersion > 0 {
		if err := c.waitFresh(ctx, opts.ResourceVersion); err != nil {
			return nil, apierrors.NewTimeoutError(err.Error(), 1)
		}
	}
	w := &cacheWatcher{
		cache:    c,
		opts:     opts,
		incoming: make(chan watch.Event, watcherBuffer),
		result:   make(chan watch.Event, resultBuffer),
		done:     make(chan struct{}),
	}
	c.mu.Lock()
	if opts.InitialEvents || opts.ResourceVersion == 0 {
		if opts.InitialEvents {
			c.objects.AscendGreaterOrEqual(&cacheEntry{key: opts.Prefix}, func(e *cacheEntry) bool {
				if !strings.HasPrefix(e.key, opts.Prefix) {
					return false
				}
				if opts.Predicate.matches(e) {
					w.initial = append(w.initial, watch.Event{Type: watch.Added, Object: e.obj})
				}
				return true
			})
		}
	} else {
		if opts.ResourceVersion < c.oldestRev {
			c.mu.Unlock()
			return nil, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", opts.ResourceVersion, c.oldestRev))
		}
		n := len(c.ring)
		for i := 0; i < c.ringLen; i++ {
			e := &c.ring[(c.ringHead+i)%n]
			if e.rev <= opts.ResourceVersion {
				continue
			}
			if ev, ok := w.translate(e); ok {
				w.initial = append(w.initial, ev)
			}
		}
	}
	startRev := c.rev.Load()
	c.watchers[w] = struct{}{}
	c.mu.Unlock()
	go w.run(ctx, startRev)
	return w, nil
}

// translate turns a cache event into what this watcher sees: an update that moves
// an object into or out of the selector becomes ADDED or DELETED.
func (w *cacheWatcher) translate(e *cacheEvent) (watch.Event, bool) {
	if !strings.HasPrefix(e.cur.key, w.opts.Prefix) {
		return watch.Event{}, false
	}
	p := w.opts.Predicate
	curOK := p.matches(e.cur)
	switch e.typ {
	case watch.Added:
		return watch.Event{Type: watch.Added, Object: e.cur.obj}, curOK
	case watch.Deleted:
		return watch.Event{Type: watch.Deleted, Object: e.cur.obj}, curOK || p.matches(e.prev)
	default:
		prevOK := p.matches(e.prev)
		switch {
		case curOK && prevOK:
			return watch.Event{Type: watch.Modified, Object: e.cur.obj}, true
		case curOK:
			return watch.Event{Type: watch.Added, Object: e.cur.obj}, true
		case prevOK:
			last := e.cur.obj.DeepCopyObject()
			return watch.Event{Type: watch.Deleted, Object: last}, true
		}
	}
	return watch.Event{}, false
}

// deliverLocked is called with the cache lock held for every new event.
func (w *cacheWatcher) deliverLocked(e *cacheEvent) {
	if w.stopped {
		return
	}
	ev, ok := w.translate(e)
	if !ok {
		return
	}
	select {
	case w.incoming <- ev:
	default:
		// A watcher that cannot keep up is closed; its client re-watches from the
		// last resourceVersion it saw, as Kubernetes' clients do.
		w.stopLocked()
	}
}

func (w *cacheWatcher) stopLocked() {
	if w.stopped {
		return
	}
	w.stopped = true
	delete(w.cache.watchers, w)
	close(w.incoming)
}

func (w *cacheWatcher) run(ctx context.Context, startRev int64) {
	defer close(w.result)
	send := func(ev watch.Event) bool {
		select {
		case w.result <- ev:
			return true
		case <-w.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
	for _, ev := range w.initial {
		if !send(ev) {
			w.Stop()
			return
		}
	}
	w.initial = nil
	if w.opts.InitialEventsEndBookmark {
		if !send(w.bookmark(startRev, true)) {
			w.Stop()
			return
		}
	}
	var tick <-chan time.Time
	if w.opts.AllowBookmarks {
		iv := w.opts.BookmarkInterval
		if iv <= 0 {
			iv = 30 * time.Second
		}
		t := time.NewTicker(iv)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case ev, ok := <-w.incoming:
			if !ok {
				return
			}
			if !send(ev) {
				w.Stop()
				return
			}
		case <-tick:
			if !send(w.bookmark(w.cache.rev.Load(), false)) {
				w.Stop()
				return
			}
		case <-w.done:
			return
		case <-ctx.Done():
			w.Stop()
			return
		}
	}
}

func (w *cacheWatcher) bookmark(rev int64, initialEnd bool) watch.Event {
	obj := w.cache.store.newFunc()
	acc, _ := meta.Accessor(obj)
	_ = setRV(obj, rev)
	if initialEnd {
		acc.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	return watch.Event{Type: watch.Bookmark, Object: obj}
}

// Stop ends the watch.
func (w *cacheWatcher) Stop() {
	w.stopOnce.Do(func() {
		close(w.done)
		w.cache.mu.Lock()
		w.stopLocked()
		w.cache.mu.Unlock()
	})
}

// ResultChan delivers the watch's events.
func (w *cacheWatcher) ResultChan() <-chan watch.Event { return w.result }

var _ watch.Interface = (*cacheWatcher)(nil)
