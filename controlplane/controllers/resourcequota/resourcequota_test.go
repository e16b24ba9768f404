package resourcequota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestUsageChanged: a pod's status writes as it starts leave its quota
// usage alone and queue no recount; its end, or a Service's change of type,
// does.
func TestUsageChanged(t *testing.T) {
	pods, services := schema.GroupResource{Resource: "pods"}, schema.GroupResource{Resource: "services"}
	pending := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}}}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	running := pending.DeepCopy()
	running.Status.Phase = corev1.PodRunning
	running.Status.PodIP = "10.244.0.7"
	ended := running.DeepCopy()
	ended.Status.Phase = corev1.PodSucceeded
	clusterIP := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}}
	nodePort := clusterIP.DeepCopy()
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	for _, tc := range []struct {
		name     string
		gr       schema.GroupResource
		old, cur interface{}
		want     bool
	}{
		{"pod scheduled and started", pods, pending, running, false},
		{"pod ended", pods, running, ended, true},
		{"service unchanged type", services, clusterIP, clusterIP.DeepCopy(), false},
		{"service became a NodePort", services, clusterIP, nodePort, true},
		{"not an object", pods, "x", running, true},
	} {
		if got := usageChanged(tc.gr, tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: usageChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}
