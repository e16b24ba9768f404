package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/watch"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/storage"
	"github.com/petrel-project/petrel/test/cluster"
)

type pbCodec struct{ s *protobuf.Serializer }

func (c pbCodec) Encode(obj runtime.Object) ([]byte, error) {
	obj.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	var b bytes.Buffer
	err := c.s.Encode(obj, &b)
	return b.Bytes(), err
}

func (c pbCodec) Decode(data []byte, into runtime.Object) (runtime.Object, error) {
	obj, _, err := c.s.Decode(data, nil, into)
	return obj, err
}

// freeURL is a loopback URL on a port no other caller in this test binary
// got (two URLs of one etcd must differ).
func freeURL(t *testing.T) string {
	return fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t))
}

// newStore starts a real embedded etcd and a ConfigMap store on it.
func newStore(t *testing.T, cacheEvents int) (*storage.Store, *etcd.Backend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := etcd.Start(ctx, etcd.Config{DataDir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); b.Close() })
	st, err := storage.New(ctx, b.Client, storage.Config{
		Prefix: "/registry/configmaps/", Resource: schema.GroupResource{Resource: "configmaps"},
		Codec: pbCodec{protobuf.NewSerializer(clientgoscheme.Scheme, clientgoscheme.Scheme)}, NewFunc: func() runtime.Object { return &corev1.ConfigMap{} },
		AttrFunc: func(obj runtime.Object) (labels.Set, fields.Fields, error) {
			cm := obj.(*corev1.ConfigMap)
			return cm.Labels, fields.Set{"metadata.name": cm.Name}, nil
		},
		CacheEvents: cacheEvents,
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, b
}

func cm(name string, lbls map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: lbls}, Data: map[string]string{"k": name}}
}

