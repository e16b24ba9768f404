package generic_test

import (
	"context"
	"strconv"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// patcher stands for a mutating webhook: on updates of ConfigMaps labelled
// break=yes it drops data.k (which validation requires) and says it
// changed the object; on /scale writes it records the Scale it saw and
// doubles the replicas asked for.
type patcher struct{ scales []string }

func (*patcher) Name() string                        { return "patcher" }
func (*patcher) Handles(op admission.Operation) bool { return op == admission.Update }
func (p *patcher) Admit(_ context.Context, a *admission.Attributes) error {
	if sc, ok := a.Object.(*autoscalingv1.Scale); ok {
		p.scales = append(p.scales, a.Subresource+" "+a.Kind.Kind+" "+strconv.Itoa(int(sc.Spec.Replicas))+" from "+strconv.Itoa(int(a.OldObject.(*autoscalingv1.Scale).Spec.Replicas)))
		sc.Spec.Replicas *= 2
		return nil
	}
	if c, ok := a.Object.(*corev1.ConfigMap); ok && c.Labels["break"] == "yes" {
		delete(c.Data, "k")
		a.Changed = true
	}
	return nil
}

// TestUpdateAdmissionRevalidatesAndScaleIsAdmittedAsScale: a mutating
// plugin's change to an update is validated again (422), and a /scale
// write reaches admission as Kubernetes sends it — an UPDATE of
// <resource>/scale with autoscaling/v1 Scales — whose replica count a
// plugin may change.
func TestUpdateAdmissionRevalidatesAndScaleIsAdmittedAsScale(t *testing.T) {
	ctx := context.Background()
	p := &patcher{}
	s := newStoreWith(t, admission.Chain{p})
	s.Resource().Scale = &generic.ScaleAccess{
		Get: func(obj runtime.Object) (int32, int32, string) {
			n, _ := strconv.Atoi(obj.(*corev1.ConfigMap).Data["replicas"])
			return int32(n), 0, ""
		},
		Set: func(obj runtime.Object, n int32) { obj.(*corev1.ConfigMap).Data["replicas"] = strconv.Itoa(int(n)) },
	}

	if _, err := s.Create(ctx, cm("a", map[string]string{"k": "v", "replicas": "1"}, nil), generic.CreateOptions{Namespace: "ns"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(ctx, "ns", "a", generic.UpdateOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		c := cur.(*corev1.ConfigMap).DeepCopy()
		c.Labels = map[string]string{"break": "yes"}
		return c, nil
	})
	if !apierrors.IsInvalid(err) || err.(apierrors.APIStatus).Status().Details.Causes[0].Field != "data.k" {
		t.Fatalf("update a plugin made invalid: %v, want 422 on data.k", err)
	}
	out, err := s.UpdateScale(ctx, "ns", "a", &autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, generic.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Spec.Replicas != 6 || len(p.scales) != 1 || p.scales[0] != "scale Scale 3 from 1" {
		t.Fatalf("scale: %d replicas, admission saw %q", out.Spec.Replicas, p.scales)
	}
}
