package customresource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	clientv3 "go.etcd.io/etcd/client/v3"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"k8s.io/apiextensions-apiserver/pkg/apiserver/conversion"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiserver/pkg/storage/value"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// Controller serves the kinds that definitions define: it follows the
// definitions' store and, for each, adds a store per served version to the
// registry (the apiserver serves it from there), marks the definition
// Established, and on its deletion deletes its objects before letting it go.
type Controller struct {
	reg    *generic.Registry
	crds   *generic.Store
	client *clientv3.Client

	// converters make the converters of definitions with Webhook
	// conversion (SetServiceResolver).
	converters *conversion.CRConverterFactory

	// encryptFor gives a custom resource's transformer at rest.
	encryptFor func(schema.GroupResource) value.Transformer

	mu     sync.Mutex
	served map[string]*served // by definition name
}

// served is what one definition serves.
type served struct {
	resourceVersion string
	gvrs            []schema.GroupVersionResource
	cancel          context.CancelFunc
}

// NewController serves the definitions in reg's customresourcedefinitions
// store, keeping their objects in etcd through client.
//
// encryptFor gives the transformer of a custom resource's values at rest
// (nil: stored as they are), so that an EncryptionConfiguration listing a
// custom resource, or *.*, applies to it as in Kubernetes; nil for none.
func NewController(reg *generic.Registry, client *clientv3.Client, encryptFor func(schema.GroupResource) value.Transformer) (*Controller, error) {
	crds := reg.Store(apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions"))
	if crds == nil {
		return nil, errors.New("customresourcedefinitions are not served")
	}
	return &Controller{reg: reg, crds: crds, client: client, served: map[string]*served{}, encryptFor: encryptFor}, nil
}

// Run follows the definitions, and the namespaces whose custom objects go
// with them, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if ns := c.reg.Store(corev1.SchemeGroupVersion.WithResource("namespaces")); ns != nil {
		go c.followNamespaces(ctx, ns)
	}
	for ctx.Err() == nil {
		if err := c.follow(ctx); err != nil && ctx.Err() == nil {
			slog.Warn("following CustomResourceDefinitions", "err", err)
			time.Sleep(time.Second)
		}
	}
}

func (c *Controller) follow(ctx context.Context) error {
	w, err := c.crds.Watch(ctx, "", &metav1.ListOptions{}, generic.WatchOptions{})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return errors.New("watch ended")
			}
			crd, ok := ev.Object.(*apiextensionsv1.CustomResourceDefinition)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				c.stop(crd.Name)
				continue
			}
			if err := c.sync(ctx, crd); err != nil {
				slog.Warn("serving CustomResourceDefinition", "name", crd.Name, "err", err)
			}
		}
	}
}

// sync serves a definition as it now is, or cleans up after it.
func (c *Controller) sync(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) error {
	if crd.DeletionTimestamp != nil {
		return c.cleanup(ctx, crd)
	}
	c.mu.Lock()
	cur := c.served[crd.Name]
	c.mu.Unlock()
	if cur != nil && cur.resourceVersion == specVersion(crd) {
		return nil
	}
	var resources []*generic.Resource
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		res, err := NewResource(crd, v.Name)
		if err != nil {
			return c.setStatus(ctx, crd.Name, false, err.Error())
		}
		resources = append(resources, res)
	}
	conv, err := c.converter(crd)
	if err != nil {
		return c.setStatus(ctx, crd.Name, false, err.Error())
	}
	// The new version's stores are made first and take the old ones'
	// places in one step each: stopping first left a gap in which the
	// kind was not found (a client reading right after a change of the
	// definition got a 404).
	sctx, cancel := context.WithCancel(ctx)
	s := &served{resourceVersion: specVersion(crd), cancel: cancel}
	stores := make([]*storage.Store, 0, len(resources))
	for _, res := range resources {
		st, err := c.newStorage(sctx, crd, res, conv)
		if err != nil {
			cancel()
			return err
		}
		stores = append(stores, st)
	}
	kept := map[schema.GroupVersionResource]bool{}
	for i, res := range resources {
		c.reg.Add(res, stores[i])
		s.gvrs = append(s.gvrs, res.GVR)
		kept[res.GVR] = true
	}
	c.mu.Lock()
	old := c.served[crd.Name]
	c.served[crd.Name] = s
	c.mu.Unlock()
	if old != nil {
		for _, gvr := range old.gvrs {
			if !kept[gvr] {
				c.reg.Remove(gvr)
			}
		}
		old.cancel()
	}
	slog.Info("serving custom resource", "definition", crd.Name, "versions", len(resources))
	return c.setStatus(ctx, crd.Name, true, "")
}

// specVersion identifies what a definition serves: its generation.
func specVersion(crd *apiextensionsv1.CustomResourceDefinition) string {
	return fmt.Sprint(crd.UID, "/", crd.Generation)
}

// stop stops serving a definition's kinds.
func (c *Controller) stop(name string) {
	c.mu.Lock()
	s := c.served[name]
	delete(c.served, name)
	c.mu.Unlock()
	if s == nil {
		return
	}
	for _, gvr := range s.gvrs {
		c.reg.Remove(gvr)
	}
	s.cancel()
}

