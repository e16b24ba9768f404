package generic

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// ListResult is a page of a list, with the objects' cached encodings.
type ListResult = storage.ListResult

// ErrNoChange, returned by an update func, ends the update without a write.
var ErrNoChange = storage.ErrNoChange

// OptimisticLockMsg is the message of a conflict on resourceVersion.
const OptimisticLockMsg = "the object has been modified; please apply your changes to the latest version and try again"

// Store serves one resource: every verb over its storage, with its
// strategy and the registry's admission chain.
type Store struct {
	res     *Resource
	storage *storage.Store
	reg     *Registry
}

// Resource is the store's strategy.
func (s *Store) Resource() *Resource { return s.res }

func (s *Store) key(namespace, name string) string {
	if !s.res.Namespaced {
		namespace = ""
	}
	return s.storage.Key(namespace, name)
}

func (s *Store) prefix(namespace string) string {
	if !s.res.Namespaced {
		namespace = ""
	}
	return s.storage.NamespacePrefix(namespace)
}

// Get reads an object from storage (a consistent read).
func (s *Store) Get(ctx context.Context, namespace, name string) (runtime.Object, error) {
	return s.storage.Get(ctx, s.key(namespace, name), name)
}

// Lookup reads an object from the watch cache when it holds it, else from
// storage: for admission and authentication, which may act on a copy a
// moment old. The object is shared: do not modify it.
func (s *Store) Lookup(ctx context.Context, namespace, name string) (runtime.Object, error) {
	key := s.key(namespace, name)
	if obj, ok := s.storage.CachedGet(key); ok {
		return obj, nil
	}
	return s.storage.Get(ctx, key, name)
}

// CachedList returns the namespace's objects as the watch cache holds them
// (resourceVersion 0), as Kubernetes' admission reads informer listers: a
// fresh read would cost every create an etcd round trip; decisions that
// must not race are compare-and-swap writes. The objects are shared.
func (s *Store) CachedList(ctx context.Context, namespace string) ([]runtime.Object, error) {
	res, err := s.storage.List(ctx, storage.ListOptions{Prefix: s.prefix(namespace), ResourceVersion: "0"})
	if err != nil {
		return nil, err
	}
	return res.Items, nil
}

