package nodeapi

import (
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"testing"
)

// find is the package's strategy of the named resource.
func find(t *testing.T, name string) *generic.Resource {
	t.Helper()
	for _, r := range Resources() {
		if r.GVR.Resource == name {
			return r
		}
	}
	t.Fatalf("no resource %s", name)
	return nil
}

// check runs a kind's defaults and validation on obj and wants an error on
// field ("" for none).
func check(t *testing.T, res *generic.Resource, obj runtime.Object, field string) {
	t.Helper()
	if res.Default != nil {
		res.Default(obj)
	}
	errs := res.Validate(obj)
	if field == "" {
		if len(errs) > 0 {
			t.Fatalf("want valid, got %v", errs)
		}
		return
	}
	for _, e := range errs {
		if e.Field == field {
			return
		}
	}
	t.Fatalf("want an error on %s, got %v", field, errs)
}

func TestRuntimeClassValidation(t *testing.T) {
	res := find(t, "runtimeclasses")
	check(t, res, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Handler: "runc"}, "")
	check(t, res, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "r"}}, "handler")
	check(t, res, &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "r"}, Handler: "Not_A_Label"}, "handler")
}
