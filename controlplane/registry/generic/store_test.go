package generic_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/validation/field"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/etcd"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
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

// labeller is a mutating plugin that labels what is created; refuser a
// validating one that refuses objects labelled refuse=yes and records
// what it saw.
type labeller struct{}

func (labeller) Name() string                        { return "labeller" }
func (labeller) Handles(op admission.Operation) bool { return op == admission.Create }
func (labeller) Admit(_ context.Context, a *admission.Attributes) error {
	acc, _ := meta.Accessor(a.Object)
	l := acc.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l["admitted"] = "yes"
	acc.SetLabels(l)
	return nil
}

type refuser struct{ seen []string }

func (r *refuser) Name() string                        { return "refuser" }
func (r *refuser) Handles(op admission.Operation) bool { return true }
func (r *refuser) Validate(_ context.Context, a *admission.Attributes) error {
	obj := a.Object
	if obj == nil {
		obj = a.OldObject
	}
	acc, _ := meta.Accessor(obj)
	r.seen = append(r.seen, fmt.Sprintf("%s %s admitted=%s user=%s", a.Operation, a.Name, acc.GetLabels()["admitted"], a.User.Name))
	if acc.GetLabels()["refuse"] == "yes" {
		return apierrors.NewForbidden(a.Resource.GroupResource(), a.Name, errors.New("refused"))
	}
	return nil
}

// newStore serves ConfigMaps from a real embedded etcd with the test
// plugins and a strategy that requires data["k"].
func newStore(t *testing.T) (*generic.Store, *refuser) {
	t.Helper()
	r := &refuser{}
	return newStoreWith(t, admission.Chain{labeller{}, r}), r
}

