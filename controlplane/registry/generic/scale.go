package generic

import (
	"context"
	"errors"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ScaleOf is the autoscaling/v1 Scale of an object whose resource serves
// /scale.
func (s *Store) ScaleOf(obj runtime.Object) *autoscalingv1.Scale {
	acc, _ := meta.Accessor(obj)
	spec, status, sel := s.res.Scale.Get(obj)
	return &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: acc.GetName(), Namespace: acc.GetNamespace(), UID: acc.GetUID(),
			ResourceVersion: acc.GetResourceVersion(), CreationTimestamp: acc.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: sel},
	}
}

// GetScale reads the object's Scale.
func (s *Store) GetScale(ctx context.Context, namespace, name string) (*autoscalingv1.Scale, error) {
	obj, err := s.Get(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return s.ScaleOf(obj), nil
}

// UpdateScale sets the replica count the Scale asks for: an update of the
// object itself (subresource ""), so its strategy and admission apply.
func (s *Store) UpdateScale(ctx context.Context, namespace, name string, scale *autoscalingv1.Scale, opts UpdateOptions) (*autoscalingv1.Scale, error) {
	res := s.res
	if scale.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0")})
	}
	opts.Subresource = ""
	out, err := s.Update(ctx, namespace, name, opts, func(cur runtime.Object) (runtime.Object, error) {
		acc, _ := meta.Accessor(cur)
		if rv := scale.ResourceVersion; rv != "" && rv != acc.GetResourceVersion() {
			return nil, apierrors.NewConflict(res.GVR.GroupResource(), name, errors.New(OptimisticLockMsg))
		}
		next := cur.DeepCopyObject()
		res.Scale.Set(next, scale.Spec.Replicas)
		nacc, _ := meta.Accessor(next)
		nacc.SetResourceVersion("")
		return next, nil
	})
	if err != nil {
		return nil, err
	}
	return s.ScaleOf(out), nil
}