// predicate turns the selectors of a list or watch into the storage's,
// refusing fields the kind cannot select on.
func (s *Store) predicate(opts *metav1.ListOptions) (storage.Predicate, error) {
	var p storage.Predicate
	if opts.LabelSelector != "" {
		sel, err := labels.Parse(opts.LabelSelector)
		if err != nil {
			return p, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
		p.Label = sel
	}
	if opts.FieldSelector != "" {
		sel, err := fields.ParseSelector(opts.FieldSelector)
		if err != nil {
			return p, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
		known := s.res.SelectableFields(s.res.New())
		for _, rq := range sel.Requirements() {
			if _, ok := known[rq.Field]; !ok {
				return p, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", rq.Field))
			}
		}
		p.Field = sel
	}
	return p, nil
}

// List lists the namespace's objects (every namespace's for ""), with
// selectors, paging and resourceVersion semantics.
func (s *Store) List(ctx context.Context, namespace string, opts *metav1.ListOptions) (*ListResult, error) {
	pred, err := s.predicate(opts)
	if err != nil {
		return nil, err
	}
	return s.storage.List(ctx, storage.ListOptions{
		Prefix: s.prefix(namespace), Predicate: pred,
		ResourceVersion: opts.ResourceVersion, ResourceVersionMatch: opts.ResourceVersionMatch,
		Limit: opts.Limit, Continue: opts.Continue,
	})
}

// WatchOptions are what a watch asks beyond its ListOptions.
type WatchOptions struct {
	// AllowBookmarks lets the watch send bookmarks (the client asked for
	// them and understands the encoding's).
	AllowBookmarks   bool
	BookmarkInterval time.Duration
}

// Watch watches the namespace's objects from the resourceVersion the
// options give (with the initial events when they ask).
func (s *Store) Watch(ctx context.Context, namespace string, opts *metav1.ListOptions, wo WatchOptions) (watch.Interface, error) {
	pred, err := s.predicate(opts)
	if err != nil {
		return nil, err
	}
	w := storage.WatchOptions{Prefix: s.prefix(namespace), Predicate: pred,
		AllowBookmarks: opts.AllowWatchBookmarks && wo.AllowBookmarks, BookmarkInterval: wo.BookmarkInterval}
	switch opts.ResourceVersion {
	case "", "0":
		w.InitialEvents = true
	default:
		rv, err := strconv.ParseInt(opts.ResourceVersion, 10, 64)
		if err != nil || rv < 0 {
			return nil, apierrors.NewBadRequest("invalid resourceVersion " + strconv.Quote(opts.ResourceVersion))
		}
		w.ResourceVersion = rv
	}
	if opts.SendInitialEvents != nil {
		if opts.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan || !opts.AllowWatchBookmarks {
			return nil, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "",
				field.ErrorList{field.Required(field.NewPath("resourceVersionMatch"), "sendInitialEvents requires resourceVersionMatch=NotOlderThan and allowWatchBookmarks=true")})
		}
		w.InitialEvents = *opts.SendInitialEvents
		w.InitialEventsEndBookmark = *opts.SendInitialEvents
		if *opts.SendInitialEvents && w.ResourceVersion > 0 {
			// Initial events "not older than" rv: the current state is.
			w.ResourceVersion = 0
		}
	}
	if opts.ResourceVersion == "" && opts.SendInitialEvents == nil {
		w.InitialEvents = true
	}
	return s.storage.Watch(ctx, w)
}

// CreateOptions are a create's options.
type CreateOptions struct {
	// Namespace is the request's namespace: the object's must be empty or
	// the same.
	Namespace string
	DryRun    bool
	// Track, when set, records the create in the object's managed fields,
	// after admission and validation and before it is stored.
	Track func(obj runtime.Object) (runtime.Object, error)
}

// Create runs the create pipeline: metadata, the strategy's preparation
// and defaults, mutating admission, validation, validating admission,
// managed fields, allocation hooks and the store.
func (s *Store) Create(ctx context.Context, obj runtime.Object, opts CreateOptions) (runtime.Object, error) {
	res := s.res
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if res.Namespaced {
		if acc.GetNamespace() == "" {
			acc.SetNamespace(opts.Namespace)
		} else if acc.GetNamespace() != opts.Namespace {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
	} else {
		acc.SetNamespace("")
	}
	if acc.GetName() == "" && acc.GetGenerateName() != "" {
		acc.SetName(generateName(acc.GetGenerateName()))
	}
	if err := s.checkNamespace(ctx, acc.GetNamespace(), true); err != nil {
		return nil, err
	}
	acc.SetUID(types.UID(uuid.NewString()))
	acc.SetCreationTimestamp(metav1.Now())
	acc.SetResourceVersion("")
	acc.SetDeletionTimestamp(nil)
	acc.SetDeletionGracePeriodSeconds(nil)
	acc.SetSelfLink("")
	if res.GenerationOnSpec {
		acc.SetGeneration(1)
	} else {
		acc.SetGeneration(0)
	}
	if res.HasStatus && !res.KeepStatusOnCreate {
		ClearStatus(obj)
	}
	if res.PrepareForCreate != nil {
		res.PrepareForCreate(obj)
	}
	if res.Default != nil {
		res.Default(obj)
	}
	chain := s.reg.Admission()
	attrs := s.attributes(ctx, admission.Create, "", acc.GetNamespace(), acc.GetName(), obj, nil, opts.DryRun)
	if err := chain.Admit(ctx, attrs); err != nil {
		return nil, err
	}
	if errs := s.validateCreate(obj); len(errs) > 0 {
		return nil, apierrors.NewInvalid(res.GVK().GroupKind(), acc.GetName(), errs)
	}
	if err := chain.Validate(ctx, attrs); err != nil {
		return nil, err
	}
	acc.SetManagedFields(nil)
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	if opts.Track != nil {
		if obj, err = opts.Track(obj); err != nil {
			return nil, err
		}
	}
	var release func()
	if res.Hooks != nil {
		release, err = res.Hooks.BeforeCreate(ctx, obj, opts.DryRun)
		if err != nil {
			return nil, err
		}
	}
	if opts.DryRun {
		if release != nil {
			release()
		}
		return obj, nil
	}
	acc, _ = meta.Accessor(obj)
	out, err := s.storage.Create(ctx, s.key(acc.GetNamespace(), acc.GetName()), obj)
	if err != nil {
		if release != nil {
			release()
		}
		return nil, err
	}
	return out, nil
}

func (s *Store) nameValidator() apivalidation.ValidateNameFunc {
	switch {
	case s.res.NameValidator != nil:
		return s.res.NameValidator
	case s.res.DNSLabelName:
		return apivalidation.NameIsDNSLabel
	default:
		return apivalidation.NameIsDNSSubdomain
	}
}

func (s *Store) validateCreate(obj runtime.Object) field.ErrorList {
	acc, _ := meta.Accessor(obj)
	errs := apivalidation.ValidateObjectMetaAccessor(acc, s.res.Namespaced, s.nameValidator(), field.NewPath("metadata"))
	if s.res.Validate != nil {
		errs = append(errs, s.res.Validate(obj)...)
	}
	return errs
}

// checkNamespace enforces that a namespaced write goes to an existing,
// active namespace.
func (s *Store) checkNamespace(ctx context.Context, namespace string, creating bool) error {
	ns := s.reg.namespaces()
	if !s.res.Namespaced || ns == nil {
		return nil
	}
	// The watch cache answers almost always; a namespace created a moment ago
	// may not be there yet, so a miss asks etcd.
	obj, err := ns.Lookup(ctx, "", namespace)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, namespace)
		}
		return err
	}
	n := obj.(*corev1.Namespace)
	if creating && (n.Status.Phase == corev1.NamespaceTerminating || n.DeletionTimestamp != nil) {
		err := apierrors.NewForbidden(s.res.GVR.GroupResource(), "", fmt.Errorf("unable to create new content in namespace %s because it is being terminated", namespace))
		err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: corev1.NamespaceTerminatingCause, Message: fmt.Sprintf("namespace %s is being terminated", namespace), Field: "metadata.namespace"}}
		return err
	}
	return nil
}

