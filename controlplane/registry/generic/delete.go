package generic

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/admission"
)

// Delete deletes the object now, or marks it for deletion when finalizers, a
// foreground/orphan propagation, a grace period (pods) or a termination
// (namespaces) must run first. accepted is true when the object was marked
// and will go later (202 Accepted).
func (s *Store) Delete(ctx context.Context, namespace, name string, opts *metav1.DeleteOptions) (obj runtime.Object, accepted bool, err error) {
	res := s.res
	if res.DeleteForbidden != nil {
		if err := res.DeleteForbidden(name); err != nil {
			return nil, false, apierrors.NewForbidden(res.GVR.GroupResource(), name, err)
		}
	}
	dryRun := len(opts.DryRun) > 0
	chain := s.reg.Admission()
	out, deleted, err := s.storage.GuaranteedUpdate(ctx, s.key(namespace, name), name, func(cur runtime.Object) (runtime.Object, error) {
		acc, err := meta.Accessor(cur)
		if err != nil {
			return nil, err
		}
		accepted = false
		if err := chain.Validate(ctx, s.attributes(ctx, admission.Delete, "", namespace, name, nil, cur, dryRun)); err != nil {
			return nil, err
		}
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != acc.GetUID() {
				return nil, apierrors.NewConflict(res.GVR.GroupResource(), name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, acc.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != acc.GetResourceVersion() {
				return nil, apierrors.NewConflict(res.GVR.GroupResource(), name, fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, acc.GetResourceVersion()))
			}
		}
		next := cur.DeepCopyObject()
		nacc, _ := meta.Accessor(next)
		finalizers := nacc.GetFinalizers()
		policy := metav1.DeletePropagationBackground
		if opts.PropagationPolicy != nil {
			policy = *opts.PropagationPolicy
		} else if opts.OrphanDependents != nil && *opts.OrphanDependents {
			policy = metav1.DeletePropagationOrphan
		}
		switch policy {
		case metav1.DeletePropagationForeground:
			finalizers = addString(finalizers, metav1.FinalizerDeleteDependents)
		case metav1.DeletePropagationOrphan:
			finalizers = addString(finalizers, metav1.FinalizerOrphanDependents)
		}
		nacc.SetFinalizers(finalizers)
		if res.Terminate != nil {
			if nacc.GetDeletionTimestamp() != nil {
				return nil, ErrNoChange
			}
			now := metav1.Now()
			nacc.SetDeletionTimestamp(&now)
			zero := int64(0)
			nacc.SetDeletionGracePeriodSeconds(&zero)
			if held := res.Terminate(next); !held && len(finalizers) == 0 {
				return nil, nil
			}
			return next, nil
		}
		var grace int64
		if res.GracePeriod != nil {
			grace = res.GracePeriod(next, opts)
		}
		if nacc.GetDeletionTimestamp() != nil {
			// Already terminating: a shorter grace period may still cut it short.
			if grace == 0 && len(finalizers) == 0 {
				return nil, nil
			}
			if len(finalizers) != len(acc.GetFinalizers()) {
				return next, nil
			}
			return nil, ErrNoChange
		}
		if len(finalizers) == 0 && grace == 0 {
			return nil, nil
		}
		when := metav1.NewTime(time.Now().Add(time.Duration(grace) * time.Second))
		nacc.SetDeletionTimestamp(&when)
		nacc.SetDeletionGracePeriodSeconds(&grace)
		if grace == 0 {
			n := metav1.Now()
			nacc.SetDeletionTimestamp(&n)
		}
		accepted = true
		if dryRun {
			return next, errDryRun{next}
		}
		return next, nil
	})
	var dr errDryRun
	if errors.As(err, &dr) {
		return dr.obj, true, nil
	}
	if err != nil {
		return nil, false, err
	}
	if deleted {
		accepted = false
		if res.Hooks != nil {
			res.Hooks.AfterDelete(ctx, out)
		}
	}
	return out, accepted, nil
}

func addString(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// DeleteCollection deletes every object the list options select in the
// namespace and returns what it deleted (or marked) and the list's
// resourceVersion.
func (s *Store) DeleteCollection(ctx context.Context, namespace string, listOpts *metav1.ListOptions, opts *metav1.DeleteOptions) ([]runtime.Object, int64, error) {
	result, err := s.List(ctx, namespace, &metav1.ListOptions{LabelSelector: listOpts.LabelSelector, FieldSelector: listOpts.FieldSelector})
	if err != nil {
		return nil, 0, err
	}
	var deleted []runtime.Object
	for _, item := range result.Items {
		acc, err := meta.Accessor(item)
		if err != nil {
			return nil, 0, err
		}
		out, _, err := s.Delete(ctx, acc.GetNamespace(), acc.GetName(), opts)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, 0, err
		}
		if out != nil {
			deleted = append(deleted, out)
		}
	}
	return deleted, result.ResourceVersion, nil
}
