package flowcontrol

import (
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/apis/flowcontrol/bootstrap"
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

// TestFlowControlBootstrapValid holds the flowcontrol strategies to
// Kubernetes' own mandatory and suggested configuration, which the server
// creates at start: every one of them must pass.
func TestFlowControlBootstrapValid(t *testing.T) {
	fsRes, plRes := find(t, "flowschemas"), find(t, "prioritylevelconfigurations")
	for _, pl := range append(bootstrap.MandatoryPriorityLevelConfigurations, bootstrap.SuggestedPriorityLevelConfigurations...) {
		check(t, plRes, pl.DeepCopy(), "")
	}
	for _, fs := range append(bootstrap.MandatoryFlowSchemas, bootstrap.SuggestedFlowSchemas...) {
		check(t, fsRes, fs.DeepCopy(), "")
	}
	bad := &flowcontrolv1.PriorityLevelConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
		Type: flowcontrolv1.PriorityLevelEnablementLimited, Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
			LimitResponse: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeQueue, Queuing: &flowcontrolv1.QueuingConfiguration{Queues: 2, HandSize: 4}}}}}
	check(t, plRes, bad, "spec.limited.limitResponse.queuing.handSize")
	check(t, fsRes, &flowcontrolv1.FlowSchema{ObjectMeta: metav1.ObjectMeta{Name: "f"}}, "spec.priorityLevelConfiguration.name")
}
