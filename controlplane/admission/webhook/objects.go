package webhook

import (
	"fmt"
	"reflect"
	"sync/atomic"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	upstream "k8s.io/apiserver/pkg/admission"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// objects is what k8s.io/apiserver's plugins need to create, convert and
// default objects (admission.ObjectInterfaces). Petrel's writes carry the
// external (served) types themselves, not internal ones, so conversion is
// mostly a copy: the same Go type is copied, custom objects are copied
// with the asked apiVersion (their versions share one schema: None
// conversion), and anything else goes to the scheme.
type objects struct {
	scheme   *runtime.Scheme
	mapper   *resourceMapper
	defaults func(runtime.Object)
}

func (o *objects) GetObjectCreater() runtime.ObjectCreater { return creater{o.scheme} }
func (o *objects) GetObjectTyper() runtime.ObjectTyper     { return o.scheme }
func (o *objects) GetObjectDefaulter() runtime.ObjectDefaulter {
	return defaulter(o.defaults)
}
func (o *objects) GetObjectConvertor() runtime.ObjectConvertor { return convertor{o.scheme} }
func (o *objects) GetEquivalentResourceMapper() runtime.EquivalentResourceMapper {
	return o.mapper
}

// creater makes objects of the scheme's kinds, and unstructured ones for
// kinds only a CustomResourceDefinition knows.
type creater struct{ scheme *runtime.Scheme }

func (c creater) New(gvk schema.GroupVersionKind) (runtime.Object, error) {
	if c.scheme.Recognizes(gvk) {
		return c.scheme.New(gvk)
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// defaulter runs the kind's own defaults (after a webhook's patch, as
// Kubernetes defaults a patched object).
type defaulter func(runtime.Object)

func (d defaulter) Default(obj runtime.Object) {
	if d != nil {
		d(obj)
	}
}

// convertor copies between objects of one type and falls back to the
// scheme's conversions between types.
type convertor struct{ scheme *runtime.Scheme }

func (c convertor) Convert(in, out, context interface{}) error {
	if ui, ok := in.(*unstructured.Unstructured); ok {
		uo, ok := out.(*unstructured.Unstructured)
		if !ok {
			return runtime.DefaultUnstructuredConverter.FromUnstructured(ui.Object, out)
		}
		gvk := uo.GroupVersionKind()
		uo.Object = runtime.DeepCopyJSON(ui.Object)
		if !gvk.Empty() {
			uo.SetGroupVersionKind(gvk)
		}
		return nil
	}
	iv, ov := reflect.ValueOf(in), reflect.ValueOf(out)
	if iv.Kind() == reflect.Pointer && ov.Kind() == reflect.Pointer && iv.Type() == ov.Type() {
		if iv.Pointer() == ov.Pointer() {
			return nil
		}
		src, ok := in.(runtime.Object)
		if !ok {
			return fmt.Errorf("converting %T: not an object", in)
		}
		ov.Elem().Set(reflect.ValueOf(src.DeepCopyObject()).Elem())
		return nil
	}
	return c.scheme.Convert(in, out, context)
}

func (c convertor) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	return c.scheme.ConvertToVersion(in, gv)
}

func (c convertor) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return c.scheme.ConvertFieldLabel(gvk, label, value)
}

// resourceMapper answers which resources are the same objects under other
// versions (matchPolicy Equivalent) and what kind each resource and
// subresource carries, from the registry's served stores; it is rebuilt
// whenever the set changes (a custom resource comes or goes).
type resourceMapper struct {
	equivalent atomic.Value // runtime.EquivalentResourceRegistry
	rest       atomic.Pointer[meta.DefaultRESTMapper]
}

var _ runtime.EquivalentResourceMapper = (*resourceMapper)(nil)

func newResourceMapper(reg *generic.Registry) *resourceMapper {
	m := &resourceMapper{}
	m.rebuild(reg)
	reg.OnChange(func() { m.rebuild(reg) })
	return m
}

func (m *resourceMapper) rebuild(reg *generic.Registry) {
	eq := runtime.NewEquivalentResourceRegistry()
	var versions []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	stores := reg.Stores()
	for _, s := range stores {
		gv := s.Resource().GVR.GroupVersion()
		if !seen[gv] {
			seen[gv] = true
			versions = append(versions, gv)
		}
	}
	rm := meta.NewDefaultRESTMapper(versions)
	for _, s := range stores {
		res := s.Resource()
		gvk := res.GVK()
		eq.RegisterKindFor(res.GVR, "", gvk)
		if res.HasStatus {
			eq.RegisterKindFor(res.GVR, "status", gvk)
		}
		for _, sub := range res.Subresources {
			eq.RegisterKindFor(res.GVR, sub, gvk)
		}
		if res.Scale != nil {
			eq.RegisterKindFor(res.GVR, "scale", autoscalingv1.SchemeGroupVersion.WithKind("Scale"))
		}
		scope := meta.RESTScopeRoot
		if res.Namespaced {
			scope = meta.RESTScopeNamespace
		}
		rm.AddSpecific(gvk, res.GVR, res.GVR.GroupVersion().WithResource(res.Singular), scope)
	}
	m.equivalent.Store(eq)
	m.rest.Store(rm)
}

// EquivalentResourcesFor lists the resources that serve the same objects.
func (m *resourceMapper) EquivalentResourcesFor(resource schema.GroupVersionResource, subresource string) []schema.GroupVersionResource {
	return m.equivalent.Load().(runtime.EquivalentResourceRegistry).EquivalentResourcesFor(resource, subresource)
}

// KindFor is the kind a resource (or subresource) reads and writes.
func (m *resourceMapper) KindFor(resource schema.GroupVersionResource, subresource string) schema.GroupVersionKind {
	return m.equivalent.Load().(runtime.EquivalentResourceRegistry).KindFor(resource, subresource)
}

// restMapper is the registry's resources as a meta.RESTMapper, for the
// policies' paramKind.
type restMapper struct{ m *resourceMapper }

var _ meta.RESTMapper = restMapper{}

func (r restMapper) KindFor(resource schema.GroupVersionResource) (schema.GroupVersionKind, error) {
	return r.m.rest.Load().KindFor(resource)
}
func (r restMapper) KindsFor(resource schema.GroupVersionResource) ([]schema.GroupVersionKind, error) {
	return r.m.rest.Load().KindsFor(resource)
}
func (r restMapper) ResourceFor(input schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	return r.m.rest.Load().ResourceFor(input)
}
func (r restMapper) ResourcesFor(input schema.GroupVersionResource) ([]schema.GroupVersionResource, error) {
	return r.m.rest.Load().ResourcesFor(input)
}
func (r restMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	return r.m.rest.Load().RESTMapping(gk, versions...)
}
func (r restMapper) RESTMappings(gk schema.GroupKind, versions ...string) ([]*meta.RESTMapping, error) {
	return r.m.rest.Load().RESTMappings(gk, versions...)
}
func (r restMapper) ResourceSingularizer(resource string) (string, error) {
	return r.m.rest.Load().ResourceSingularizer(resource)
}

var _ upstream.ObjectInterfaces = (*objects)(nil)
