package replicaset

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestReplicaFailureCondition(t *testing.T) {
	other := appsv1.ReplicaSetCondition{Type: "Other", Status: corev1.ConditionTrue}
	conds := replicaFailure([]appsv1.ReplicaSetCondition{other}, errors.New("exceeded quota: q"), 2)
	if len(conds) != 2 || conds[1].Type != appsv1.ReplicaSetReplicaFailure || conds[1].Reason != "FailedCreate" || conds[1].Message != "exceeded quota: q" {
		t.Fatalf("after a failed create: %+v", conds)
	}
	again := replicaFailure(conds, errors.New("exceeded quota: q"), 1)
	if !again[1].LastTransitionTime.Equal(&conds[1].LastTransitionTime) {
		t.Fatal("the transition time moved while the condition stayed true")
	}
	if c := replicaFailure(conds, errors.New("x"), -1); c[1].Reason != "FailedDelete" {
		t.Fatalf("after a failed delete: %+v", c)
	}
	if c := replicaFailure(conds, nil, 0); len(c) != 1 || c[0].Type != "Other" {
		t.Fatalf("after a good sync: %+v", c)
	}
}
