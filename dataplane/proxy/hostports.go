package proxy

import (
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/dataplane/bpfobj"
)

// hostPortPrefix marks the queue keys (and frontend owners) of pods whose
// containers ask for host ports, beside the Services' namespace/name keys.
const hostPortPrefix = "hostport:"

// desiredHostPorts are the frontends of a pod's hostPorts: the node's
// addresses (or the one hostIP names) and the host port, leading to the
// pod's address and container port, as CNI's portmap plugin does with
// iptables. A pod that is not running on its own address has none.
func desiredHostPorts(pod *corev1.Pod) []Frontend {
	if pod == nil || pod.Spec.HostNetwork || pod.DeletionTimestamp != nil ||
		pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	podIP, err := netip.ParseAddr(pod.Status.PodIP)
	if err != nil || !podIP.Is4() {
		return nil
	}
	var out []Frontend
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			for _, port := range c.Ports {
				if port.HostPort == 0 {
					continue
				}
				proto, ok := l4Proto(port.Protocol)
				if !ok {
					continue
				}
				key := FrontendKey{Address: netip.IPv4Unspecified(), Port: uint16(port.HostPort), Proto: proto}
				flags := uint8(bpfobj.FlagNodePort)
				if a, err := netip.ParseAddr(port.HostIP); err == nil && a.Is4() && !a.IsUnspecified() {
					key.Address, flags = a, bpfobj.FlagExternal
				}
				out = append(out, Frontend{Key: key, Flags: flags,
					Backends: []BackendAddr{{Address: podIP, Port: uint16(port.ContainerPort)}}})
			}
		}
	}
	return out
}

func (p *Proxy) enqueuePod(obj interface{}) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		p.queue.Add(hostPortPrefix + key)
	}
}

// desiredForPod is what the maps should hold for a hostport: key.
func (p *Proxy) desiredForPod(key string) []Frontend {
	if p.podLister == nil {
		return nil
	}
	ns, name, err := cache.SplitMetaNamespaceKey(strings.TrimPrefix(key, hostPortPrefix))
	if err != nil {
		return nil
	}
	pod, err := p.podLister.Pods(ns).Get(name)
	if err != nil {
		return nil
	}
	return desiredHostPorts(pod)
}
