package kubelet

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// TestStatusEqualsWhatTheAPIKeeps: a status with containerd's nanosecond
// times equals itself read back from the API once cut to its precision, so
// an unchanged pod is not written again.
func TestStatusEqualsWhatTheAPIKeeps(t *testing.T) {
	at := time.Date(2026, 12, 4, 14, 40, 30, 272199234, time.UTC)
	st := corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "c",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(at)}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			StartedAt: metav1.NewTime(at.Add(-time.Minute)), FinishedAt: metav1.NewTime(at.Add(-time.Second))}}}}}
	roundTrip := func(in corev1.PodStatus) corev1.PodStatus {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var out corev1.PodStatus
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	stored := roundTrip(st)
	if equality.Semantic.DeepEqual(st, stored) {
		t.Fatal("the test's times already have the API's precision")
	}
	apiPrecision(&st)
	if !equality.Semantic.DeepEqual(st, stored) {
		t.Fatalf("cut to seconds %+v, still not what the API keeps %+v", st.ContainerStatuses[0], stored.ContainerStatuses[0])
	}
}

// TestStatusPatchKeepsOthersConditions: the kubelet's status patch, applied
// to a pod that gained a DisruptionTarget after the kubelet read it (the
// scheduler preempting it), changes the kubelet's own condition and keeps
// the other one, and carries the pod's UID.
func TestStatusPatchKeepsOthersConditions(t *testing.T) {
	old := corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "ContainersNotReady"},
	}}
	updated := *old.DeepCopy()
	updated.Phase = corev1.PodRunning
	updated.Conditions[1] = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue}
	patch, err := statusPatch("uid-1", &old, &updated)
	if err != nil {
		t.Fatal(err)
	}
	server := corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "uid-1"}, Status: *old.DeepCopy()}
	server.Status.Conditions = append(server.Status.Conditions,
		corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "PreemptionByScheduler"})
	current, err := json.Marshal(server)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := strategicpatch.StrategicMergePatch(current, patch, corev1.Pod{})
	if err != nil {
		t.Fatalf("apply %s: %v", patch, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(merged, &got); err != nil {
		t.Fatal(err)
	}
	byType := map[corev1.PodConditionType]corev1.ConditionStatus{}
	for _, c := range got.Status.Conditions {
		byType[c.Type] = c.Status
	}
	if got.Status.Phase != corev1.PodRunning || byType[corev1.PodReady] != corev1.ConditionTrue ||
		byType[corev1.DisruptionTarget] != corev1.ConditionTrue || byType[corev1.PodScheduled] != corev1.ConditionTrue {
		t.Fatalf("patch %s gave phase %s, conditions %v", patch, got.Status.Phase, byType)
	}
	var meta struct {
		Metadata struct {
			UID string `json:"uid"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(patch, &meta); err != nil || meta.Metadata.UID != "uid-1" {
		t.Fatalf("patch %s does not carry the pod's UID", patch)
	}
}
