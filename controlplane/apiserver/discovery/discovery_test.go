package discovery

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// TestVersionsOfAGroup: a group's versions come newest and most stable
// first (its preferred version), and the aggregated document has one item
// per group holding every version.
func TestVersionsOfAGroup(t *testing.T) {
	res := func(gv schema.GroupVersion, r string) *registry.Resource {
		return &registry.Resource{GVR: gv.WithResource(r), Kind: "K"}
	}
	v1 := schema.GroupVersion{Group: "autoscaling", Version: "v1"}
	v2 := schema.GroupVersion{Group: "autoscaling", Version: "v2"}
	v2b := schema.GroupVersion{Group: "autoscaling", Version: "v2beta2"}
	for range 20 { // map order varies between builds
		d := Build([]*registry.Resource{res(v1, "a"), res(v2b, "a"), res(v2, "a"), res(schema.GroupVersion{Version: "v1"}, "pods")})
		var got []string
		for _, gv := range d.Groups {
			if gv.Group == "autoscaling" {
				got = append(got, gv.Version)
			}
		}
		if len(got) != 3 || got[0] != "v2" || got[1] != "v1" || got[2] != "v2beta2" {
			t.Fatalf("versions %v, want v2 v1 v2beta2", got)
		}
		if n := len(d.GroupsAgg.Items); n != 1 || len(d.GroupsAgg.Items[0].Versions) != 3 || d.GroupsAgg.Items[0].Versions[0].Version != "v2" {
			t.Fatalf("aggregated groups %+v", d.GroupsAgg.Items)
		}
		if len(d.GroupsAggB1.Items) != 1 {
			t.Fatalf("v2beta1 groups %+v", d.GroupsAggB1.Items)
		}
	}
}
