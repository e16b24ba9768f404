package apiserver

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// discoveryDocs are the discovery documents, built once: the served set never
// changes while the server runs.
type discoveryDocs struct {
	groups        []schema.GroupVersion // in preference order, core first
	resourceLists map[schema.GroupVersion]*metav1.APIResourceList
	legacyAgg     *apidiscoveryv2.APIGroupDiscoveryList
	groupsAgg     *apidiscoveryv2.APIGroupDiscoveryList
	legacyAggB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
	groupsAggB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
}

var groupOrder = []string{"", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
	"storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io"}

func verbsFor(res *registry.Resource) []string {
	if res.CreateOnly {
		return []string{"create"}
	}
	return []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
}

func buildDiscovery(resources []*registry.Resource) *discoveryDocs {
	d := &discoveryDocs{resourceLists: map[schema.GroupVersion]*metav1.APIResourceList{}}
	byGV := map[schema.GroupVersion][]*registry.Resource{}
	for _, r := range resources {
		gv := r.GVR.GroupVersion()
		byGV[gv] = append(byGV[gv], r)
	}
	rank := func(g string) int {
		for i, x := range groupOrder {
			if x == g {
				return i
			}
		}
		return len(groupOrder)
	}
	for gv := range byGV {
		d.groups = append(d.groups, gv)
	}
	sort.Slice(d.groups, func(i, j int) bool {
		ri, rj := rank(d.groups[i].Group), rank(d.groups[j].Group)
		if ri != rj {
			return ri < rj
		}
		return d.groups[i].Group < d.groups[j].Group
	})
	d.legacyAgg = &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	d.groupsAgg = &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	for _, gv := range d.groups {
		list := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
		var aggResources []apidiscoveryv2.APIResourceDiscovery
		rs := byGV[gv]
		sort.Slice(rs, func(i, j int) bool { return rs[i].GVR.Resource < rs[j].GVR.Resource })
		for _, r := range rs {
			verbs := verbsFor(r)
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: r.GVR.Resource, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind,
				Verbs: verbs, ShortNames: r.ShortNames, Categories: r.Categories,
				StorageVersionHash: storageVersionHash(gv, r.Kind),
			})
			scope := apidiscoveryv2.ScopeCluster
			if r.Namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			ar := apidiscoveryv2.APIResourceDiscovery{
				Resource: r.GVR.Resource, ResponseKind: &metav1.GroupVersionKind{Group: gv.Group, Version: gv.Version, Kind: r.Kind},
				Scope: scope, SingularResource: r.Singular, Verbs: verbs, ShortNames: r.ShortNames, Categories: r.Categories,
			}
			for _, sub := range subresources(r) {
				kind := sub.kind
				list.APIResources = append(list.APIResources, metav1.APIResource{
					Name: r.GVR.Resource + "/" + sub.name, Namespaced: r.Namespaced, Kind: kind.Kind, Group: kind.Group, Version: kind.Version, Verbs: sub.verbs,
				})
				ar.Subresources = append(ar.Subresources, apidiscoveryv2.APISubresourceDiscovery{
					Subresource: sub.name, ResponseKind: &metav1.GroupVersionKind{Group: kind.Group, Version: kind.Version, Kind: kind.Kind}, Verbs: sub.verbs,
				})
			}
			aggResources = append(aggResources, ar)
		}
		d.resourceLists[gv] = list
		group := apidiscoveryv2.APIGroupDiscovery{
			ObjectMeta: metav1.ObjectMeta{Name: gv.Group},
			Versions:   []apidiscoveryv2.APIVersionDiscovery{{Version: gv.Version, Resources: aggResources, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}},
		}
		if gv.Group == "" {
			d.legacyAgg.Items = append(d.legacyAgg.Items, group)
		} else {
			d.groupsAgg.Items = append(d.groupsAgg.Items, group)
		}
	}
	d.legacyAggB1 = toV2Beta1(d.legacyAgg)
	d.groupsAggB1 = toV2Beta1(d.groupsAgg)
	return d
}

// toV2Beta1 copies the v2 document into v2beta1, which has the same shape.
func toV2Beta1(in *apidiscoveryv2.APIGroupDiscoveryList) *apidiscoveryv2beta1.APIGroupDiscoveryList {
	data, _ := jsonMarshal(in)
	out := &apidiscoveryv2beta1.APIGroupDiscoveryList{}
	_ = json.Unmarshal(data, out)
	out.TypeMeta = metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2beta1"}
	return out
}

type subresource struct {
	name  string
	kind  schema.GroupVersionKind
	verbs []string
}

