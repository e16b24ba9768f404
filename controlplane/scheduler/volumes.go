package scheduler

import (
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Volume reasons, in kube-scheduler's words.
const (
	reasonVolumeNode       = "node(s) had volume node affinity conflict"
	reasonUnboundImmediate = "pod has unbound immediate PersistentVolumeClaims"
	// annSelectedNode tells a WaitForFirstConsumer claim's provisioner
	// where the claim's first pod goes.
	annSelectedNode = "volume.kubernetes.io/selected-node"
)

// podVolumes are what a pod's claims ask of its node.
type podVolumes struct {
	// nodes are the node affinities of the volumes its bound claims hold.
	nodes []*nodeaffinity.LazyErrorNodeSelector
	// delayed are its claims that wait for the pod's node to be chosen
	// (WaitForFirstConsumer), to be told it before the pod is bound.
	delayed []*corev1.PersistentVolumeClaim
}

// volumes reads the pod's claims, as kube-scheduler's VolumeBinding plugin
// does: a bound claim's volume may tie the pod to nodes; an unbound claim
// of a WaitForFirstConsumer class goes where the pod goes; any other
// unbound claim, or a missing one, keeps the pod from every node (the
// reason is returned).
func (s *Scheduler) volumes(pod *corev1.Pod) (podVolumes, string) {
	var out podVolumes
	for _, v := range pod.Spec.Volumes {
		name := ""
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = pod.Name + "-" + v.Name
		default:
			continue
		}
		if s.claims == nil {
			continue
		}
		pvc, err := s.claims.PersistentVolumeClaims(pod.Namespace).Get(name)
		if err != nil {
			return out, fmt.Sprintf("persistentvolumeclaim %q not found", name)
		}
		if pvc.DeletionTimestamp != nil {
			return out, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name)
		}
		if pvc.Spec.VolumeName != "" {
			pv, err := s.volumesLister.Get(pvc.Spec.VolumeName)
			if err != nil {
				return out, fmt.Sprintf("persistentvolume %q not found", pvc.Spec.VolumeName)
			}
			if na := pv.Spec.NodeAffinity; na != nil && na.Required != nil {
				out.nodes = append(out.nodes, nodeaffinity.NewLazyErrorNodeSelector(na.Required))
			}
			continue
		}
		class := ""
		if pvc.Spec.StorageClassName != nil {
			class = *pvc.Spec.StorageClassName
		}
		sc, err := s.classes.Get(class)
		if class == "" || err != nil || sc.VolumeBindingMode == nil || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
			return out, reasonUnboundImmediate
		}
		out.delayed = append(out.delayed, pvc)
	}
	return out, ""
}

// volumesFit says whether the node can use the pod's bound volumes.
func volumesFit(c *candidate, node *corev1.Node) bool {
	for _, sel := range c.volumeNodes {
		if ok, _ := sel.Match(node); !ok {
			return false
		}
	}
	return true
}

// selectNode names the chosen node on the pod's waiting claims, so that
// their volumes are made (or picked) there, before the pod is bound.
func (s *Scheduler) selectNode(ctx context.Context, claims []*corev1.PersistentVolumeClaim, node string) error {
	for _, pvc := range claims {
		if pvc.Annotations[annSelectedNode] == node {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annSelectedNode: node}}})
		if _, err := s.client.CoreV1().PersistentVolumeClaims(pvc.Namespace).Patch(ctx, pvc.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("naming node %s on claim %s/%s: %w", node, pvc.Namespace, pvc.Name, err)
		}
	}
	return nil
}
