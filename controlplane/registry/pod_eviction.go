package registry

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/kubectl/pkg/util/podutils"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// EvictPod serves pods/<name>/eviction: the pod is deleted with the
// eviction's options once its disruption budget allows.
func EvictPod(ctx context.Context, pods, budgets *generic.Store, namespace, name string, ev *policyv1.Eviction) error {
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	cur, err := pods.Get(ctx, namespace, name)
	if err != nil {
		return err
	}
	// Admitted as Kubernetes does: a CREATE of pods/eviction with the
	// Eviction; the pod's deletion is admitted as a DELETE too.
	if err := pods.AdmitSubresource(ctx, admission.Create, "eviction", policyv1.SchemeGroupVersion.WithKind("Eviction"), namespace, name, ev, len(opts.DryRun) > 0); err != nil {
		return err
	}
	if pod := cur.(*corev1.Pod); pod.DeletionTimestamp == nil && budgets != nil {
		if err := checkDisruptionBudget(ctx, budgets, pod); err != nil {
			return err
		}
	}
	if pod := cur.(*corev1.Pod); pod.DeletionTimestamp == nil && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && len(opts.DryRun) == 0 {
		// As Kubernetes: the pod says why it goes before it goes, so a
		// Job's podFailurePolicy (onPodConditions) can tell an eviction
		// from a failure.
		if err := markDisruptionTarget(ctx, pods, pod); err != nil {
			return err
		}
	}
	_, _, err = pods.Delete(ctx, namespace, name, opts)
	return err
}

// markDisruptionTarget puts the DisruptionTarget condition on a pod about to
// be evicted.
func markDisruptionTarget(ctx context.Context, pods *generic.Store, pod *corev1.Pod) error {
	_, err := pods.GuaranteedUpdate(ctx, pod.Namespace, pod.Name, "status", false, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*corev1.Pod).DeepCopy()
		if p.UID != pod.UID {
			return nil, apierrors.NewConflict(corev1.Resource("pods"), pod.Name, fmt.Errorf("the pod was replaced"))
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
				return nil, generic.ErrNoChange
			}
		}
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting", LastTransitionTime: metav1.Now()})
		return p, nil
	})
	return err
}

// checkDisruptionBudget decides whether the pod may be evicted now, as
// Kubernetes' eviction subresource does: with no budget over it, yes; a pod
// that is not running healthy may go when the budget allows (its
// unhealthyPodEvictionPolicy); a healthy pod takes one of the budget's
// allowed disruptions, recorded in the budget's status before the pod is
// deleted, or the request gets 429 and kubectl drain retries.
func checkDisruptionBudget(ctx context.Context, budgets *generic.Store, pod *corev1.Pod) error {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodPending {
		return nil
	}
	items, err := budgets.CachedList(ctx, pod.Namespace)
	if err != nil || len(items) == 0 {
		return err
	}
	var matching []*policyv1.PodDisruptionBudget
	for _, o := range items {
		pdb := o.(*policyv1.PodDisruptionBudget)
		if pdb.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		matching = append(matching, pdb)
	}
	switch len(matching) {
	case 0:
		return nil
	case 1:
	default:
		return apierrors.NewInternalError(fmt.Errorf("this pod has more than one PodDisruptionBudget, which the eviction subresource does not support"))
	}
	pdb := matching[0]
	if !podutils.IsPodReady(pod) {
		always := pdb.Spec.UnhealthyPodEvictionPolicy != nil && *pdb.Spec.UnhealthyPodEvictionPolicy == policyv1.AlwaysAllow
		if always || (pdb.Status.CurrentHealthy >= pdb.Status.DesiredHealthy && pdb.Status.DesiredHealthy > 0) {
			return nil
		}
		return budgetError(pdb)
	}
	_, err = budgets.Modify(ctx, pdb.Namespace, pdb.Name, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*policyv1.PodDisruptionBudget).DeepCopy()
		if p.Status.ObservedGeneration < p.Generation {
			return nil, tooManyRequests(fmt.Sprintf("The disruption budget %s is still being processed by the server.", p.Name))
		}
		if p.Status.DisruptionsAllowed <= 0 {
			return nil, budgetError(p)
		}
		if len(p.Status.DisruptedPods) > 2000 {
			return nil, tooManyRequests("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
		}
		p.Status.DisruptionsAllowed--
		if p.Status.DisruptedPods == nil {
			p.Status.DisruptedPods = map[string]metav1.Time{}
		}
		p.Status.DisruptedPods[pod.Name] = metav1.NewTime(time.Now())
		return p, nil
	})
	return err
}

func budgetError(p *policyv1.PodDisruptionBudget) error {
	return tooManyRequests(fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", p.Name, p.Status.DesiredHealthy, p.Status.CurrentHealthy))
}

// tooManyRequests is the 429 kubectl drain waits on and retries.
func tooManyRequests(cause string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: cause})
	return err
}
