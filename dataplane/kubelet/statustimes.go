package kubelet

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// apiPrecision cuts the times of a container status to what the API keeps
// (whole seconds, RFC 3339): a status carrying containerd's nanoseconds
// never equalled the one read back, so every sync of a running pod, each
// resync included, wrote its status again unchanged.
func apiPrecision(st *corev1.PodStatus) {
	for _, list := range [][]corev1.ContainerStatus{st.InitContainerStatuses, st.ContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range list {
			stateTimes(&list[i].State)
			stateTimes(&list[i].LastTerminationState)
		}
	}
}

func stateTimes(s *corev1.ContainerState) {
	if r := s.Running; r != nil {
		r.StartedAt = seconds(r.StartedAt)
	}
	if t := s.Terminated; t != nil {
		t.StartedAt, t.FinishedAt = seconds(t.StartedAt), seconds(t.FinishedAt)
	}
}

func seconds(t metav1.Time) metav1.Time {
	if t.IsZero() {
		return t
	}
	return metav1.NewTime(t.Time.Truncate(time.Second))
}
