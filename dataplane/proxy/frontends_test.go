package proxy

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

type ep struct {
	ip                          string
	node                        string
	ready, serving, terminating *bool
}

func slice(name string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.ip}, NodeName: ptr.To(e.node),
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}})
	}
	return s
}

func service(mut func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.5.5", ClusterIPs: []string{"10.96.5.5"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if mut != nil {
		mut(s)
	}
	return s
}

func backendIPs(f Frontend) []string {
	var out []string
	for _, b := range f.Backends {
		out = append(out, b.Address.String())
	}
	return out
}

func find(t *testing.T, fs []Frontend, key string) Frontend {
	t.Helper()
	for _, f := range fs {
		if f.Key.String() == key {
			return f
		}
	}
	t.Fatalf("no frontend %s in %v", key, fs)
	return Frontend{}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestDesiredFrontends(t *testing.T) {
	yes, no := ptr.To(true), ptr.To(false)
	mixed := slice("web-1", 8080,
		ep{ip: "10.244.0.3", node: "n1"},
		ep{ip: "10.244.1.2", node: "n2", ready: yes},
		ep{ip: "10.244.0.9", node: "n1", ready: no, serving: yes, terminating: yes},
		ep{ip: "10.244.0.8", node: "n1", ready: no})
	onlyTerminating := slice("web-1", 8080,
		ep{ip: "10.244.1.7", node: "n2", ready: no, serving: yes, terminating: yes},
		ep{ip: "10.244.1.8", node: "n2", ready: no, serving: no, terminating: yes})
	local := corev1.ServiceInternalTrafficPolicyLocal

	cases := []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		key    string
		want   []string
		flags  uint8
	}{
		{"ready endpoints only, sorted", service(nil), []*discoveryv1.EndpointSlice{mixed}, "10.96.5.5:80/TCP",
			[]string{"10.244.0.3", "10.244.1.2"}, 0},
		{"terminating serving endpoints when none is ready", service(nil), []*discoveryv1.EndpointSlice{onlyTerminating}, "10.96.5.5:80/TCP",
			[]string{"10.244.1.7"}, 0},
		{"no endpoints: a frontend with no backend, so connects are refused", service(nil), nil, "10.96.5.5:80/TCP", nil, 0},
		{"internalTrafficPolicy Local", service(func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = &local }),
			[]*discoveryv1.EndpointSlice{mixed}, "10.96.5.5:80/TCP", []string{"10.244.0.3"}, bpfobj.FlagLocal},
		{"NodePort frontend on every node address", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}), []*discoveryv1.EndpointSlice{mixed}, "*:30080/TCP", []string{"10.244.0.3", "10.244.1.2"}, bpfobj.FlagNodePort},
		{"externalTrafficPolicy Local keeps local endpoints on the LoadBalancer IP", service(func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports[0].NodePort = 30081
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		}), []*discoveryv1.EndpointSlice{mixed}, "192.0.2.10:80/TCP", []string{"10.244.0.3"}, bpfobj.FlagExternal | bpfobj.FlagLocal},
		{"externalIPs", service(func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"198.51.100.4"} }),
			[]*discoveryv1.EndpointSlice{mixed}, "198.51.100.4:80/TCP", []string{"10.244.0.3", "10.244.1.2"}, bpfobj.FlagExternal},
		{"ClientIP affinity", service(func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		}), []*discoveryv1.EndpointSlice{mixed}, "10.96.5.5:80/TCP", []string{"10.244.0.3", "10.244.1.2"}, bpfobj.FlagAffinity},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := find(t, desiredFrontends(c.svc, c.slices, "n1", nil), c.key)
			if got := backendIPs(f); !equal(got, c.want) {
				t.Errorf("backends = %v, want %v", got, c.want)
			}
			if f.Flags != c.flags {
				t.Errorf("flags = %#x, want %#x", f.Flags, c.flags)
			}
			for _, b := range f.Backends {
				if b.Port != 8080 {
					t.Errorf("backend port = %d, want the slice's 8080", b.Port)
				}
			}
		})
	}

	t.Run("affinity timeout defaults to 3 hours", func(t *testing.T) {
		f := find(t, desiredFrontends(cases[7].svc, nil, "n1", nil), "10.96.5.5:80/TCP")
		if f.AffinityTimeout != 10800 {
			t.Errorf("timeout = %d", f.AffinityTimeout)
		}
	})
	t.Run("headless and ExternalName services have no frontend", func(t *testing.T) {
		headless := service(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} })
		ext := service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName })
		if fs := desiredFrontends(headless, []*discoveryv1.EndpointSlice{mixed}, "n1", nil); len(fs) != 0 {
			t.Errorf("headless: %v", fs)
		}
		if fs := desiredFrontends(ext, nil, "n1", nil); len(fs) != 0 {
			t.Errorf("ExternalName: %v", fs)
		}
	})
	t.Run("redirect sends kube-dns to the node-local address", func(t *testing.T) {
		dns := service(func(s *corev1.Service) {
			s.Name, s.Namespace = "kube-dns", "kube-system"
			s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}
		})
		r := &LocalRedirect{Namespace: "kube-system", Name: "kube-dns", Address: netip.MustParseAddr("169.254.20.10")}
		f := find(t, desiredFrontends(dns, nil, "n1", r), "10.96.5.5:53/UDP")
		if len(f.Backends) != 1 || f.Backends[0].Address != r.Address || f.Backends[0].Port != 53 {
			t.Errorf("backends = %v", f.Backends)
		}
	})
}