func subresources(r *registry.Resource) []subresource {
	var out []subresource
	if r.HasStatus {
		out = append(out, subresource{"status", r.GVK(), []string{"get", "patch", "update"}})
	}
	for _, sub := range r.Subresources {
		out = append(out, subresource{sub, r.GVK(), []string{"get", "patch", "update"}})
	}
	if r.Scale != nil {
		out = append(out, subresource{"scale", schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}, []string{"get", "patch", "update"}})
	}
	if r.Kind == "Pod" && r.GVR.Group == "" {
		out = append(out,
			subresource{"binding", schema.GroupVersionKind{Version: "v1", Kind: "Binding"}, []string{"create"}},
			subresource{"eviction", schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, []string{"create"}},
			subresource{"log", schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, []string{"get"}},
			subresource{"exec", schema.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}, []string{"create", "get"}},
			subresource{"attach", schema.GroupVersionKind{Version: "v1", Kind: "PodAttachOptions"}, []string{"create", "get"}},
			subresource{"portforward", schema.GroupVersionKind{Version: "v1", Kind: "PodPortForwardOptions"}, []string{"create", "get"}},
		)
	}
	if r.Kind == "Namespace" && r.GVR.Group == "" {
		out = append(out, subresource{"finalize", r.GVK(), []string{"update"}})
	}
	if r.Kind == "ServiceAccount" && r.GVR.Group == "" {
		out = append(out, subresource{"token", schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, []string{"create"}})
	}
	return out
}

func storageVersionHash(gv schema.GroupVersion, kind string) string {
	sum := sha256.Sum256([]byte(gv.Group + "/" + gv.Version + "/" + kind))
	return fmt.Sprintf("%x", sum[:6])
}

func allowDiscovery(as, group, version string) bool {
	return as == "APIGroupDiscoveryList" && group == "apidiscovery.k8s.io" && (version == "v2" || version == "v2beta1")
}

// serveAggregated answers with the aggregated document when the client asked
// for it; it reports whether it did.
func (s *Server) serveAggregated(w http.ResponseWriter, r *http.Request, legacy bool) bool {
	choice, ok := negotiate(r, allowDiscovery)
	if !ok || choice.as == "" {
		return false
	}
	var obj runtime.Object
	switch {
	case choice.asVersion == "v2" && legacy:
		obj = s.routes.Load().discovery.legacyAgg
	case choice.asVersion == "v2":
		obj = s.routes.Load().discovery.groupsAgg
	case legacy:
		obj = s.routes.Load().discovery.legacyAggB1
	default:
		obj = s.routes.Load().discovery.groupsAggB1
	}
	var buf bytes.Buffer
	if err := choice.info.Serializer.Encode(obj, &buf); err != nil {
		s.writeError(w, r, err)
		return true
	}
	w.Header().Set("Content-Type", fmt.Sprintf("%s;g=apidiscovery.k8s.io;v=%s;as=APIGroupDiscoveryList", choice.contentType, choice.asVersion))
	w.Header().Set("Vary", "Accept")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
	return true
}

func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	if s.serveAggregated(w, r, true) {
		return
	}
	s.writePlain(w, r, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
}

func (s *Server) apiGroup(group string) *metav1.APIGroup {
	var g *metav1.APIGroup
	for _, gv := range s.routes.Load().discovery.groups {
		if gv.Group != group || group == "" {
			continue
		}
		if g == nil {
			g = &metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: group,
				PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}}
		}
		g.Versions = append(g.Versions, metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version})
	}
	return g
}

func (s *Server) serveAPIGroups(w http.ResponseWriter, r *http.Request) {
	if s.serveAggregated(w, r, false) {
		return
	}
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	seen := map[string]bool{}
	for _, gv := range s.routes.Load().discovery.groups {
		if gv.Group == "" || seen[gv.Group] {
			continue
		}
		seen[gv.Group] = true
		list.Groups = append(list.Groups, *s.apiGroup(gv.Group))
	}
	s.writePlain(w, r, list)
}

func (s *Server) serveAPIGroup(w http.ResponseWriter, r *http.Request, group string) {
	g := s.apiGroup(group)
	if g == nil {
		s.notFound(w, r)
		return
	}
	s.writePlain(w, r, g)
}

func (s *Server) serveResourceList(w http.ResponseWriter, r *http.Request, gv schema.GroupVersion) {
	s.writePlain(w, r, s.routes.Load().discovery.resourceLists[gv])
}

func (s *Server) writePlain(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	choice, ok := negotiate(r, nil)
	if !ok {
		choice.info = jsonInfo
		choice.contentType = "application/json"
	}
	s.encode(w, http.StatusOK, choice, obj)
}
