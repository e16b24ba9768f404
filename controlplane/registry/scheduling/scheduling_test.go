package scheduling

import (
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
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

func hasField(errs field.ErrorList, f string) bool {
	for _, e := range errs {
		if e.Field == f {
			return true
		}
	}
	return false
}

func TestPriorityClassValidation(t *testing.T) {
	res := find(t, "priorityclasses")
	pc := func(name string, v int32) *schedulingv1.PriorityClass {
		return &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Value: v}
	}
	ok := pc("high", 1000)
	check(t, res, ok, "")
	if ok.PreemptionPolicy == nil || *ok.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Fatalf("preemptionPolicy not defaulted: %v", ok.PreemptionPolicy)
	}
	check(t, res, pc("huge", HighestUserDefinablePriority+1), "value")
	check(t, res, pc("system-mine", 10), "metadata.name")
	for _, s := range SystemPriorityClasses() {
		check(t, res, s.DeepCopy(), "")
	}
	changed := ok.DeepCopy()
	changed.Value = 5
	if errs := res.ValidateUpdate(changed, ok); !hasField(errs, "value") {
		t.Fatalf("value changed: %v", errs)
	}
}
