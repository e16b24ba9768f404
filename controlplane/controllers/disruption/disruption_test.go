package disruption

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func pod(name string, ready bool, owner string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if owner != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: owner, UID: types.UID(owner), Controller: &yes}}
	}
	return p
}

func TestCompute(t *testing.T) {
	now := time.Unix(1700000000, 0)
	// The ReplicaSet "rs" wants 5 pods; others are unknown.
	scale := func(_ string, ref *metav1.OwnerReference) (int32, types.UID, bool) {
		if ref.Name == "rs" {
			return 5, "rs", true
		}
		return 0, "", false
	}
	ints := func(i int) *intstr.IntOrString { v := intstr.FromInt32(int32(i)); return &v }
	pct := func(s string) *intstr.IntOrString { v := intstr.FromString(s); return &v }
	three := []*corev1.Pod{pod("a", true, "rs"), pod("b", true, "rs"), pod("c", false, "rs")}
	cases := []struct {
		name                               string
		spec                               policyv1.PodDisruptionBudgetSpec
		disrupted                          map[string]metav1.Time
		pods                               []*corev1.Pod
		healthy, desired, expected, allows int32
	}{
		{"minAvailable count: the pods that exist", policyv1.PodDisruptionBudgetSpec{MinAvailable: ints(1)}, nil, three, 2, 1, 3, 1},
		{"minAvailable above healthy allows none", policyv1.PodDisruptionBudgetSpec{MinAvailable: ints(3)}, nil, three, 2, 3, 3, 0},
		{"maxUnavailable of the controller's scale", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ints(4)}, nil, three, 2, 1, 5, 1},
		{"percent rounds up", policyv1.PodDisruptionBudgetSpec{MinAvailable: pct("30%")}, nil, three, 2, 2, 5, 0},
		{"a recent eviction is not healthy", policyv1.PodDisruptionBudgetSpec{MinAvailable: ints(1)},
			map[string]metav1.Time{"a": metav1.NewTime(now.Add(-time.Minute))}, three, 1, 1, 3, 0},
		{"an old eviction record expires", policyv1.PodDisruptionBudgetSpec{MinAvailable: ints(1)},
			map[string]metav1.Time{"a": metav1.NewTime(now.Add(-3 * time.Minute))}, three, 2, 1, 3, 1},
		{"pods without a known controller count one each", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ints(1)}, nil,
			[]*corev1.Pod{pod("x", true, ""), pod("y", true, "other")}, 2, 1, 2, 1},
		{"no pods, nothing allowed", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: ints(1)}, nil, nil, 0, 0, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "b", Namespace: "ns", Generation: 2}, Spec: c.spec,
				Status: policyv1.PodDisruptionBudgetStatus{DisruptedPods: c.disrupted}}
			st, _ := Compute(pdb, c.pods, scale, now)
			if st.CurrentHealthy != c.healthy || st.DesiredHealthy != c.desired || st.ExpectedPods != c.expected || st.DisruptionsAllowed != c.allows {
				t.Fatalf("healthy/desired/expected/allowed = %d/%d/%d/%d, want %d/%d/%d/%d", st.CurrentHealthy, st.DesiredHealthy,
					st.ExpectedPods, st.DisruptionsAllowed, c.healthy, c.desired, c.expected, c.allows)
			}
			if st.ObservedGeneration != 2 || len(st.Conditions) != 1 || (st.Conditions[0].Status == metav1.ConditionTrue) != (c.allows > 0) {
				t.Fatalf("generation %d, conditions %+v", st.ObservedGeneration, st.Conditions)
			}
		})
	}
}
