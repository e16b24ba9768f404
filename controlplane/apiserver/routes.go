package apiserver

import (
	"fmt"
	"log/slog"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/petrel-project/petrel/controlplane/apiserver/discovery"
	"github.com/petrel-project/petrel/controlplane/apiserver/openapi"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// routes are the endpoints served at one time, by group version and by
// "<group>/<version>/<resource>", with their discovery documents.
type routes struct {
	byGroupVer map[schema.GroupVersion][]*endpoint
	byPath     map[string]*endpoint
	discovery  *discovery.Docs
}

// newEndpoint builds a resource's endpoint with its field managers.
func newEndpoint(res *registry.Resource, st *generic.Store, tc managedfields.TypeConverter, conv runtime.ObjectConvertor,
	def runtime.ObjectDefaulter, creater runtime.ObjectCreater, oa *openapi.Service) (*endpoint, error) {
	ep := &endpoint{res: res, store: st}
	gvk := res.GVK()
	ep.reset = oa.ResetFields(res, false)
	var err error
	ep.fieldManager, err = managedfields.NewDefaultFieldManager(tc, conv, def, creater, gvk, gvk.GroupVersion(), "", ep.reset)
	if err != nil {
		return nil, fmt.Errorf("field manager for %s: %w", res.GVR, err)
	}
	if res.HasStatus {
		ep.statusFM, err = managedfields.NewDefaultFieldManager(tc, conv, def, creater, gvk, gvk.GroupVersion(), "status", oa.ResetFields(res, true))
		if err != nil {
			return nil, fmt.Errorf("status field manager for %s: %w", res.GVR, err)
		}
	}
	return ep, nil
}

// refresh serves what the registry holds now: the built-in endpoints and
// one for each custom resource, with discovery and OpenAPI to match. The
// registry calls it on every change, so a new definition's kinds are served
// as soon as its controller adds them.
func (s *Server) refresh() {
	s.customMu.Lock()
	defer s.customMu.Unlock()
	rt := &routes{byGroupVer: map[schema.GroupVersion][]*endpoint{}, byPath: map[string]*endpoint{}}
	add := func(ep *endpoint) {
		gv := ep.res.GVR.GroupVersion()
		rt.byGroupVer[gv] = append(rt.byGroupVer[gv], ep)
		rt.byPath[gv.Group+"/"+gv.Version+"/"+ep.res.GVR.Resource] = ep
	}
	for _, ep := range s.static {
		add(ep)
	}
	listed := append([]*registry.Resource{}, s.listed...)
	var customs []*registry.Resource
	seen := map[*registry.Resource]bool{}
	for _, st := range s.cfg.Registry.Stores() {
		res := st.Resource()
		if res.Custom == nil {
			continue
		}
		ep := s.custom[res]
		if ep == nil || ep.store != st {
			var err error
			ep, err = newEndpoint(res, st, res.Custom.TypeConverter, unstructuredConvertor{}, unstructuredDefaulter{}, unstructuredCreater{}, s.openapi)
			if err != nil {
				slog.Error("serving custom resource", "resource", res.GVR, "err", err)
				continue
			}
			s.custom[res] = ep
		}
		seen[res] = true
		add(ep)
		listed = append(listed, res)
		customs = append(customs, res)
	}
	for res := range s.custom {
		if !seen[res] {
			delete(s.custom, res)
		}
	}
	rt.discovery = discovery.Build(append(listed, s.extraDiscovery()...))
	s.openapi.SetCustom(customs)
	s.routes.Store(rt)
}

// The field manager's object helpers for unstructured objects: custom
// resources have one schema per version and no conversion but apiVersion.
type unstructuredConvertor struct{}

func (unstructuredConvertor) Convert(in, out, context interface{}) error {
	return fmt.Errorf("converting custom resources is not supported")
}

func (unstructuredConvertor) ConvertToVersion(in runtime.Object, gv runtime.GroupVersioner) (runtime.Object, error) {
	kind := in.GetObjectKind().GroupVersionKind()
	if target, ok := gv.KindForGroupVersionKinds([]schema.GroupVersionKind{kind}); ok {
		out := in.DeepCopyObject()
		out.GetObjectKind().SetGroupVersionKind(target)
		return out, nil
	}
	return in, nil
}

func (unstructuredConvertor) ConvertFieldLabel(gvk schema.GroupVersionKind, label, value string) (string, string, error) {
	return label, value, nil
}

type unstructuredDefaulter struct{}

func (unstructuredDefaulter) Default(runtime.Object) {}

type unstructuredCreater struct{}

func (unstructuredCreater) New(kind schema.GroupVersionKind) (runtime.Object, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kind)
	return u, nil
}
