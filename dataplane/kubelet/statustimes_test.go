package kubelet

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
