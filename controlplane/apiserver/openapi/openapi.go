// Package openapi builds the OpenAPI v2 and v3 documents of the served
// resources and the schemas server-side apply and managed fields use, from
// the definitions openapi-gen generated.
package openapi

import (
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"

	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/handler"
	"k8s.io/kube-openapi/pkg/handler3"
	"k8s.io/kube-openapi/pkg/openapiconv"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/petrel-project/petrel/controlplane/openapi/generated"
	"github.com/petrel-project/petrel/controlplane/registry"
)

// Service holds the type converter that server-side apply uses and the
// OpenAPI documents, all of it from the definitions openapi-gen generated.
// The documents are built the first time a client asks for one: they are
// the largest thing the server would otherwise keep from start (about 7 MB
// of schemas, paths and their v3 conversion), and a server nobody runs
// kubectl apply or explain against never needs them.
type Service struct {
	scheme        *runtime.Scheme
	resources     []*registry.Resource
	typeConverter managedfields.TypeConverter
	createFields  *createFields

	// mu guards the documents and the custom resources they include; the
	// documents are dropped when the custom resources change and built
	// again on the next request.
	mu     sync.Mutex
	docs   *openAPIDocs
	custom []*registry.Resource
}

// openAPIDocs serve the v2 document and the v3 documents per group version.
type openAPIDocs struct {
	v2 http.Handler
	v3 *handler3.OpenAPIService
}

type modelNamer interface{ OpenAPIModelName() string }

// gvkExtension lists the kinds a definition is served as, the way Kubernetes
// marks them (x-kubernetes-group-version-kind).
func gvkByModel(scheme *runtime.Scheme) map[string][]interface{} {
	out := map[string][]interface{}{}
	seen := map[string]map[schema.GroupVersionKind]bool{}
	for gvk, t := range scheme.AllKnownTypes() {
		if gvk.Version == "__internal" {
			continue
		}
		inst, ok := reflect.New(t).Interface().(modelNamer)
		if !ok {
			continue
		}
		name := inst.OpenAPIModelName()
		if seen[name] == nil {
			seen[name] = map[schema.GroupVersionKind]bool{}
		}
		if seen[name][gvk] {
			continue
		}
		seen[name][gvk] = true
		out[name] = append(out[name], map[string]interface{}{"group": gvk.Group, "version": gvk.Version, "kind": gvk.Kind})
	}
	for name := range out {
		sort.Slice(out[name], func(i, j int) bool {
			a, b := out[name][i].(map[string]interface{}), out[name][j].(map[string]interface{})
			return a["group"].(string)+a["version"].(string) < b["group"].(string)+b["version"].(string)
		})
	}
	return out
}

// Build makes the schemas of every kind of scheme; the documents, which
// list resources' paths, are built on first use.
func Build(scheme *runtime.Scheme, resources []*registry.Resource) (*Service, error) {
	kinds := gvkByModel(scheme)
	schemas, _ := definitions(kinds)
	tc, err := managedfields.NewTypeConverter(schemas, false)
	if err != nil {
		return nil, err
	}
	cf, err := newCreateFields(schemas, kinds)
	if err != nil {
		return nil, err
	}
	return &Service{scheme: scheme, resources: resources, typeConverter: tc, createFields: cf}, nil
}

// definitions are the generated schemas by model name, marked with the
// kinds each is served as: in their v3 shape (server-side apply's types and
// the v3 documents) and in their v2 shape (the v2 document).
func definitions(kinds map[string][]interface{}) (map[string]*spec.Schema, spec.Definitions) {
	defs := generated.GetOpenAPIDefinitions(func(name string) spec.Ref {
		return spec.MustCreateRef("#/definitions/" + name)
	})
	v2defs := spec.Definitions{}
	schemas := map[string]*spec.Schema{}
	for name, d := range defs {
		s := d.Schema
		if k, ok := kinds[name]; ok {
			s.AddExtension("x-kubernetes-group-version-kind", k)
		}
		// Types with a different OpenAPI v2 shape (Quantity, IntOrString:
		// oneOf is v3 only) carry it in an extension, as kube-openapi's
		// builder reads it; without the swap the v2 protobuf document
		// fails to build and kubectl's v2 fallback gets 503.
		v2 := s
		if ext, ok := s.Extensions[common.ExtensionV2Schema]; ok {
			if v2s, ok := ext.(spec.Schema); ok {
				v2 = v2s
			}
		}
		v2defs[name] = v2
		sc := s
		schemas[name] = &sc
	}
	return schemas, v2defs
}

