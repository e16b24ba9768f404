package deployment

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func rs(name string, spec, available int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(spec)},
		Status: appsv1.ReplicaSetStatus{Replicas: spec, AvailableReplicas: available}}
}

func deploy(replicas int32, surge, unavailable intstr.IntOrString) *appsv1.Deployment {
	return &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas), Strategy: appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}}}}
}

func TestRollingStep(t *testing.T) {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	cases := []struct {
		name     string
		d        *appsv1.Deployment
		new      *appsv1.ReplicaSet
		olds     []*appsv1.ReplicaSet
		wantNew  int32
		wantOlds []int32
	}{
		{"first step: surge one, drop one", deploy(4, one, one), rs("new", 0, 0), []*appsv1.ReplicaSet{rs("old", 4, 4)}, 1, []int32{3}},
		{"new pods not available yet: no more old pods go", deploy(4, one, one), rs("new", 2, 0), []*appsv1.ReplicaSet{rs("old", 3, 3)}, 2, []int32{3}},
		{"new pods available: old ones go", deploy(4, one, one), rs("new", 2, 2), []*appsv1.ReplicaSet{rs("old", 3, 3)}, 2, []int32{1}},
		{"unhealthy old pods go first, whatever availability", deploy(4, zero, one), rs("new", 0, 0), []*appsv1.ReplicaSet{rs("old", 4, 2)}, 0, []int32{3}},
		{"maxSurge 0: only after an old pod goes", deploy(3, zero, one), rs("new", 0, 0), []*appsv1.ReplicaSet{rs("old", 3, 3)}, 0, []int32{2}},
		{"25% defaults round surge up and unavailability down", &appsv1.Deployment{Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(2))}},
			rs("new", 0, 0), []*appsv1.ReplicaSet{rs("old", 2, 2)}, 1, []int32{2}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := rollingStep(c.d, c.new, c.olds)
			get := func(r *appsv1.ReplicaSet) int32 {
				if v, ok := p[r.Name]; ok {
					return v
				}
				return replicas(r)
			}
			if got := get(c.new); got != c.wantNew {
				t.Errorf("new = %d, want %d (plan %v)", got, c.wantNew, p)
			}
			for i, o := range c.olds {
				if got := get(o); got != c.wantOlds[i] {
					t.Errorf("old %s = %d, want %d (plan %v)", o.Name, got, c.wantOlds[i], p)
				}
			}
		})
	}
}

func TestTemplateMatchIgnoresHashLabel(t *testing.T) {
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i:1"}}}}
	r := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Template: *tmpl.DeepCopy()}}
	r.Spec.Template.Labels[appsv1.DefaultDeploymentUniqueLabelKey] = templateHash(&tmpl, nil)
	if !sameTemplate(r, &tmpl) {
		t.Error("a ReplicaSet's template with its hash label does not match the Deployment's")
	}
	changed := tmpl.DeepCopy()
	changed.Spec.Containers[0].Image = "i:2"
	if sameTemplate(r, changed) {
		t.Error("a new image matches the old template")
	}
	if templateHash(&tmpl, nil) == templateHash(&tmpl, ptr.To(int32(1))) {
		t.Error("a collision count does not change the hash")
	}
}
