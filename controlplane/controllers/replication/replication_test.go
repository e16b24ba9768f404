package replication

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestReplicaSetView holds the RC's view as a ReplicaSet to what the
// ReplicaSet controller reads (selector, replicas, template, identity) and
// the status it writes back to the RC's fields.
func TestReplicaSetView(t *testing.T) {
	n := int32(3)
	rc := &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "d", UID: "u1", ResourceVersion: "7", Generation: 2},
		Spec: corev1.ReplicationControllerSpec{Replicas: &n, MinReadySeconds: 5, Selector: map[string]string{"app": "web"},
			Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "x"}}}},
		Status: corev1.ReplicationControllerStatus{Replicas: 1, Conditions: []corev1.ReplicationControllerCondition{{Type: corev1.ReplicationControllerReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate"}}},
	}
	rs := AsReplicaSet(rc)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set{"app": "web", "other": "y"}) || sel.Matches(labels.Set{"app": "db"}) {
		t.Fatalf("selector %v (%v)", rs.Spec.Selector, err)
	}
	if rs.UID != "u1" || rs.ResourceVersion != "7" || *rs.Spec.Replicas != 3 || rs.Spec.MinReadySeconds != 5 || rs.Spec.Template.Labels["tier"] != "x" {
		t.Fatalf("view %+v", rs)
	}
	if len(rs.Status.Conditions) != 1 || rs.Status.Conditions[0].Type != appsv1.ReplicaSetReplicaFailure {
		t.Fatalf("conditions %+v", rs.Status.Conditions)
	}
	st := statusOf(appsv1.ReplicaSetStatus{Replicas: 3, FullyLabeledReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 1, ObservedGeneration: 2})
	if st.Replicas != 3 || st.FullyLabeledReplicas != 3 || st.ReadyReplicas != 2 || st.AvailableReplicas != 1 || st.ObservedGeneration != 2 || st.Conditions != nil {
		t.Fatalf("status %+v", st)
	}
	// An RC without a template (refused by validation) still converts.
	if v := AsReplicaSet(&corev1.ReplicationController{}); len(v.Spec.Template.Spec.Containers) != 0 {
		t.Fatal("empty template")
	}
}
