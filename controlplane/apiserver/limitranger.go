package apiserver

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// admitLimitRanges applies the namespace's LimitRanges to a new pod
// (default requests and limits, then their bounds), as Kubernetes'
// LimitRanger admission does; a pod out of bounds gets 403 Forbidden.
func (s *Server) admitLimitRanges(ctx context.Context, pod *corev1.Pod) error {
	_, items, err := s.admissionList(ctx, "/v1/limitranges", pod.Namespace)
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
