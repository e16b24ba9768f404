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

	"github.com/petrel-project/petrel/controlplane/admission"
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
	out, err := s.guaranteedUpdate(ctx, namespace, name, "", opts.DryRun, func(cur runtime.Object) (runtime.Object, error) {
		acc, _ := meta.Accessor(cur)
		if rv := scale.ResourceVersion; rv != "" && rv != acc.GetResourceVersion() {
			return nil, apierrors.NewConflict(res.GVR.GroupResource(), name, errors.New(OptimisticLockMsg))
		}
		next := cur.DeepCopyObject()
		res.Scale.Set(next, scale.Spec.Replicas)
		nacc, _ := meta.Accessor(next)
		nacc.SetResourceVersion("")
		return s.PrepareUpdate(ctx, next, cur, opts)
	}, s.admitScale(namespace, name, opts.DryRun))
	if err != nil {
		return nil, err
	}
	return s.ScaleOf(out), nil
}

// admitScale admits a /scale write as Kubernetes does: an UPDATE of
// <resource>/scale whose objects are the new and old autoscaling/v1 Scales.
// A replica count a mutating plugin sets is written back to the object and
// validated again.
func (s *Store) admitScale(namespace, name string, dryRun bool) admitFunc {
	return func(ctx context.Context, chain admission.Chain, next, cur runtime.Object) error {
		obj, old := s.ScaleOf(next), s.ScaleOf(cur)
		want := obj.Spec.Replicas
		a := &admission.Attributes{Operation: admission.Update, Resource: s.res.GVR, Subresource: "scale",
			Kind: autoscalingv1.SchemeGroupVersion.WithKind("Scale"), Namespace: namespace, Name: name,
			Object: obj, OldObject: old, DryRun: dryRun}
		fillUser(ctx, a)
		if err := chain.Admit(ctx, a); err != nil {
			return err
		}
		if obj.Spec.Replicas != want {
			if obj.Spec.Replicas < 0 {
				return apierrors.NewInvalid(schema.GroupKind{Group: "autoscaling", Kind: "Scale"}, name,
					field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), obj.Spec.Replicas, "must be greater than or equal to 0")})
			}
			s.res.Scale.Set(next, obj.Spec.Replicas)
			if err := s.validateUpdate(next, cur, ""); err != nil {
				return err
			}
		}
		return chain.Validate(ctx, a)
	}
}

// AdmitSubresource runs the chain (mutating, then validating) for a write
// through a subresource that carries another kind than the store's, as
// Kubernetes admits pods/binding (a Binding) and pods/eviction (an
// Eviction): obj may be changed by mutating plugins.
func (s *Store) AdmitSubresource(ctx context.Context, op admission.Operation, sub string, kind schema.GroupVersionKind, namespace, name string, obj runtime.Object, dryRun bool) error {
	a := &admission.Attributes{Operation: op, Resource: s.res.GVR, Subresource: sub, Kind: kind,
		Namespace: namespace, Name: name, Object: obj, DryRun: dryRun}
	return s.reg.Admit(ctx, a)
}

// UpdateAdmitted is GuaranteedUpdate for a write whose admission ran on
// its subresource's object (AdmitSubresource): the object's own update is
// not admitted again, as Kubernetes assigns a bound pod.
func (s *Store) UpdateAdmitted(ctx context.Context, namespace, name string, dryRun bool, fn func(cur runtime.Object) (runtime.Object, error)) (runtime.Object, error) {
	return s.guaranteedUpdate(ctx, namespace, name, "", dryRun, fn, func(context.Context, admission.Chain, runtime.Object, runtime.Object) error { return nil })
}
