package registry

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
)

// FuzzSelectors: any label and field selector a client sends parses or is
// refused, never a panic; and a field selector says the same of a pod
// through the watch cache's compact fields (ObjectFields) as through the
// full set (SelectableFields).
func FuzzSelectors(f *testing.F) {
	for _, s := range [][2]string{
		{"app=web,tier!=db", "spec.nodeName=n1"},
		{"app in (a,b),!legacy", "status.phase!=Running,metadata.name=p"},
		{"x notin (), y", "spec.restartPolicy==Always"},
		{"a=\\,b", "metadata.namespace=ns,spec.schedulerName=default-scheduler"},
	} {
		f.Add(s[0], s[1])
	}
	res := findResource(f, "pods")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "web", "y": ""}},
		Spec:   corev1.PodSpec{NodeName: "n1", RestartPolicy: corev1.RestartPolicyAlways, SchedulerName: "default-scheduler"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1"}}
	full := fields.Set(res.SelectableFields(pod))
	compact := res.ObjectFields(pod)
	set := labels.Set(pod.Labels)
	f.Fuzz(func(t *testing.T, labelSel, fieldSel string) {
		if sel, err := labels.Parse(labelSel); err == nil {
			_ = sel.Matches(set)
			_ = sel.String()
		}
		sel, err := fields.ParseSelector(fieldSel)
		if err != nil {
			return
		}
		if a, b := sel.Matches(full), sel.Matches(compact); a != b {
			t.Fatalf("%q: the full field set says %v, the compact one %v", fieldSel, a, b)
		}
	})
}
