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

// planCase is a Deployment and its ReplicaSets, with the sizes a step
// should leave the sets at.
type planCase struct {
	name     string
	d        *appsv1.Deployment
	new      *appsv1.ReplicaSet
	olds     []*appsv1.ReplicaSet
	wantNew  int32
	wantOlds []int32
}

// checkPlan compares the sizes a plan leaves the sets at (a set it does
// not name keeps its own) with the expected ones.
func checkPlan(t *testing.T, p plan, newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet, wantNew int32, wantOlds []int32) {
	t.Helper()
	get := func(r *appsv1.ReplicaSet) int32 {
		if v, ok := p[r.Name]; ok {
			return v
		}
		return replicas(r)
	}
	if got := get(newRS); got != wantNew {
		t.Errorf("new = %d, want %d (plan %v)", got, wantNew, p)
	}
	for i, o := range olds {
		if got := get(o); got != wantOlds[i] {
			t.Errorf("old %s = %d, want %d (plan %v)", o.Name, got, wantOlds[i], p)
		}
	}
}

func TestRollingStep(t *testing.T) {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	cases := []planCase{
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
			checkPlan(t, rollingStep(c.d, c.new, c.olds), c.new, c.olds, c.wantNew, c.wantOlds)
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

func sized(r *appsv1.ReplicaSet, desired, maxReplicas string, created int64) *appsv1.ReplicaSet {
	r.Annotations = map[string]string{DesiredAnnotation: desired, MaxAnnotation: maxReplicas}
	r.CreationTimestamp = metav1.Unix(created, 0)
	return r
}

func TestProportionalScaling(t *testing.T) {
	three, two := intstr.FromInt32(3), intstr.FromInt32(2)
	cases := []planCase{
		// 10 replicas, surge 3: midway at 5 new and 8 old (13 = 10+3).
		// Scaled to 20 (23 allowed): 10 more, shared 5:8 as far as rounding
		// lets (8·23/13 = 14.2, 5·23/13 = 8.8).
		{"scaled up midway keeps the split", deploy(20, three, two), sized(rs("new", 5, 0), "10", "13", 2),
			[]*appsv1.ReplicaSet{sized(rs("old", 8, 8), "10", "13", 1)}, 9, []int32{14}},
		// Scaled down to 5 (8 allowed): 5 fewer.
		{"scaled down midway keeps the split", deploy(5, three, two), sized(rs("new", 5, 0), "10", "13", 2),
			[]*appsv1.ReplicaSet{sized(rs("old", 8, 8), "10", "13", 1)}, 3, []int32{5}},
		{"a lone active set takes the whole count", deploy(7, three, two), sized(rs("new", 4, 4), "4", "5", 2),
			[]*appsv1.ReplicaSet{rs("old", 0, 0)}, 7, []int32{0}},
		{"a saturated new set lets the old ones go", deploy(4, three, two), sized(rs("new", 4, 4), "3", "4", 2),
			[]*appsv1.ReplicaSet{sized(rs("old", 1, 1), "3", "4", 1)}, 4, []int32{0}},
		{"scaled to zero", deploy(0, three, two), sized(rs("new", 2, 0), "4", "7", 2),
			[]*appsv1.ReplicaSet{sized(rs("old", 3, 3), "4", "7", 1)}, 0, []int32{0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !scalingEvent(c.d, append([]*appsv1.ReplicaSet{c.new}, c.olds...)) {
				t.Fatal("not seen as a scaling event")
			}
			checkPlan(t, proportionalStep(c.d, c.new, c.olds), c.new, c.olds, c.wantNew, c.wantOlds)
		})
	}
	// Once sized, the same count is no event.
	d := deploy(10, three, two)
	if scalingEvent(d, []*appsv1.ReplicaSet{sized(rs("a", 5, 5), "10", "13", 1), rs("idle", 0, 0)}) {
		t.Error("an unchanged count seen as a scaling event")
	}
}