const nameSuffixChars = "bcdfghjklmnpqrstvwxz2456789"

func generateName(base string) string {
	const maxBase = 58
	if len(base) > maxBase {
		base = base[:maxBase]
	}
	b := make([]byte, 5)
	for i := range b {
		b[i] = nameSuffixChars[rand.IntN(len(nameSuffixChars))]
	}
	return base + string(b)
}

// UpdateOptions are an update's options.
type UpdateOptions struct {
	// Subresource is "" for the object itself, "status" or another of the
	// resource's update subresources.
	Subresource string
	DryRun      bool
	// Track, when set, records the update in the object's managed fields;
	// nil when they are computed already (server-side apply).
	Track func(obj, old runtime.Object) (runtime.Object, error)
}

// UpdatedObject computes the object a client wants from the stored one (a
// decoded body, a patch applied to it): it must not modify current.
type UpdatedObject func(current runtime.Object) (runtime.Object, error)

// Update runs the update pipeline against the current object, retrying on
// conflicts: the client's object from newObj, the strategy's preparation
// (immutable metadata, the status/spec split, defaults, generation),
// validation, admission, managed fields, hooks and the compare-and-swap.
func (s *Store) Update(ctx context.Context, namespace, name string, opts UpdateOptions, newObj UpdatedObject) (runtime.Object, error) {
	return s.GuaranteedUpdate(ctx, namespace, name, opts.Subresource, opts.DryRun, func(cur runtime.Object) (runtime.Object, error) {
		obj, err := newObj(cur)
		if err != nil {
			return nil, err
		}
		return s.PrepareUpdate(ctx, obj, cur, opts)
	})
}

