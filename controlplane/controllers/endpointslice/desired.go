package endpointslice

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// maxEndpointsPerSlice is Kubernetes' default: slices stay small enough
// that one endpoint change rewrites few bytes.
const maxEndpointsPerSlice = 100

// sliceContent is what one EndpointSlice should hold.
type sliceContent struct {
	ports     []discoveryv1.EndpointPort
	endpoints []discoveryv1.Endpoint
}

// portsKey identifies a set of resolved ports: pods whose named target ports
// resolve alike share slices.
func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d;", ptr.Deref(p.Name, ""), ptr.Deref(p.Protocol, ""), ptr.Deref(p.Port, 0))
	}
	return b.String()
}

// desiredSlices groups the Service's pods into slice contents: by resolved
// ports, at most maxEndpointsPerSlice each, in a stable order.
func desiredSlices(svc *corev1.Service, pods []*corev1.Pod) map[string][]sliceContent {
	groups := map[string]*sliceContent{}
	for _, pod := range pods {
		if pod.Status.PodIP == "" ||
			pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		if strings.Contains(pod.Status.PodIP, ":") {
			continue // IPv4 slices only, as the cluster's Services are
		}
		ports, ok := resolvePorts(svc, pod)
		if !ok {
			continue
		}
		key := portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &sliceContent{ports: ports}
			groups[key] = g
		}
		g.endpoints = append(g.endpoints, endpointFor(svc, pod))
	}
	out := map[string][]sliceContent{}
	for key, g := range groups {
		sort.Slice(g.endpoints, func(i, j int) bool { return g.endpoints[i].Addresses[0] < g.endpoints[j].Addresses[0] })
		for start := 0; start < len(g.endpoints); start += maxEndpointsPerSlice {
			end := min(start+maxEndpointsPerSlice, len(g.endpoints))
			out[key] = append(out[key], sliceContent{ports: g.ports, endpoints: g.endpoints[start:end]})
		}
	}
	return out
}

// resolvePorts turns the Service's target ports into the pod's port numbers;
// a named port the pod lacks leaves that port out, and a pod with none of
// them is not an endpoint.
func resolvePorts(svc *corev1.Service, pod *corev1.Pod) ([]discoveryv1.EndpointPort, bool) {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		port, ok := targetPort(sp, pod)
		if !ok {
			continue
		}
		p := discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Port: ptr.To(port), Protocol: ptr.To(sp.Protocol)}
		if sp.AppProtocol != nil {
			p.AppProtocol = sp.AppProtocol
		}
		out = append(out, p)
	}
	return out, len(out) > 0 || len(svc.Spec.Ports) == 0
}

func targetPort(sp corev1.ServicePort, pod *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == tp.StrVal && cp.Protocol == sp.Protocol {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	}
	return sp.Port, true
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// endpointFor describes a pod as Kubernetes' endpoints controller does:
// serving is readiness, terminating is deletion, ready is serving and not
// terminating (or always, for publishNotReadyAddresses).
func endpointFor(svc *corev1.Service, pod *corev1.Pod) discoveryv1.Endpoint {
	serving := podReady(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := serving && !terminating
	if svc.Spec.PublishNotReadyAddresses {
		ready, serving = true, true
	}
	ep := discoveryv1.Endpoint{
		Addresses:  []string{pod.Status.PodIP},
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(serving), Terminating: ptr.To(terminating)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if pod.Spec.NodeName != "" {
		ep.NodeName = ptr.To(pod.Spec.NodeName)
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
		ep.Hostname = ptr.To(pod.Spec.Hostname)
	}
	return ep
}
