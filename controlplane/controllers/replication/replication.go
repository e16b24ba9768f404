// Package replication keeps core/v1 ReplicationControllers at their
// replicas by running the ReplicaSet controller over them: each RC is seen
// as a ReplicaSet (its map selector as matchLabels) and its status written
// back to the RC, as Kubernetes' replication manager does.
package replication

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/petrel-project/petrel/controlplane/controllers/replicaset"
)

// New builds the ReplicationController controller on a shared informer
// factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *replicaset.Controller {
	inf := factory.Core().V1().ReplicationControllers()
	lister := inf.Lister()
	return replicaset.NewForKind(cs, factory, replicaset.Kind{
		Name:     "replication-controller",
		GVK:      corev1.SchemeGroupVersion.WithKind("ReplicationController"),
		Informer: inf.Informer(),
		Get: func(ns, name string) (*appsv1.ReplicaSet, error) {
			rc, err := lister.ReplicationControllers(ns).Get(name)
			if err != nil {
				return nil, err
			}
			return AsReplicaSet(rc), nil
		},
		List: func(ns string) ([]*appsv1.ReplicaSet, error) {
			rcs, err := lister.ReplicationControllers(ns).List(labels.Everything())
			if err != nil {
				return nil, err
			}
			out := make([]*appsv1.ReplicaSet, len(rcs))
			for i, rc := range rcs {
				out[i] = AsReplicaSet(rc)
			}
			return out, nil
		},
		UpdateStatus: func(ctx context.Context, rs *appsv1.ReplicaSet) error {
			rc, err := lister.ReplicationControllers(rs.Namespace).Get(rs.Name)
			if err != nil {
				return err
			}
			upd := rc.DeepCopy()
			// The ReplicaSet view carries the RC's resourceVersion, so a
			// stale view fails with a conflict as it would for a ReplicaSet.
			upd.ResourceVersion = rs.ResourceVersion
			upd.Status = statusOf(rs.Status)
			_, err = cs.CoreV1().ReplicationControllers(rs.Namespace).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
			return err
		},
	})
}

// AsReplicaSet is rc seen as a ReplicaSet: the same metadata (not copied:
// read only), replicas, selector, template and status.
func AsReplicaSet(rc *corev1.ReplicationController) *appsv1.ReplicaSet {
	rs := &appsv1.ReplicaSet{
		ObjectMeta: rc.ObjectMeta,
		Spec: appsv1.ReplicaSetSpec{
			Replicas: rc.Spec.Replicas, MinReadySeconds: rc.Spec.MinReadySeconds,
			Selector: &metav1.LabelSelector{MatchLabels: rc.Spec.Selector},
		},
		Status: appsv1.ReplicaSetStatus{
			Replicas: rc.Status.Replicas, FullyLabeledReplicas: rc.Status.FullyLabeledReplicas, ReadyReplicas: rc.Status.ReadyReplicas,
			AvailableReplicas: rc.Status.AvailableReplicas, ObservedGeneration: rc.Status.ObservedGeneration,
		},
	}
	if rc.Spec.Template != nil {
		rs.Spec.Template = *rc.Spec.Template
	}
	for _, c := range rc.Status.Conditions {
		rs.Status.Conditions = append(rs.Status.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetConditionType(c.Type), Status: c.Status, LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return rs
}

// statusOf is a ReplicaSet's status as an RC's.
func statusOf(s appsv1.ReplicaSetStatus) corev1.ReplicationControllerStatus {
	out := corev1.ReplicationControllerStatus{
		Replicas: s.Replicas, FullyLabeledReplicas: s.FullyLabeledReplicas, ReadyReplicas: s.ReadyReplicas,
		AvailableReplicas: s.AvailableReplicas, ObservedGeneration: s.ObservedGeneration,
	}
	for _, c := range s.Conditions {
		out.Conditions = append(out.Conditions, corev1.ReplicationControllerCondition{
			Type: corev1.ReplicationControllerConditionType(c.Type), Status: c.Status, LastTransitionTime: c.LastTransitionTime, Reason: c.Reason, Message: c.Message,
		})
	}
	return out
}
