package kubelet

import corev1 "k8s.io/api/core/v1"

// Pods are the pods bound to this node that the kubelet's informer holds,
// for the node's resource metrics.
func (k *Kubelet) Pods() []*corev1.Pod {
	objs := k.pods.List()
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.(*corev1.Pod))
	}
	return out
}
