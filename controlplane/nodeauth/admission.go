package nodeauth

import (
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
)

// Labels and taints a node may not set on itself, and those it may.
const (
	// restrictedLabelPrefix marks labels only admins set, so that workloads
	// can be steered to nodes by labels a node cannot give itself.
	restrictedLabelPrefix = "node-restriction.kubernetes.io/"
	// ownTaintPrefix marks taints a Petrel node sets and clears on itself
	// (node.petrel.io/no-container-runtime while it runs no pods).
	ownTaintPrefix      = "node.petrel.io/"
	mirrorPodAnnotation = "kubernetes.io/config.mirror"
)

// AdmitCreate is NodeRestriction for a create by node: resource and
// subresource name the request; obj is what is created (a TokenRequest or
// Eviction for those subresources); pod is the pod a pods/eviction or a
// token's bound pod names, when known.
func AdmitCreate(node, resource, subresource string, obj runtime.Object, pod *corev1.Pod) error {
	switch resource + "/" + subresource {
	case "pods/":
		p := obj.(*corev1.Pod)
		if _, mirror := p.Annotations[mirrorPodAnnotation]; !mirror {
			return fmt.Errorf("pod does not have %q annotation, node %q can only create mirror pods", mirrorPodAnnotation, node)
		}
		if p.Spec.NodeName != node {
			return fmt.Errorf("node %q can only create pods with spec.nodeName set to itself", node)
		}
	case "pods/eviction":
		if pod == nil || pod.Spec.NodeName != node {
			return fmt.Errorf("node %q can only evict pods with spec.nodeName set to itself", node)
		}
	case "nodes/":
		n := obj.(*corev1.Node)
		if n.Name != node {
			return fmt.Errorf("node %q is not allowed to modify node %q", node, n.Name)
		}
		if l := restrictedLabels(n.Labels, nil); len(l) > 0 {
			return fmt.Errorf("node %q is not allowed to set the following labels: %s", node, strings.Join(l, ", "))
		}
	case "leases/":
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Name != node {
			return fmt.Errorf("can only access node lease with the same name as the requesting node")
		}
	case "serviceaccounts/token":
		tr, ok := obj.(*authenticationv1.TokenRequest)
		if !ok || tr.Spec.BoundObjectRef == nil || tr.Spec.BoundObjectRef.Kind != "Pod" {
			return fmt.Errorf("node requested token not bound to a pod")
		}
		if pod == nil || pod.Spec.NodeName != node {
			return fmt.Errorf("node requested token bound to a pod scheduled on a different node")
		}
		if tr.Spec.BoundObjectRef.UID != "" && tr.Spec.BoundObjectRef.UID != pod.UID {
			return fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record", tr.Spec.BoundObjectRef.UID)
		}
	}
	return nil
}

// AdmitUpdate is NodeRestriction for an update or patch by node of old into
// obj.
func AdmitUpdate(node, resource, subresource string, obj, old runtime.Object) error {
	switch resource {
	case "pods":
		if p := old.(*corev1.Pod); p.Spec.NodeName != node {
			return fmt.Errorf("node %q can only update pod status for pods with spec.nodeName set to itself", node)
		}
	case "nodes":
		n, prev := obj.(*corev1.Node), old.(*corev1.Node)
		if prev.Name != node {
			return fmt.Errorf("node %q is not allowed to modify node %q", node, prev.Name)
		}
		if l := restrictedLabels(n.Labels, prev.Labels); len(l) > 0 {
			return fmt.Errorf("is not allowed to modify labels: %s", strings.Join(l, ", "))
		}
		if !apiequality.Semantic.DeepEqual(foreignTaints(n.Spec.Taints), foreignTaints(prev.Spec.Taints)) {
			return fmt.Errorf("node %q is not allowed to modify taints", node)
		}
		if !apiequality.Semantic.DeepEqual(n.OwnerReferences, prev.OwnerReferences) {
			return fmt.Errorf("node %q is not allowed to modify its ownerReferences", node)
		}
	case "leases":
		if l, ok := old.(*coordinationv1.Lease); ok && l.Name != node {
			return fmt.Errorf("can only access node lease with the same name as the requesting node")
		}
	}
	return nil
}

// AdmitDelete is NodeRestriction for a delete by node of old.
func AdmitDelete(node, resource string, old runtime.Object) error {
	switch resource {
	case "pods":
		if p := old.(*corev1.Pod); p.Spec.NodeName != node {
			return fmt.Errorf("node %q can only delete pods with spec.nodeName set to itself", node)
		}
	case "nodes":
		if n := old.(*corev1.Node); n.Name != node {
			return fmt.Errorf("node %q is not allowed to delete node %q", node, n.Name)
		}
	}
	return nil
}

// restrictedLabels are the node-restriction.kubernetes.io/ labels that
// differ between labels and old.
func restrictedLabels(labels, old map[string]string) []string {
	var out []string
	for k, v := range labels {
		if strings.HasPrefix(k, restrictedLabelPrefix) {
			if ov, ok := old[k]; !ok || ov != v {
				out = append(out, k)
			}
		}
	}
	for k := range old {
		if _, ok := labels[k]; !ok && strings.HasPrefix(k, restrictedLabelPrefix) {
			out = append(out, k)
		}
	}
	return out
}

// foreignTaints are the taints a node may not change on itself: all but
// its own node.petrel.io/ ones.
func foreignTaints(taints []corev1.Taint) []corev1.Taint {
	var out []corev1.Taint
	for _, t := range taints {
		if !strings.HasPrefix(t.Key, ownTaintPrefix) {
			t.TimeAdded = nil
			out = append(out, t)
		}
	}
	return out
}