// PrepareUpdate turns a client's new object into what is stored, given the
// current one. It returns nil when the object goes (its last finalizer
// removed from an object being deleted) and ErrNoChange when nothing
// changes.
func (s *Store) PrepareUpdate(ctx context.Context, obj, cur runtime.Object, opts UpdateOptions) (runtime.Object, error) {
	res := s.res
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	curAcc, _ := meta.Accessor(cur)
	if rv := acc.GetResourceVersion(); rv != "" && rv != curAcc.GetResourceVersion() {
		return nil, apierrors.NewConflict(res.GVR.GroupResource(), curAcc.GetName(), errors.New(OptimisticLockMsg))
	}
	if acc.GetName() != curAcc.GetName() {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), curAcc.GetName()))
	}
	acc.SetNamespace(curAcc.GetNamespace())
	acc.SetUID(curAcc.GetUID())
	acc.SetCreationTimestamp(curAcc.GetCreationTimestamp())
	acc.SetDeletionTimestamp(curAcc.GetDeletionTimestamp())
	acc.SetDeletionGracePeriodSeconds(curAcc.GetDeletionGracePeriodSeconds())
	acc.SetGeneration(curAcc.GetGeneration())
	acc.SetResourceVersion(curAcc.GetResourceVersion())
	acc.SetSelfLink("")
	sub := opts.Subresource
	if res.HasStatus && !res.HasSubresource(sub) {
		if sub == "status" {
			CopyField(obj, cur, "Spec")
		} else {
			CopyStatus(obj, cur)
		}
	}
	if res.PrepareForUpdate != nil {
		res.PrepareForUpdate(sub, obj, cur)
	}
	if res.Default != nil {
		res.Default(obj)
	}
	if res.GenerationOnSpec && SpecChanged(obj, cur) {
		acc.SetGeneration(curAcc.GetGeneration() + 1)
	}
	if err := s.validateUpdate(obj, cur, sub); err != nil {
		return nil, err
	}
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	cur.GetObjectKind().SetGroupVersionKind(res.GVK())
	if opts.Track != nil {
		if obj, err = opts.Track(obj, cur); err != nil {
			return nil, err
		}
	}
	if semanticEqualIgnoringRV(obj, cur) {
		return nil, ErrNoChange
	}
	acc, _ = meta.Accessor(obj)
	if acc.GetDeletionTimestamp() != nil && len(acc.GetFinalizers()) == 0 {
		return nil, nil // the last finalizer is gone: the object goes.
	}
	return obj, nil
}

// validateUpdate is the strategy's validation of an update through sub
// ("" for the object itself): a 422 naming the fields, or nil.
func (s *Store) validateUpdate(obj, cur runtime.Object, sub string) error {
	res := s.res
	acc, err := meta.Accessor(obj)
	if err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	curAcc, _ := meta.Accessor(cur)
	errs := apivalidation.ValidateObjectMetaAccessorUpdate(acc, curAcc, field.NewPath("metadata"))
	errs = append(errs, apivalidation.ValidateObjectMetaAccessor(acc, res.Namespaced, s.nameValidator(), field.NewPath("metadata"))...)
	if res.Validate != nil {
		errs = append(errs, res.Validate(obj)...)
	}
	if res.ValidateUpdate != nil && sub == "" {
		errs = append(errs, res.ValidateUpdate(obj, cur)...)
	}
	if res.ValidateSubresourceUpdate != nil && sub != "" {
		errs = append(errs, res.ValidateSubresourceUpdate(sub, obj, cur)...)
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(res.GVK().GroupKind(), curAcc.GetName(), errs)
	}
	return nil
}

