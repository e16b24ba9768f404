package openapi

import (
	"fmt"
	"reflect"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/kube-openapi/pkg/schemaconv"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	smdschema "sigs.k8s.io/structured-merge-diff/v6/schema"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
	"sigs.k8s.io/structured-merge-diff/v6/value"
)

// createFields computes the managed fields of a plain create without the
// field manager's general machinery. A create by manager M gives M what
// the object adds to an empty one of its kind, which the field manager
// works out by converting both to typed values (validating each), running
// the general updater over every manager, and converting back. Here the
// empty object's typed value is made once per kind, and a create costs one
// comparison of the new object against it (which checks the object
// against the schema as it walks). The result is the same entry (a test
// holds the two together); an object the walk does not accept, or one
// carrying kubectl's last-applied-configuration, takes the general path.
type createFields struct {
	types map[schema.GroupVersionKind]typed.ParseableType

	mu      sync.Mutex
	empties map[schema.GroupVersionKind]*typed.TypedValue
}

// stripped are the fields no manager owns (the field manager's stripMeta).
var stripped = fieldpath.NewSet(
	fieldpath.MakePathOrDie("apiVersion"),
	fieldpath.MakePathOrDie("kind"),
	fieldpath.MakePathOrDie("metadata"),
	fieldpath.MakePathOrDie("metadata", "name"),
	fieldpath.MakePathOrDie("metadata", "namespace"),
	fieldpath.MakePathOrDie("metadata", "creationTimestamp"),
	fieldpath.MakePathOrDie("metadata", "selfLink"),
	fieldpath.MakePathOrDie("metadata", "uid"),
	fieldpath.MakePathOrDie("metadata", "clusterName"),
	fieldpath.MakePathOrDie("metadata", "generation"),
	fieldpath.MakePathOrDie("metadata", "managedFields"),
	fieldpath.MakePathOrDie("metadata", "resourceVersion"),
)

func newCreateFields(schemas map[string]*spec.Schema, kinds map[string][]interface{}) (*createFields, error) {
	s, err := schemaconv.ToSchemaFromOpenAPI(schemas, false)
	if err != nil {
		return nil, fmt.Errorf("structured-merge-diff schema: %w", err)
	}
	parser := &typed.Parser{Schema: smdschema.Schema{Types: s.Types}}
	c := &createFields{types: map[schema.GroupVersionKind]typed.ParseableType{}, empties: map[schema.GroupVersionKind]*typed.TypedValue{}}
	for model, list := range kinds {
		for _, k := range list {
			m, ok := k.(map[string]interface{})
			if !ok {
				continue
			}
			gvk := schema.GroupVersionKind{Group: fmt.Sprint(m["group"]), Version: fmt.Sprint(m["version"]), Kind: fmt.Sprint(m["kind"])}
			c.types[gvk] = parser.Type(model)
		}
	}
	return c, nil
}

// typedOf is obj as a typed value of pt, not validated yet.
func typedOf(obj runtime.Object, pt typed.ParseableType) (*typed.TypedValue, bool) {
	if reflect.ValueOf(obj).Kind() != reflect.Pointer {
		return nil, false
	}
	v, err := value.NewValueReflect(obj)
	if err != nil {
		return nil, false
	}
	return typed.AsTypedUnvalidated(v, pt.Schema, pt.TypeRef), true
}

// empty is the typed value of an empty object of the kind, made once.
func (c *createFields) empty(gvk schema.GroupVersionKind, pt typed.ParseableType, newObj func() runtime.Object) (*typed.TypedValue, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tv, ok := c.empties[gvk]; ok {
		return tv, tv != nil
	}
	obj := newObj()
	obj.GetObjectKind().SetGroupVersionKind(gvk)
	tv, ok := typedOf(obj, pt)
	if ok && tv.Validate() != nil {
		tv, ok = nil, false
	}
	c.empties[gvk] = tv
	return tv, ok
}

// entry is the managed fields entry of manager's create of obj (of kind
// gvk, whose empty objects newObj makes), without the fields reset says the
// endpoint does not own; false when the general path must decide.
func (c *createFields) entry(obj runtime.Object, gvk schema.GroupVersionKind, newObj func() runtime.Object, manager string, reset map[fieldpath.APIVersion]fieldpath.Filter) (metav1.ManagedFieldsEntry, bool) {
	pt, ok := c.types[gvk]
	if !ok || !pt.IsValid() {
		return metav1.ManagedFieldsEntry{}, false
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return metav1.ManagedFieldsEntry{}, false
	}
	if _, ok := acc.GetAnnotations()[lastAppliedAnnotation]; ok {
		return metav1.ManagedFieldsEntry{}, false
	}
	empty, ok := c.empty(gvk, pt, newObj)
	if !ok {
		return metav1.ManagedFieldsEntry{}, false
	}
	tv, ok := typedOf(obj, pt)
	if !ok {
		return metav1.ManagedFieldsEntry{}, false
	}
	cmp, err := empty.Compare(tv)
	if err != nil {
		return metav1.ManagedFieldsEntry{}, false
	}
	set := cmp.Added.Union(cmp.Modified).Difference(cmp.Removed).Difference(stripped)
	apiVersion := gvk.GroupVersion().String()
	if f, ok := reset[fieldpath.APIVersion(apiVersion)]; ok {
		set = f.Filter(set)
	}
	if set.Empty() {
		return metav1.ManagedFieldsEntry{}, false
	}
	raw, err := set.ToJSON()
	if err != nil {
		return metav1.ManagedFieldsEntry{}, false
	}
	now := metav1.Now()
	fields := &metav1.FieldsV1{}
	fields.SetRawBytes(raw)
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: apiVersion,
		Time: &now, FieldsType: "FieldsV1", FieldsV1: fields}, true
}

// lastAppliedAnnotation is kubectl's client-side apply record, which the
// field manager keeps in step with server-side apply.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"
