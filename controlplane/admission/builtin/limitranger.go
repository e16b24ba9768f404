package builtin

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// LimitRanger applies the namespace's LimitRanges to a new pod (default
// requests and limits, then their bounds), as Kubernetes' LimitRanger
// admission does; a pod out of bounds gets 403 Forbidden.
type LimitRanger struct {
	reg *generic.Registry
}

// Name names the plugin.
func (p *LimitRanger) Name() string { return "LimitRanger" }

// Handles creates.
func (p *LimitRanger) Handles(op admission.Operation) bool { return op == admission.Create }

// Admit defaults and checks a new pod's resources.
func (p *LimitRanger) Admit(ctx context.Context, a *admission.Attributes) error {
	pod, ok := a.Object.(*corev1.Pod)
	if !ok || a.Subresource != "" {
		return nil
	}
	st := coreStore(p.reg, "limitranges")
	if st == nil {
		return nil
	}
	items, err := st.CachedList(ctx, pod.Namespace)
	if err != nil || len(items) == 0 {
		return err
	}
	ranges := make([]*corev1.LimitRange, 0, len(items))
	for _, o := range items {
		ranges = append(ranges, o.(*corev1.LimitRange))
	}
	problems := registry.ApplyLimitRanges(pod, ranges)
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, 0, len(problems))
	for _, p := range problems {
		errs = append(errs, errors.New(p))
	}
	return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, utilerrors.NewAggregate(errs))
}
