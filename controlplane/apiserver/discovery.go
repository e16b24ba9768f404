package apiserver

import (
	"bytes"
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

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
		obj = s.routes.Load().discovery.LegacyAgg
	case choice.asVersion == "v2":
		obj = s.routes.Load().discovery.GroupsAgg
	case legacy:
		obj = s.routes.Load().discovery.LegacyAggB1
	default:
		obj = s.routes.Load().discovery.GroupsAggB1
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
	for _, gv := range s.routes.Load().discovery.Groups {
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
	for _, gv := range s.routes.Load().discovery.Groups {
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
	s.writePlain(w, r, s.routes.Load().discovery.ResourceLists[gv])
}

func (s *Server) writePlain(w http.ResponseWriter, r *http.Request, obj runtime.Object) {
	choice, ok := negotiate(r, nil)
	if !ok {
		choice.info = jsonInfo
		choice.contentType = "application/json"
	}
	s.encode(w, http.StatusOK, choice, obj)
}
