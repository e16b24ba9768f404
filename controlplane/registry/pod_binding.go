package registry

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// BindPod serves pods/<name>/binding, the scheduler's write: it sets the
// pod's node once, and the PodScheduled condition.
func BindPod(ctx context.Context, pods *generic.Store, namespace, name string, b *corev1.Binding, dryRun bool) error {
	gr := pods.Resource().GVR.GroupResource()
	if b.Target.Name == "" {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, b.Name, field.ErrorList{field.Required(field.NewPath("target", "name"), "")})
	}
	if b.Name != "" && b.Name != name {
		return apierrors.NewBadRequest("the name of the binding does not match the pod")
	}
	// Admitted as Kubernetes does: a CREATE of pods/binding with the
	// Binding (which a mutating webhook may change); the pod's assignment
	// is not admitted again.
	if err := pods.AdmitSubresource(ctx, admission.Create, "binding", corev1.SchemeGroupVersion.WithKind("Binding"), namespace, name, b, dryRun); err != nil {
		return err
	}
	_, err := pods.UpdateAdmitted(ctx, namespace, name, dryRun, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod).DeepCopy()
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(gr, name, errors.New("pod is being deleted, cannot be assigned to a host"))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(gr, name, fmt.Errorf("pod %s is already assigned to node %q", name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(gr, name, errors.New("precondition failed: UID does not match"))
		}
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(&pod.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		return pod, nil
	})
	return err
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}
