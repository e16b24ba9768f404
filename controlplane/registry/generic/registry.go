package generic

import (
	"context"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// Registry is the set of served stores, one per resource, and the admission
// chain they share. Stores can come and go while it serves (a custom
// resource appears with its definition).
type Registry struct {
	mu        sync.RWMutex
	stores    map[schema.GroupVersionResource]*Store
	chain     admission.Chain
	listeners []func()
}

// NewRegistry is an empty registry with no admission plugins.
func NewRegistry() *Registry {
	return &Registry{stores: map[schema.GroupVersionResource]*Store{}}
}

// Add serves res from st and returns its store; a store already there for
// the resource is replaced.
func (r *Registry) Add(res *Resource, st *storage.Store) *Store {
	s := &Store{res: res, storage: st, reg: r}
	r.mu.Lock()
	r.stores[res.GVR] = s
	r.mu.Unlock()
	r.changed()
	return s
}

// Remove stops serving the resource.
func (r *Registry) Remove(gvr schema.GroupVersionResource) {
	r.mu.Lock()
	delete(r.stores, gvr)
	r.mu.Unlock()
	r.changed()
}

// OnChange calls fn after every Add and Remove (the apiserver then serves
// the new set: its routes, discovery and OpenAPI).
func (r *Registry) OnChange(fn func()) {
	r.mu.Lock()
	r.listeners = append(r.listeners, fn)
	r.mu.Unlock()
}

func (r *Registry) changed() {
	r.mu.RLock()
	ls := append([]func(){}, r.listeners...)
	r.mu.RUnlock()
	for _, fn := range ls {
		fn()
	}
}

// Store is the store of a resource, or nil when it is not served.
func (r *Registry) Store(gvr schema.GroupVersionResource) *Store {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.stores[gvr]
}

// Stores are every served store, ordered by group, version and resource.
func (r *Registry) Stores() []*Store {
	r.mu.RLock()
	out := make([]*Store, 0, len(r.stores))
	for _, s := range r.stores {
		out = append(out, s)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].res.GVR, out[j].res.GVR
		if a.Group != b.Group {
			return a.Group < b.Group
		}
		if a.Version != b.Version {
			return a.Version < b.Version
		}
		return a.Resource < b.Resource
	})
	return out
}

// SetAdmission sets the chain every write goes through. Call it before
// serving: plugins are usually built over the registry itself.
func (r *Registry) SetAdmission(c admission.Chain) {
	r.mu.Lock()
	r.chain = c
	r.mu.Unlock()
}

// Admission is the registry's chain.
func (r *Registry) Admission() admission.Chain {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.chain
}

// Admit runs the whole chain (mutating, then validating) for a write that is
// not stored through a store: a subresource such as serviceaccounts/token.
func (r *Registry) Admit(ctx context.Context, a *admission.Attributes) error {
	fillUser(ctx, a)
	c := r.Admission()
	if err := c.Admit(ctx, a); err != nil {
		return err
	}
	return c.Validate(ctx, a)
}

// namespaces is the store of core/v1 namespaces.
func (r *Registry) namespaces() *Store {
	return r.Store(corev1.SchemeGroupVersion.WithResource("namespaces"))
}

func fillUser(ctx context.Context, a *admission.Attributes) {
	a.User, a.HasUser = admission.UserFrom(ctx)
}

// attributes describe a write of the store's resource for admission.
func (s *Store) attributes(ctx context.Context, op admission.Operation, sub, namespace, name string, obj, old runtime.Object, dryRun bool) *admission.Attributes {
	a := &admission.Attributes{Operation: op, Resource: s.res.GVR, Subresource: sub, Kind: s.res.GVK(),
		Namespace: namespace, Name: name, Object: obj, OldObject: old, DryRun: dryRun}
	fillUser(ctx, a)
	return a
}
