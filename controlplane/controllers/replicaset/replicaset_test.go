package replicaset

import (
	"errors"
	"reflect"
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
	// The next failure names another pod: the condition stays as it was,
	// so the status is not written again on every retry.
	again := replicaFailure(conds, errors.New("pods \"web-2\" is forbidden: exceeded quota: q"), 1)
	if !reflect.DeepEqual(again, conds) {
		t.Fatalf("the condition changed while it stayed true: %+v, was %+v", again, conds)
	}
	cleared := replicaFailure(conds, nil, 0)
	if c := replicaFailure(cleared, errors.New("x"), -1); c[1].Reason != "FailedDelete" {
		t.Fatalf("after a failed delete: %+v", c)
	}
	if c := replicaFailure(conds, nil, 0); len(c) != 1 || c[0].Type != "Other" {
		t.Fatalf("after a good sync: %+v", c)
	}
}
