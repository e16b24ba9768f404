// Package generic is the one store every kind is served by, built-in or
// custom: get, list, watch, create, update, patch (through update funcs),
// delete and deletecollection over storage, driven by a per-kind strategy
// (Resource: defaults, validation, the status/spec split, subresources,
// selectable fields, table columns, allocation hooks) and the admission
// chain. The apiserver above it does HTTP only; the storage below it knows
// nothing of kinds.
package generic

import (
	"context"
	"reflect"

	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Column is one Table column: its definition and how to compute a cell.
type Column struct {
	Name        string
	Type        string
	Format      string
	Priority    int32
	Description string
	Cell        func(obj runtime.Object) interface{}
}

// Resource describes one served resource: it is the kind's strategy.
type Resource struct {
	GVR        schema.GroupVersionResource
	Kind       string
	Namespaced bool
	ShortNames []string
	Categories []string
	// Singular is the lower-case kind.
	Singular string
	New      func() runtime.Object
	NewList  func() runtime.Object

	// HasStatus is true when the resource has a /status subresource: the main
	// resource then ignores status changes and /status ignores everything else.
	HasStatus bool
	// Scale, when set, serves the /scale subresource.
	Scale *ScaleAccess
	// Subresources are more update subresources served like /status (get,
	// update, patch of the whole object), each changing only its part: a
	// CertificateSigningRequest's "approval". PrepareForUpdate says what.
	Subresources []string
	// GenerationOnSpec bumps metadata.generation when the spec changes.
	GenerationOnSpec bool
	// DNSLabelName requires names to be DNS-1123 labels rather than subdomains.
	DNSLabelName bool
	// NameValidator overrides the name rule (for example paths or Lease names).
	NameValidator func(name string, prefix bool) []string

	// Default fills defaults on create and update.
	Default func(obj runtime.Object)
	// PrepareForCreate clears what a client cannot set on create.
	PrepareForCreate func(obj runtime.Object)
	// Validate checks a new object.
	Validate func(obj runtime.Object) field.ErrorList
	// ValidateUpdate checks a changed object against the old one.
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// PrepareForUpdate, when set, adjusts an update of the object
	// (subresource "") or of a subresource ("status", one of Subresources)
	// after the generic spec/status split: it puts back what that endpoint
	// may not change.
	PrepareForUpdate func(subresource string, obj, old runtime.Object)
	// ValidateSubresourceUpdate, when set, checks an update through a
	// subresource (ValidateUpdate covers the main resource only).
	ValidateSubresourceUpdate func(subresource string, obj, old runtime.Object) field.ErrorList
	// Fields gives the selectable fields beyond metadata.name and metadata.namespace.
	Fields func(obj runtime.Object) fields.Set
	// Columns are the Table columns after NAME.
	Columns []Column
	// TableName, when set, is what the NAME column shows (a default
	// StorageClass is "local (default)"); else the object's name.
	TableName func(obj runtime.Object) string
	// Hooks allocate and release what an object holds (ClusterIPs, NodePorts).
	Hooks Hooks
	// CreateOnly marks a review (see Reviews): only create, nothing stored.
	CreateOnly bool
	// Verbs, when set, are the only verbs discovery lists: a read-only
	// resource the API server answers with its own handler (metrics.k8s.io).
	Verbs []string
	// Storage, when set, keeps the objects in another resource's storage
	// (events.k8s.io events as core events).
	Storage *StorageMapping

	// DeleteForbidden, when set, refuses the delete of the named object
	// (the namespaces that always exist).
	DeleteForbidden func(name string) error
	// GracePeriod, when set, is how many seconds a deleted object lingers
	// before it goes (pods on a node); 0 deletes at once.
	GracePeriod func(obj runtime.Object, opts *metav1.DeleteOptions) int64
	// Terminate, when set, makes every delete a termination: the object is
	// marked (deletionTimestamp, Terminate's changes) and stays while
	// something holds it; Terminate reports whether anything does beyond the
	// metadata finalizers (a namespace's spec.finalizers).
	Terminate func(obj runtime.Object) (held bool)
	// KeepStatusOnCreate keeps the status a client sends on create (nodes
	// report theirs from the start).
	KeepStatusOnCreate bool
	// UnknownFields, when set, lists the fields of a client's object that
	// the kind's schema does not know (and Default drops): the apiserver
	// refuses them under fieldValidation=Strict and warns of them under Warn.
	UnknownFields func(obj runtime.Object) []string
	// Custom is set for a custom resource (a kind a CustomResourceDefinition
	// defines): its objects are unstructured and its schemas come from the
	// definition rather than from generated code.
	Custom *CustomSchema
}

// CustomSchema is what the HTTP layer needs of a custom resource beyond its
// strategy: its OpenAPI documents (v2 with its paths and definitions, v3
// for its group version) and the type converter server-side apply uses.
type CustomSchema struct {
	// Definition names the CustomResourceDefinition.
	Definition    string
	OpenAPIV2     *spec.Swagger
	OpenAPIV3     *spec3.OpenAPI
	TypeConverter managedfields.TypeConverter
}

// StorageMapping says that a resource's objects live in another
// resource's storage (its etcd keys and encoding), converted on the way in
// and out.
type StorageMapping struct {
	GVR       schema.GroupVersionResource
	Kind      string
	NewStored func() runtime.Object
	ToStored  func(runtime.Object) runtime.Object
	// FromStored converts a stored object (with its resourceVersion).
	FromStored func(runtime.Object) runtime.Object
}

// ScaleAccess reads and writes the replica count for /scale.
type ScaleAccess struct {
	Get func(obj runtime.Object) (replicas int32, statusReplicas int32, selector string)
	Set func(obj runtime.Object, replicas int32)
}

// Hooks run around writes of a resource; they may allocate from shared pools.
type Hooks interface {
	// BeforeCreate allocates what obj needs; the release func undoes it when the
	// create fails.
	BeforeCreate(ctx context.Context, obj runtime.Object, dryRun bool) (release func(), err error)
	// BeforeUpdate allocates what a changed obj needs.
	BeforeUpdate(ctx context.Context, obj, old runtime.Object, dryRun bool) (release func(), err error)
	// AfterDelete releases what obj held.
	AfterDelete(ctx context.Context, obj runtime.Object)
}

// HasSubresource reports whether sub is one of the resource's extra
// update subresources.
func (r *Resource) HasSubresource(sub string) bool {
	for _, s := range r.Subresources {
		if s == sub {
			return true
		}
	}
	return false
}

// GVK returns the group-version-kind of the resource.
func (r *Resource) GVK() schema.GroupVersionKind {
	return r.GVR.GroupVersion().WithKind(r.Kind)
}

// SelectableFields returns every field a field selector can use for obj.
func (r *Resource) SelectableFields(obj runtime.Object) fields.Set {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return fields.Set{}
	}
	set := fields.Set{"metadata.name": acc.GetName()}
	if r.Namespaced {
		set["metadata.namespace"] = acc.GetNamespace()
	}
	if r.Fields != nil {
		for k, v := range r.Fields(obj) {
			set[k] = v
		}
	}
	return set
}