func TestCreateGetUpdateDelete(t *testing.T) {
	st, _ := newStore(t, 100)
	ctx := context.Background()
	key := st.Key("ns", "a")
	created, err := st.Create(ctx, key, cm("a", nil))
	if err != nil {
		t.Fatal(err)
	}
	rv := created.(*corev1.ConfigMap).ResourceVersion
	if rv == "" || rv == "0" {
		t.Fatalf("create did not set resourceVersion: %q", rv)
	}
	if _, err := st.Create(ctx, key, cm("a", nil)); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: want AlreadyExists, got %v", err)
	}
	got, err := st.Get(ctx, key, "a")
	if err != nil || got.(*corev1.ConfigMap).ResourceVersion != rv || got.(*corev1.ConfigMap).Data["k"] != "a" {
		t.Fatalf("get: %v %+v", err, got)
	}
	updated, _, err := st.GuaranteedUpdate(ctx, key, "a", func(cur runtime.Object) (runtime.Object, error) {
		c := cur.DeepCopyObject().(*corev1.ConfigMap)
		c.Data["k"] = "changed"
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated.(*corev1.ConfigMap).ResourceVersion == rv {
		t.Fatal("update kept the old resourceVersion")
	}
	// A delete guarded by the old revision conflicts.
	var old int64
	fmt.Sscan(rv, &old)
	if _, err := st.Delete(ctx, key, "a", old); !apierrors.IsConflict(err) {
		t.Fatalf("stale delete: want Conflict, got %v", err)
	}
	if _, err := st.Delete(ctx, key, "a", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, key, "a"); !apierrors.IsNotFound(err) {
		t.Fatalf("after delete: want NotFound, got %v", err)
	}
}

func TestGuaranteedUpdateRetriesOnRace(t *testing.T) {
	st, _ := newStore(t, 100)
	ctx := context.Background()
	key := st.Key("ns", "race")
	if _, err := st.Create(ctx, key, cm("race", nil)); err != nil {
		t.Fatal(err)
	}
	calls := 0
	_, _, err := st.GuaranteedUpdate(ctx, key, "race", func(cur runtime.Object) (runtime.Object, error) {
		calls++
		if calls == 1 {
			// Another writer slips in between our read and our write.
			if _, _, err := st.GuaranteedUpdate(ctx, key, "race", func(c runtime.Object) (runtime.Object, error) {
				x := c.DeepCopyObject().(*corev1.ConfigMap)
				x.Data["other"] = "1"
				return x, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		c := cur.DeepCopyObject().(*corev1.ConfigMap)
		c.Data["mine"] = "1"
		return c, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("update func ran %d times, want 2 (one retry after the race)", calls)
	}
	got, _ := st.Get(ctx, key, "race")
	d := got.(*corev1.ConfigMap).Data
	if d["other"] != "1" || d["mine"] != "1" {
		t.Fatalf("a write was lost: %v", d)
	}
}

func TestListFromCacheWithSelectorsAndPages(t *testing.T) {
	st, _ := newStore(t, 100)
	ctx := context.Background()
	for i := 0; i < 25; i++ {
		color := "red"
		if i%2 == 1 {
			color = "blue"
		}
		if _, err := st.Create(ctx, st.Key("ns", fmt.Sprintf("cm-%02d", i)), cm(fmt.Sprintf("cm-%02d", i), map[string]string{"color": color})); err != nil {
			t.Fatal(err)
		}
	}
	sel, _ := labels.Parse("color=blue")
	res, err := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Predicate: storage.Predicate{Label: sel}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Items) != 12 {
		t.Fatalf("blue items: %d, want 12", len(res.Items))
	}
	// The consistent list (no resourceVersion) saw every create.
	all, _ := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns")})
	if len(all.Items) != 25 {
		t.Fatalf("list after creates: %d items", len(all.Items))
	}
	var names []string
	opts := storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Limit: 10}
	for {
		page, err := st.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Items {
			names = append(names, o.(*corev1.ConfigMap).Name)
		}
		if page.Continue == "" {
			break
		}
		if page.RemainingItemCount == nil || *page.RemainingItemCount <= 0 {
			t.Fatalf("page without remainingItemCount: %+v", page)
		}
		opts.Continue = page.Continue
	}
	if len(names) != 25 || names[0] != "cm-00" || names[24] != "cm-24" {
		t.Fatalf("paged names: %v", names)
	}
	if _, err := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Continue: "garbage!"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("bad continue token: want BadRequest, got %v", err)
	}
}

// TestLimitedListsReturnEverything holds every list with a limit to one rule:
// it returns all items, or a page with a continue token that leads to the rest.
// A reflector's first list (resourceVersion=0, limit=500) once came back with the
// first page only and no token.
func TestLimitedListsReturnEverything(t *testing.T) {
	st, _ := newStore(t, 100)
	ctx := context.Background()
	for i := 0; i < 30; i++ {
		if _, err := st.Create(ctx, st.Key("ns", fmt.Sprintf("cm-%02d", i)), cm(fmt.Sprintf("cm-%02d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	all, err := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns")})
	if err != nil {
		t.Fatal(err)
	}
	rv := fmt.Sprint(all.ResourceVersion)
	cases := []struct {
		name string
		opts storage.ListOptions
	}{
		{"no resourceVersion", storage.ListOptions{Limit: 7}},
		{"resourceVersion=0", storage.ListOptions{Limit: 7, ResourceVersion: "0"}},
		{"resourceVersion=0 NotOlderThan", storage.ListOptions{Limit: 7, ResourceVersion: "0", ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}},
		{"resourceVersion=N", storage.ListOptions{Limit: 7, ResourceVersion: rv}},
		{"resourceVersion=N NotOlderThan", storage.ListOptions{Limit: 7, ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan}},
		{"resourceVersion=N Exact", storage.ListOptions{Limit: 7, ResourceVersion: rv, ResourceVersionMatch: metav1.ResourceVersionMatchExact}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := tc.opts
			opts.Prefix = st.NamespacePrefix("ns")
			seen := map[string]bool{}
			for pages := 0; ; pages++ {
				if pages > 30 {
					t.Fatal("more pages than items")
				}
				page, err := st.List(ctx, opts)
				if err != nil {
					t.Fatal(err)
				}
				if int64(len(page.Items)) > opts.Limit && page.Continue != "" {
					t.Fatalf("a page of %d items over the limit %d came with a continue token", len(page.Items), opts.Limit)
				}
				for _, o := range page.Items {
					seen[o.(*corev1.ConfigMap).Name] = true
				}
				if page.Continue == "" {
					break
				}
				opts.Continue = page.Continue
			}
			if len(seen) != 30 {
				t.Fatalf("saw %d of 30 items", len(seen))
			}
		})
	}
}

func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	return watch.Event{}
}

func TestWatchFromRevisionAndSelectorTransitions(t *testing.T) {
	st, _ := newStore(t, 100)
	ctx := context.Background()
	first, _ := st.Create(ctx, st.Key("ns", "a"), cm("a", map[string]string{"sel": "yes"}))
	var rv int64
	fmt.Sscan(first.(*corev1.ConfigMap).ResourceVersion, &rv)
	sel, _ := labels.Parse("sel=yes")
	w, err := st.Watch(ctx, storage.WatchOptions{Prefix: st.NamespacePrefix("ns"), ResourceVersion: rv, Predicate: storage.Predicate{Label: sel}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	_, _ = st.Create(ctx, st.Key("ns", "b"), cm("b", map[string]string{"sel": "no"}))
	_, _ = st.Create(ctx, st.Key("ns", "c"), cm("c", map[string]string{"sel": "yes"}))
	if ev := nextEvent(t, w); ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "c" {
		t.Fatalf("want ADDED c, got %s %s", ev.Type, ev.Object.(*corev1.ConfigMap).Name)
	}
	// b moves into the selector: ADDED; a moves out: DELETED.
	relabel := func(name, v string) {
		_, _, err := st.GuaranteedUpdate(ctx, st.Key("ns", name), name, func(cur runtime.Object) (runtime.Object, error) {
			c := cur.DeepCopyObject().(*corev1.ConfigMap)
			c.Labels = map[string]string{"sel": v}
			return c, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	relabel("b", "yes")
	if ev := nextEvent(t, w); ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "b" {
		t.Fatalf("want ADDED b, got %s", ev.Type)
	}
	relabel("a", "no")
	if ev := nextEvent(t, w); ev.Type != watch.Deleted || ev.Object.(*corev1.ConfigMap).Name != "a" {
		t.Fatalf("want DELETED a, got %s", ev.Type)
	}
	if _, err := st.Delete(ctx, st.Key("ns", "c"), "c", 0); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, w); ev.Type != watch.Deleted || ev.Object.(*corev1.ConfigMap).Name != "c" {
		t.Fatalf("want DELETED c, got %s", ev.Type)
	}
}

func TestWatchTooOldIsGoneAndInitialEventsBookmark(t *testing.T) {
	st, _ := newStore(t, 5) // a tiny event window
	ctx := context.Background()
	first, _ := st.Create(ctx, st.Key("ns", "x0"), cm("x0", nil))
	var rv int64
	fmt.Sscan(first.(*corev1.ConfigMap).ResourceVersion, &rv)
	for i := 1; i < 12; i++ {
		if _, err := st.Create(ctx, st.Key("ns", fmt.Sprintf("x%d", i)), cm(fmt.Sprintf("x%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	// Let the cache see everything.
	if _, err := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("")}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Watch(ctx, storage.WatchOptions{Prefix: st.NamespacePrefix(""), ResourceVersion: rv}); !apierrors.IsResourceExpired(err) {
		t.Fatalf("watch from an evicted revision: want 410 Expired, got %v", err)
	}
	w, err := st.Watch(ctx, storage.WatchOptions{Prefix: st.NamespacePrefix(""), InitialEvents: true, InitialEventsEndBookmark: true, AllowBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i := 0; i < 12; i++ {
		if ev := nextEvent(t, w); ev.Type != watch.Added {
			t.Fatalf("initial event %d: %s", i, ev.Type)
		}
	}
	ev := nextEvent(t, w)
	if ev.Type != watch.Bookmark || ev.Object.(*corev1.ConfigMap).Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("want the initial-events-end bookmark, got %s %+v", ev.Type, ev.Object)
	}
}

// A continue token whose revision etcd has compacted away gets 410 Gone
// with a token that goes on from the same key at the latest revision, as
// Kubernetes answers; continuing with it lists the rest, including what was
// created since.
func TestContinueAfterCompaction(t *testing.T) {
	st, b := newStore(t, 100)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		if _, err := st.Create(ctx, st.Key("ns", fmt.Sprintf("cm-%02d", i)), cm(fmt.Sprintf("cm-%02d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	first, err := st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Limit: 2})
	if err != nil || first.Continue == "" {
		t.Fatalf("first page: %v %+v", err, first)
	}
	if _, err := st.Create(ctx, st.Key("ns", "cm-99"), cm("cm-99", nil)); err != nil {
		t.Fatal(err)
	}
	resp, err := b.Client.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Client.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	_, err = st.List(ctx, storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Limit: 2, Continue: first.Continue})
	var status apierrors.APIStatus
	if !apierrors.IsResourceExpired(err) || !errors.As(err, &status) || status.Status().ListMeta.Continue == "" {
		t.Fatalf("continue after compaction: %v, want 410 Gone with a continue token", err)
	}
	var names []string
	opts := storage.ListOptions{Prefix: st.NamespacePrefix("ns"), Limit: 2, Continue: status.Status().ListMeta.Continue}
	for {
		page, err := st.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Items {
			names = append(names, o.(*corev1.ConfigMap).Name)
		}
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	if fmt.Sprint(names) != "[cm-02 cm-03 cm-04 cm-05 cm-99]" {
		t.Fatalf("the rest after the 410: %v", names)
	}
}