// newStoreWith is newStore with the given admission chain.
func newStoreWith(t *testing.T, chain admission.Chain) *generic.Store {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := etcd.Start(ctx, etcd.Config{DataDir: t.TempDir(),
		ClientURL: fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t)), PeerURL: fmt.Sprintf("https://127.0.0.1:%d", cluster.FreePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); b.Close() })
	res := &generic.Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("configmaps"), Kind: "ConfigMap", Namespaced: true,
		New: func() runtime.Object { return &corev1.ConfigMap{} }, NewList: func() runtime.Object { return &corev1.ConfigMapList{} },
		Default: func(obj runtime.Object) {
			cm := obj.(*corev1.ConfigMap)
			if cm.Data == nil {
				cm.Data = map[string]string{}
			}
			if cm.Data["d"] == "" {
				cm.Data["d"] = "defaulted"
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			if obj.(*corev1.ConfigMap).Data["k"] == "" {
				return field.ErrorList{field.Required(field.NewPath("data", "k"), "")}
			}
			return nil
		},
	}
	st, err := storage.New(ctx, b.Client, storage.Config{
		Prefix: "/registry/configmaps/", Resource: res.GVR.GroupResource(),
		Codec: pbCodec{protobuf.NewSerializer(clientgoscheme.Scheme, clientgoscheme.Scheme)}, NewFunc: res.New,
		AttrFunc: func(obj runtime.Object) (labels.Set, fields.Fields, error) {
			cm := obj.(*corev1.ConfigMap)
			return cm.Labels, res.ObjectFields(obj), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := generic.NewRegistry()
	reg.SetAdmission(chain)
	return reg.Add(res, st)
}

func cm(name string, data map[string]string, lbls map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Data: data}
}

// TestStoreCreate: a create is defaulted, mutated by admission, validated
// (422 with the field), then validated by admission (which sees the
// mutation and the user); a dry run stores nothing.
func TestStoreCreate(t *testing.T) {
	ctx := admission.WithUser(context.Background(), admission.User{Name: "alice"})
	s, r := newStore(t)
	out, err := s.Create(ctx, cm("a", map[string]string{"k": "v"}, nil), generic.CreateOptions{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*corev1.ConfigMap)
	if got.Labels["admitted"] != "yes" || got.Data["d"] != "defaulted" || got.UID == "" || got.Namespace != "ns" || got.ResourceVersion == "" {
		t.Fatalf("created %+v", got)
	}
	if want := "CREATE a admitted=yes user=alice"; len(r.seen) != 1 || r.seen[0] != want {
		t.Fatalf("validating plugin saw %q, want %q", r.seen, want)
	}
	_, err = s.Create(ctx, cm("b", nil, nil), generic.CreateOptions{Namespace: "ns"})
	if !apierrors.IsInvalid(err) || len(err.(apierrors.APIStatus).Status().Details.Causes) == 0 || err.(apierrors.APIStatus).Status().Details.Causes[0].Field != "data.k" {
		t.Fatalf("invalid create: %v, want 422 on data.k", err)
	}
	if _, err := s.Create(ctx, cm("c", map[string]string{"k": "v"}, map[string]string{"refuse": "yes"}), generic.CreateOptions{Namespace: "ns"}); !apierrors.IsForbidden(err) {
		t.Fatalf("refused create: %v, want 403", err)
	}
	if _, err := s.Create(ctx, cm("d", map[string]string{"k": "v"}, nil), generic.CreateOptions{Namespace: "ns", DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "ns", "d"); !apierrors.IsNotFound(err) {
		t.Fatalf("dry run stored: %v", err)
	}
	if _, err := s.Create(ctx, cm("e", map[string]string{"k": "v"}, nil), generic.CreateOptions{Namespace: "other", DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "f", Namespace: "x"}}, generic.CreateOptions{Namespace: "ns"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("namespace mismatch: %v, want 400", err)
	}
}

// TestStoreUpdateDelete: updates keep immutable metadata, conflict on a
// stale resourceVersion, write nothing when nothing changes; a delete of an
// object with a finalizer marks it (accepted) and it goes when the last
// finalizer does; list field selectors are checked.
func TestStoreUpdateDelete(t *testing.T) {
	ctx := context.Background()
	s, r := newStore(t)
	created, err := s.Create(ctx, cm("a", map[string]string{"k": "v"}, nil), generic.CreateOptions{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	orig := created.(*corev1.ConfigMap)
	upd := func(f func(c *corev1.ConfigMap)) (runtime.Object, error) {
		return s.Update(ctx, "ns", "a", generic.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			c := cur.(*corev1.ConfigMap).DeepCopy()
			f(c)
			return c, nil
		})
	}
	out, err := upd(func(c *corev1.ConfigMap) {
		c.Data["k"] = "w"
		c.UID = "changed"
		c.Finalizers = []string{"example.com/hold"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := out.(*corev1.ConfigMap); c.UID != orig.UID || c.Data["k"] != "w" || c.ResourceVersion == orig.ResourceVersion {
		t.Fatalf("updated %+v", c)
	}
	if _, err := upd(func(c *corev1.ConfigMap) { c.ResourceVersion = orig.ResourceVersion; c.Data["k"] = "x" }); !apierrors.IsConflict(err) {
		t.Fatalf("stale update: %v, want 409", err)
	}
	same, err := upd(func(c *corev1.ConfigMap) {})
	if err != nil || same.(*corev1.ConfigMap).ResourceVersion != out.(*corev1.ConfigMap).ResourceVersion {
		t.Fatalf("no-op update wrote: %v", err)
	}
	if _, err := upd(func(c *corev1.ConfigMap) { c.Labels = map[string]string{"refuse": "yes"} }); !apierrors.IsForbidden(err) {
		t.Fatalf("refused update: %v, want 403", err)
	}
	n := len(r.seen)
	obj, accepted, err := s.Delete(ctx, "ns", "a", &metav1.DeleteOptions{})
	if err != nil || !accepted || obj.(*corev1.ConfigMap).DeletionTimestamp == nil {
		t.Fatalf("delete with a finalizer: accepted %v, err %v", accepted, err)
	}
	if len(r.seen) <= n || r.seen[n][:6] != "DELETE" {
		t.Fatalf("delete not admitted: %q", r.seen[n:])
	}
	if _, err := upd(func(c *corev1.ConfigMap) { c.Finalizers = nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "ns", "a"); !apierrors.IsNotFound(err) {
		t.Fatalf("object stayed after its last finalizer: %v", err)
	}
	if _, err := s.List(ctx, "ns", &metav1.ListOptions{FieldSelector: "spec.nope=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unknown field selector: %v, want 400", err)
	}
	if _, err := s.Create(ctx, cm("b", map[string]string{"k": "v"}, nil), generic.CreateOptions{Namespace: "ns"}); err != nil {
		t.Fatal(err)
	}
	res, err := s.List(ctx, "ns", &metav1.ListOptions{FieldSelector: "metadata.name=b"})
	if err != nil || len(res.Items) != 1 {
		t.Fatalf("list by name: %v, %d items", err, len(res.Items))
	}
	deleted, _, err := s.DeleteCollection(ctx, "ns", &metav1.ListOptions{}, &metav1.DeleteOptions{})
	if err != nil || len(deleted) != 1 {
		t.Fatalf("deletecollection: %v, %d deleted", err, len(deleted))
	}
}