// ObjectFields returns obj's selectable fields for the watch cache, which
// holds them for every object: name and namespace are the object's own
// strings, and only kinds with more fields (pods' spec.nodeName, ...) get
// a map. A map per object cost about 330 bytes for each stored ConfigMap.
func (r *Resource) ObjectFields(obj runtime.Object) fields.Fields {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return fields.Set{}
	}
	f := &objectFields{name: acc.GetName(), namespace: acc.GetNamespace(), namespaced: r.Namespaced}
	if r.Fields != nil {
		f.extra = r.Fields(obj)
	}
	return f
}

// objectFields is a fields.Fields over an object's name and namespace.
type objectFields struct {
	name, namespace string
	namespaced      bool
	extra           fields.Set
}

// Has reports whether the field exists for the object's kind.
func (f *objectFields) Has(field string) bool {
	switch field {
	case "metadata.name":
		return true
	case "metadata.namespace":
		return f.namespaced
	}
	_, ok := f.extra[field]
	return ok
}

// Get returns the field's value ("" when absent).
func (f *objectFields) Get(field string) string {
	switch field {
	case "metadata.name":
		return f.name
	case "metadata.namespace":
		if f.namespaced {
			return f.namespace
		}
		return ""
	}
	return f.extra[field]
}

// SpecChanged reports whether the Spec field (when the type has one) differs.
func SpecChanged(obj, old runtime.Object) bool {
	a, b := specOf(obj), specOf(old)
	if !a.IsValid() || !b.IsValid() {
		return false
	}
	return !apiequality.Semantic.DeepEqual(a.Interface(), b.Interface())
}

func specOf(obj runtime.Object) reflect.Value {
	v := reflect.ValueOf(obj)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	return v.FieldByName("Spec")
}

// CopyStatus copies the Status field of from into to (used to keep the status
// on main-resource writes).
func CopyStatus(to, from runtime.Object) {
	CopyField(to, from, "Status")
}

// CopyField copies the named top-level field of from into to.
func CopyField(to, from runtime.Object, name string) {
	tv := reflect.ValueOf(to).Elem()
	fv := reflect.ValueOf(from).Elem()
	if tv.Kind() != reflect.Struct {
		return
	}
	tf, ff := tv.FieldByName(name), fv.FieldByName(name)
	if tf.IsValid() && ff.IsValid() && tf.CanSet() {
		tf.Set(ff)
	}
}

// ClearStatus zeroes the Status field.
func ClearStatus(obj runtime.Object) {
	v := reflect.ValueOf(obj).Elem()
	if v.Kind() != reflect.Struct {
		return
	}
	f := v.FieldByName("Status")
	if f.IsValid() && f.CanSet() {
		f.Set(reflect.Zero(f.Type()))
	}
}

// CreationTime returns the creation timestamp for the AGE column.
func CreationTime(obj runtime.Object) metav1.Time {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return metav1.Time{}
	}
	return acc.GetCreationTimestamp()
}
