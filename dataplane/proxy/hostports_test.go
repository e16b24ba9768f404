package proxy

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

func TestDesiredHostPorts(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{ContainerPort: 8080, HostPort: 80, Protocol: corev1.ProtocolTCP},
			{ContainerPort: 53, HostPort: 5353, HostIP: "192.0.2.7", Protocol: corev1.ProtocolUDP},
			{ContainerPort: 9090, Protocol: corev1.ProtocolTCP}, // no host port
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.9"}}
	got := desiredHostPorts(pod)
	if len(got) != 2 {
		t.Fatalf("frontends %+v", got)
	}
	any := got[0]
	if any.Key != (FrontendKey{Address: netip.IPv4Unspecified(), Port: 80, Proto: protoTCP}) || any.Flags != bpfobj.FlagNodePort ||
		len(any.Backends) != 1 || any.Backends[0] != (BackendAddr{Address: netip.MustParseAddr("10.244.0.9"), Port: 8080}) {
		t.Errorf("wildcard host port: %+v", any)
	}
	one := got[1]
	if one.Key != (FrontendKey{Address: netip.MustParseAddr("192.0.2.7"), Port: 5353, Proto: protoUDP}) || one.Flags != bpfobj.FlagExternal {
		t.Errorf("host port on one address: %+v", one)
	}
	for name, mut := range map[string]func(*corev1.Pod){
		"no address yet": func(p *corev1.Pod) { p.Status.PodIP = "" },
		"finished":       func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"being deleted":  func(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now },
		"host network":   func(p *corev1.Pod) { p.Spec.HostNetwork = true },
	} {
		p := pod.DeepCopy()
		mut(p)
		if fs := desiredHostPorts(p); len(fs) != 0 {
			t.Errorf("%s: %+v", name, fs)
		}
	}
}