// cleanup deletes every object of a definition being deleted, then removes
// its finalizer so that it goes.
func (c *Controller) cleanup(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) error {
	c.mu.Lock()
	s := c.served[crd.Name]
	c.mu.Unlock()
	if s != nil {
		for _, gvr := range s.gvrs {
			st := c.reg.Store(gvr)
			if st == nil {
				continue
			}
			if _, _, err := st.DeleteCollection(ctx, "", &metav1.ListOptions{}, &metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("deleting the objects of %s: %w", crd.Name, err)
			}
			// One version's store deletes them all (they share storage).
			break
		}
	}
	c.stop(crd.Name)
	_, err := c.crds.Modify(ctx, "", crd.Name, func(cur runtime.Object) (runtime.Object, error) {
		next := cur.(*apiextensionsv1.CustomResourceDefinition).DeepCopy()
		var keep []string
		for _, f := range next.Finalizers {
			if f != CleanupFinalizer {
				keep = append(keep, f)
			}
		}
		if len(keep) == len(next.Finalizers) {
			return nil, generic.ErrNoChange
		}
		next.Finalizers = keep
		if next.DeletionTimestamp != nil && len(keep) == 0 {
			return nil, nil
		}
		return next, nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// setStatus records whether the definition is served: its accepted names,
// stored versions and the NamesAccepted and Established conditions.
func (c *Controller) setStatus(ctx context.Context, name string, ok bool, problem string) error {
	_, err := c.crds.Modify(ctx, "", name, func(cur runtime.Object) (runtime.Object, error) {
		prev := cur.(*apiextensionsv1.CustomResourceDefinition)
		next := prev.DeepCopy()
		st := &next.Status
		if ok {
			st.AcceptedNames = next.Spec.Names
			if st.AcceptedNames.ListKind == "" {
				st.AcceptedNames.ListKind = st.AcceptedNames.Kind + "List"
			}
			if st.AcceptedNames.Singular == "" {
				st.AcceptedNames.Singular = st.AcceptedNames.Plural
			}
			setCondition(st, apiextensionsv1.NamesAccepted, apiextensionsv1.ConditionTrue, "NoConflicts", "no conflicts found")
			setCondition(st, apiextensionsv1.Established, apiextensionsv1.ConditionTrue, "InitialNamesAccepted", "the initial names have been accepted")
			for _, v := range next.Spec.Versions {
				if v.Storage {
					st.StoredVersions = appendMissing(st.StoredVersions, v.Name)
				}
			}
		} else {
			setCondition(st, apiextensionsv1.Established, apiextensionsv1.ConditionFalse, "NotServed", problem)
		}
		if equalStatus(prev, next) {
			return nil, generic.ErrNoChange
		}
		return next, nil
	})
	return err
}

func equalStatus(a, b *apiextensionsv1.CustomResourceDefinition) bool {
	x, _ := json.Marshal(a.Status)
	y, _ := json.Marshal(b.Status)
	return string(x) == string(y)
}

// newStorage is the etcd storage of one version: every version of a
// definition keeps its objects under the same keys, as JSON, read back as
// the version asked for (None conversion: only apiVersion changes; Webhook
// conversion: through conv, stored in the storage version).
func (c *Controller) newStorage(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition, res *generic.Resource, conv runtime.ObjectConvertor) (*storage.Store, error) {
	gvk := res.GVK()
	prefix := "/registry/" + crd.Spec.Group + "/" + crd.Spec.Names.Plural + "/"
	var transformer value.Transformer
	if c.encryptFor != nil {
		transformer = c.encryptFor(schema.GroupResource{Group: crd.Spec.Group, Resource: crd.Spec.Names.Plural})
	}
	codec := jsonCodec{gvk: gvk, conv: conv, storage: storageVersion(crd)}
	if structural, err := structuralFor(crd, gvk.Version); err == nil && structural != nil {
		codec.defaults = func(obj map[string]interface{}) { structuraldefaulting.Default(obj, structural) }
	}
	return storage.New(ctx, c.client, storage.Config{
		Prefix: prefix, Resource: res.GVR.GroupResource(), Codec: codec, NewFunc: res.New,
		Transformer: transformer,
		JSONEncode:  func(obj runtime.Object) ([]byte, error) { return json.Marshal(obj) },
		AttrFunc: func(obj runtime.Object) (labels.Set, fields.Fields, error) {
			acc, err := meta.Accessor(obj)
			if err != nil {
				return nil, nil, err
			}
			return labels.Set(acc.GetLabels()), res.ObjectFields(obj), nil
		},
		CacheEvents: 1000,
	})
}

// followNamespaces deletes the custom objects of every namespace that goes:
// the namespace controller empties a terminating namespace of the built-in
// kinds; the custom kinds are this controller's to clear.
func (c *Controller) followNamespaces(ctx context.Context, namespaces *generic.Store) {
	for ctx.Err() == nil {
		w, err := namespaces.Watch(ctx, "", &metav1.ListOptions{}, generic.WatchOptions{})
		if err != nil {
			time.Sleep(time.Second)
			continue
		}
		for ev := range w.ResultChan() {
			ns, ok := ev.Object.(*corev1.Namespace)
			if !ok || (ev.Type != watch.Deleted && ns.DeletionTimestamp == nil) {
				continue
			}
			for _, st := range c.reg.Stores() {
				res := st.Resource()
				if res.Custom == nil || !res.Namespaced {
					continue
				}
				if _, _, err := st.DeleteCollection(ctx, ns.Name, &metav1.ListOptions{}, &metav1.DeleteOptions{}); err != nil {
					slog.Warn("deleting the custom objects of a namespace", "namespace", ns.Name, "resource", res.GVR, "err", err)
				}
			}
		}
		w.Stop()
	}
}