// documents builds the v2 and v3 documents once, on the first request for
// either.
func (o *Service) documents() *openAPIDocs {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.docs != nil {
		return o.docs
	}
	_, v2defs := definitions(gvkByModel(o.scheme))
	swagger := &spec.Swagger{SwaggerProps: spec.SwaggerProps{
		Swagger:     "2.0",
		Info:        &spec.Info{InfoProps: spec.InfoProps{Title: "Petrel", Version: "v1"}},
		Paths:       &spec.Paths{Paths: map[string]spec.PathItem{}},
		Definitions: v2defs,
	}}
	// Each resource's paths go into the v2 document and into its group
	// version's v3 document.
	pathsByGV := map[schema.GroupVersion]map[string]spec.PathItem{}
	for _, r := range o.resources {
		gv := r.GVR.GroupVersion()
		if pathsByGV[gv] == nil {
			pathsByGV[gv] = map[string]spec.PathItem{}
		}
		for path, item := range pathsFor(r) {
			swagger.Paths.Paths[path] = item
			pathsByGV[gv][path] = item
		}
	}
	// Each custom resource brings its own documents, built from its
	// definition's schema.
	customV3 := map[schema.GroupVersion][]*spec3.OpenAPI{}
	for _, r := range o.custom {
		if r.Custom.OpenAPIV2 != nil {
			if merged, err := builder.MergeSpecs(swagger, r.Custom.OpenAPIV2); err == nil {
				swagger = merged
			}
		}
		if r.Custom.OpenAPIV3 != nil {
			gv := r.GVR.GroupVersion()
			customV3[gv] = append(customV3[gv], r.Custom.OpenAPIV3)
		}
	}
	docs := &openAPIDocs{v2: v2Handler(handler.NewOpenAPIService(swagger)), v3: handler3.NewOpenAPIService()}
	full := openapiconv.ConvertV2ToV3(swagger)
	for gv, paths := range pathsByGV {
		doc := &spec3.OpenAPI{Version: "3.0.0", Info: full.Info, Components: full.Components,
			Paths: openapiconv.ConvertPaths(&spec.Paths{Paths: paths})}
		key := "apis/" + gv.Group + "/" + gv.Version
		if gv.Group == "" {
			key = "api/" + gv.Version
		}
		docs.v3.UpdateGroupVersion(key, doc)
	}
	for gv, specs := range customV3 {
		key := "apis/" + gv.Group + "/" + gv.Version
		if _, builtIn := pathsByGV[gv]; builtIn {
			continue // a definition may not take a built-in group
		}
		if doc, err := builder.MergeSpecsV3(specs...); err == nil {
			docs.v3.UpdateGroupVersion(key, doc)
		}
	}
	o.docs = docs
	return o.docs
}

// openAPIV2Mux captures the handler kube-openapi registers for /openapi/v2.
type openAPIV2Mux struct{ h http.Handler }

func (m *openAPIV2Mux) Handle(path string, h http.Handler) { m.h = h }

func v2Handler(svc *handler.OpenAPIService) http.Handler {
	m := &openAPIV2Mux{}
	svc.RegisterOpenAPIVersionedService("/openapi/v2", m)
	return m.h
}

// ServeV2 serves /openapi/v2.
func (o *Service) ServeV2(w http.ResponseWriter, r *http.Request) { o.documents().v2.ServeHTTP(w, r) }

// ServeV3Index serves /openapi/v3.
func (o *Service) ServeV3Index(w http.ResponseWriter, r *http.Request) {
	o.documents().v3.HandleDiscovery(w, r)
}

// ServeV3Doc serves /openapi/v3/<group version>.
func (o *Service) ServeV3Doc(w http.ResponseWriter, r *http.Request) {
	o.documents().v3.HandleGroupVersion(w, r)
}

