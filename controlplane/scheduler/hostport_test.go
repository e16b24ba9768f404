package scheduler

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// TestHostPortsNeverShareANode creates pods asking for the same host port
// at once with one node to go to: those that clash wait, the others share.
func TestHostPortsNeverShareANode(t *testing.T) {
	port := func(hostIP string, hostPort int32, proto corev1.Protocol) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: hostPort, HostIP: hostIP, Protocol: proto}}
		}
	}
	for _, tc := range []struct {
		name  string
		pods  []func(*corev1.Pod)
		bound int // how many may share the node
	}{
		{"same port, no hostIP", []func(*corev1.Pod){port("", 8080, ""), port("", 8080, ""), port("", 8080, "")}, 1},
		{"0.0.0.0 and a given IP", []func(*corev1.Pod){port("0.0.0.0", 8080, corev1.ProtocolTCP), port("10.0.0.1", 8080, corev1.ProtocolTCP)}, 1},
		{"a given IP and no IP", []func(*corev1.Pod){port("10.0.0.1", 8080, ""), port("", 8080, "")}, 1},
		{"an unspecified IPv6 hostIP and a given IP", []func(*corev1.Pod){port("::", 8080, ""), port("10.0.0.1", 8080, "")}, 1},
		{"two given IPs", []func(*corev1.Pod){port("10.0.0.1", 8080, ""), port("10.0.0.2", 8080, "")}, 2},
		{"TCP and UDP", []func(*corev1.Pod){port("", 8080, corev1.ProtocolTCP), port("", 8080, corev1.ProtocolUDP)}, 2},
		{"hostNetwork pods on the same containerPort", []func(*corev1.Pod){
			func(p *corev1.Pod) { p.Spec.HostNetwork = true; port("", 0, "")(p) },
			func(p *corev1.Pod) { p.Spec.HostNetwork = true; port("", 0, "")(p) },
		}, 1},
		{"a sidecar's host port", []func(*corev1.Pod){
			func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "side", RestartPolicy: ptrTo(corev1.ContainerRestartPolicyAlways),
					Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}}}}
			},
			port("", 8080, ""),
		}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs := []runtime.Object{node("a", "4", nil)}
			for i, mut := range tc.pods {
				objs = append(objs, podReq(fmt.Sprint("p", i), "", mut))
			}
			_, bound := startFake(t, objs...)
			waitFor(t, "pods bound", func() error {
				if got := len(bound()); got < tc.bound {
					return fmt.Errorf("%d of %d bound", got, tc.bound)
				}
				return nil
			})
			time.Sleep(300 * time.Millisecond) // time for a wrong binding
			if got := bound(); len(got) != tc.bound {
				t.Errorf("%d pods bound to the one node, want %d: %v", len(got), tc.bound, got)
			}
		})
	}
}

func ptrTo[T any](v T) *T { return &v }