// semanticEqualIgnoringRV reports whether an update changes nothing but
// bookkeeping (resourceVersion and managedFields timestamps).
func semanticEqualIgnoringRV(a, b runtime.Object) bool {
	a2, b2 := a.DeepCopyObject(), b.DeepCopyObject()
	for _, o := range []runtime.Object{a2, b2} {
		acc, _ := meta.Accessor(o)
		acc.SetResourceVersion("")
		mf := acc.GetManagedFields()
		for i := range mf {
			mf[i].Time = nil
		}
		acc.SetManagedFields(mf)
		o.GetObjectKind().SetGroupVersionKind(a.GetObjectKind().GroupVersionKind())
	}
	return apiequality.Semantic.DeepEqual(a2, b2)
}

type errDryRun struct{ obj runtime.Object }

func (e errDryRun) Error() string { return "dry run" }

// GuaranteedUpdate writes what fn makes of the current object, with
// admission (mutating, then validating), the resource's hooks and dry-run,
// retrying on conflicts. fn is the whole strategy: Update passes one that
// applies the resource's; subresources with their own rules (a pod's
// binding, a namespace's finalize) pass theirs. fn returning nil deletes the
// object; ErrNoChange writes nothing.
func (s *Store) GuaranteedUpdate(ctx context.Context, namespace, name, subresource string, dryRun bool, fn func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, error) {
	return s.guaranteedUpdate(ctx, namespace, name, subresource, dryRun, fn, nil)
}

// admitFunc runs admission for an update whose attributes are not the
// object's own (a /scale write is admitted as the Scale it is).
type admitFunc func(ctx context.Context, chain admission.Chain, next, cur runtime.Object) error

func (s *Store) guaranteedUpdate(ctx context.Context, namespace, name, subresource string, dryRun bool, fn func(cur runtime.Object) (runtime.Object, error), admit admitFunc) (runtime.Object, error) {
	res := s.res
	chain := s.reg.Admission()
	var release func()
	wrapped := func(cur runtime.Object) (runtime.Object, error) {
		next, err := fn(cur)
		if err != nil || next == nil {
			return next, err
		}
		if admit != nil {
			if err := admit(ctx, chain, next, cur); err != nil {
				return nil, err
			}
		} else {
			attrs := s.attributes(ctx, admission.Update, subresource, namespace, name, next, cur, dryRun)
			if err := chain.Admit(ctx, attrs); err != nil {
				return nil, err
			}
			// A webhook's patch has not been through the strategy's
			// validation, which ran before admission.
			if attrs.Changed {
				if err := s.validateUpdate(next, cur, subresource); err != nil {
					return nil, err
				}
			}
			if err := chain.Validate(ctx, attrs); err != nil {
				return nil, err
			}
		}
		if res.Hooks != nil {
			if release != nil {
				release()
			}
			release, err = res.Hooks.BeforeUpdate(ctx, next, cur, dryRun)
			if err != nil {
				return nil, err
			}
		}
		if dryRun {
			return next, errDryRun{next}
		}
		return next, nil
	}
	out, deleted, err := s.storage.GuaranteedUpdate(ctx, s.key(namespace, name), name, wrapped)
	var dr errDryRun
	if errors.As(err, &dr) {
		if release != nil {
			release()
		}
		return dr.obj, nil
	}
	if err != nil {
		if release != nil {
			release()
		}
		return nil, err
	}
	if deleted && res.Hooks != nil {
		res.Hooks.AfterDelete(ctx, out)
	}
	return out, nil
}

// Modify is a bare compare-and-swap update of the stored object, without
// strategy, admission or hooks: for admission plugins and subresources that
// keep bookkeeping in another object (a quota's usage, a disruption
// budget's allowance). fn returning ErrNoChange writes nothing.
func (s *Store) Modify(ctx context.Context, namespace, name string, fn func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, error) {
	out, _, err := s.storage.GuaranteedUpdate(ctx, s.key(namespace, name), name, fn)
	return out, err
}