// pathsFor describes a resource's item path with the operations kubectl looks
// for: its PATCH carries the fieldValidation parameter, which tells kubectl
// that this server validates fields itself.
func pathsFor(r *registry.Resource) map[string]spec.PathItem {
	gv := r.GVR.GroupVersion()
	base := "/apis/" + gv.Group + "/" + gv.Version
	if gv.Group == "" {
		base = "/api/" + gv.Version
	}
	item := base + "/" + r.GVR.Resource + "/{name}"
	if r.Namespaced {
		item = base + "/namespaces/{namespace}/" + r.GVR.Resource + "/{name}"
	}
	gvk := map[string]interface{}{"group": gv.Group, "version": gv.Version, "kind": r.Kind}
	ref := spec.MustCreateRef("#/definitions/" + modelName(r))
	op := func(id string) *spec.Operation {
		o := &spec.Operation{OperationProps: spec.OperationProps{
			ID: id + r.Kind, Consumes: []string{"application/json"}, Produces: []string{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"},
			Responses: &spec.Responses{ResponsesProps: spec.ResponsesProps{StatusCodeResponses: map[int]spec.Response{
				200: {ResponseProps: spec.ResponseProps{Description: "OK", Schema: &spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref}}}},
			}}},
		}}
		o.AddExtension("x-kubernetes-group-version-kind", gvk)
		o.AddExtension("x-kubernetes-action", strings.ToLower(id))
		return o
	}
	if r.CreateOnly {
		collection := base + "/" + r.GVR.Resource
		if r.Namespaced {
			collection = base + "/namespaces/{namespace}/" + r.GVR.Resource
		}
		create := op("create")
		create.AddExtension("x-kubernetes-action", "post")
		create.Parameters = []spec.Parameter{{ParamProps: spec.ParamProps{Name: "body", In: "body", Required: true,
			Schema: &spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref}}}}, queryParam("dryRun"), queryParam("fieldManager"), queryParam("fieldValidation")}
		return map[string]spec.PathItem{collection: {PathItemProps: spec.PathItemProps{Post: create}}}
	}
	patch := op("patch")
	patch.Consumes = []string{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
	for _, p := range []string{"dryRun", "fieldManager", "fieldValidation", "force"} {
		patch.Parameters = append(patch.Parameters, queryParam(p))
	}
	put := op("replace")
	put.Parameters = append(put.Parameters, queryParam("fieldValidation"))
	return map[string]spec.PathItem{item: {PathItemProps: spec.PathItemProps{Get: op("read"), Put: put, Patch: patch, Delete: op("delete")}}}
}

func modelName(r *registry.Resource) string {
	if m, ok := r.New().(modelNamer); ok {
		return m.OpenAPIModelName()
	}
	return r.Kind
}

// ResetFields are the fields an endpoint does not own: status for the main
// resource, spec for /status.
func (o *Service) ResetFields(r *registry.Resource, status bool) map[fieldpath.APIVersion]fieldpath.Filter {
	if !r.HasStatus {
		return nil
	}
	p := "status"
	if status {
		p = "spec"
	}
	return map[fieldpath.APIVersion]fieldpath.Filter{
		fieldpath.APIVersion(r.GVR.GroupVersion().String()): fieldpath.NewExcludeSetFilter(fieldpath.NewSet(fieldpath.MakePathOrDie(p))),
	}
}

func queryParam(name string) spec.Parameter {
	return spec.Parameter{ParamProps: spec.ParamProps{Name: name, In: "query"}, SimpleSchema: spec.SimpleSchema{Type: "string"}}
}

// TypeConverter converts objects of the served kinds to typed values (for
// field managers).
func (o *Service) TypeConverter() managedfields.TypeConverter { return o.typeConverter }

// CreateEntry is the managed fields entry of a plain create of obj by
// manager, when the fast path can compute it (see createFields).
func (o *Service) CreateEntry(obj runtime.Object, gvk schema.GroupVersionKind, newObj func() runtime.Object, manager string, reset map[fieldpath.APIVersion]fieldpath.Filter) (metav1.ManagedFieldsEntry, bool) {
	return o.createFields.entry(obj, gvk, newObj, manager, reset)
}

// SetCustom sets the custom resources the documents include.
func (o *Service) SetCustom(resources []*registry.Resource) {
	o.mu.Lock()
	o.custom = resources
	o.docs = nil
	o.mu.Unlock()
}
