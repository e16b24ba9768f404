package job

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestPodFailureAction(t *testing.T) {
	failed := func(name string, code int32, conds ...corev1.PodConditionType) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Status: corev1.PodStatus{Phase: corev1.PodFailed,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}}}}
		for _, c := range conds {
			p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue})
		}
		return p
	}
	policy := &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{ContainerName: ptr.To("main"), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{1, 2}}},
		{Action: batchv1.PodFailurePolicyActionIgnore, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{3}}},
	}}
	for _, tc := range []struct {
		name   string
		policy *batchv1.PodFailurePolicy
		pod    *corev1.Pod
		want   batchv1.PodFailurePolicyAction
		msg    string
	}{
		{"no policy", nil, failed("main", 1), batchv1.PodFailurePolicyActionCount, ""},
		{"evicted", policy, failed("main", 1, corev1.DisruptionTarget), batchv1.PodFailurePolicyActionIgnore, "condition DisruptionTarget matching Ignore rule at index 0"},
		{"exit 2 of main", policy, failed("main", 2), batchv1.PodFailurePolicyActionFailJob, "Container main for pod ns/p failed with exit code 2 matching FailJob rule at index 1"},
		{"exit 1 of another container", policy, failed("side", 1), batchv1.PodFailurePolicyActionIgnore, "rule at index 2"},
		{"exit 3: no rule", policy, failed("main", 3), batchv1.PodFailurePolicyActionCount, ""},
		// An exit code of 0 never matches, even NotIn.
		{"exit 0", policy, failed("main", 0), batchv1.PodFailurePolicyActionCount, ""},
	} {
		got, msg := podFailureAction(tc.policy, tc.pod)
		if got != tc.want || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %s %q, want %s %q", tc.name, got, msg, tc.want, tc.msg)
		}
	}
}
