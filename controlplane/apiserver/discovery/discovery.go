// Package discovery builds the API discovery documents of the served
// resources: the legacy resource lists and the aggregated documents
// (apidiscovery.k8s.io v2 and v2beta1).
package discovery

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apidiscoveryv2beta1 "k8s.io/api/apidiscovery/v2beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// Docs are the discovery documents of a set of resources, built anew when
// the set changes (a custom resource comes or goes).
type Docs struct {
	Groups        []schema.GroupVersion // in preference order, core first
	ResourceLists map[schema.GroupVersion]*metav1.APIResourceList
	LegacyAgg     *apidiscoveryv2.APIGroupDiscoveryList
	GroupsAgg     *apidiscoveryv2.APIGroupDiscoveryList
	LegacyAggB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
	GroupsAggB1   *apidiscoveryv2beta1.APIGroupDiscoveryList
}

var groupOrder = []string{"", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling", "batch", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
	"storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io"}

func verbsFor(res *registry.Resource) []string {
	if len(res.Verbs) > 0 {
		return res.Verbs
	}
	if res.CreateOnly {
		return []string{"create"}
	}
	return []string{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
}

// Build makes the documents of the resources.
func Build(resources []*registry.Resource) *Docs {
	d := &Docs{ResourceLists: map[schema.GroupVersion]*metav1.APIResourceList{}}
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
		d.Groups = append(d.Groups, gv)
	}
	sort.Slice(d.Groups, func(i, j int) bool {
		ri, rj := rank(d.Groups[i].Group), rank(d.Groups[j].Group)
		if ri != rj {
			return ri < rj
		}
		if d.Groups[i].Group != d.Groups[j].Group {
			return d.Groups[i].Group < d.Groups[j].Group
		}
		// Within a group the preferred (most stable, newest) version
		// first, as Kubernetes orders them: autoscaling/v2 before v1.
		return version.CompareKubeAwareVersionStrings(d.Groups[i].Version, d.Groups[j].Version) > 0
	})
	d.LegacyAgg = &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	d.GroupsAgg = &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"}}
	for _, gv := range d.Groups {
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
		d.ResourceLists[gv] = list
		group := apidiscoveryv2.APIGroupDiscovery{
			ObjectMeta: metav1.ObjectMeta{Name: gv.Group},
			Versions:   []apidiscoveryv2.APIVersionDiscovery{{Version: gv.Version, Resources: aggResources, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}},
		}
		switch {
		case gv.Group == "":
			d.LegacyAgg.Items = append(d.LegacyAgg.Items, group)
		case len(d.GroupsAgg.Items) > 0 && d.GroupsAgg.Items[len(d.GroupsAgg.Items)-1].Name == gv.Group:
			// Another version of the group before: one item per group,
			// its versions in preference order.
			last := &d.GroupsAgg.Items[len(d.GroupsAgg.Items)-1]
			last.Versions = append(last.Versions, group.Versions...)
		default:
			d.GroupsAgg.Items = append(d.GroupsAgg.Items, group)
		}
	}
	d.LegacyAggB1 = toV2Beta1(d.LegacyAgg)
	d.GroupsAggB1 = toV2Beta1(d.GroupsAgg)
	return d
}

// toV2Beta1 copies the v2 document into v2beta1, which has the same shape.
func toV2Beta1(in *apidiscoveryv2.APIGroupDiscoveryList) *apidiscoveryv2beta1.APIGroupDiscoveryList {
	data, _ := json.Marshal(in)
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
	if r.GVR.Group == "" {
		if kind, ok := proxyKinds[r.Kind]; ok {
			out = append(out, subresource{"proxy", schema.GroupVersionKind{Version: "v1", Kind: kind}, []string{"create", "delete", "get", "patch", "update"}})
		}
	}
	if r.Kind == "Namespace" && r.GVR.Group == "" {
		out = append(out, subresource{"finalize", r.GVK(), []string{"update"}})
	}
	if r.Kind == "ServiceAccount" && r.GVR.Group == "" {
		out = append(out, subresource{"token", schema.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, []string{"create"}})
	}
	return out
}

// proxyKinds are the core kinds served with /proxy and the options kind
// discovery names for it.
var proxyKinds = map[string]string{"Pod": "PodProxyOptions", "Service": "ServiceProxyOptions", "Node": "NodeProxyOptions"}

func storageVersionHash(gv schema.GroupVersion, kind string) string {
	sum := sha256.Sum256([]byte(gv.Group + "/" + gv.Version + "/" + kind))
	return fmt.Sprintf("%x", sum[:6])
}
