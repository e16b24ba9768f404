package apiserver

import (
	"context"
	"errors"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// admitLimitRanges applies the namespace's LimitRanges to a new pod
// (default requests and limits, then their bounds), as Kubernetes'
// LimitRanger admission does; a pod out of bounds gets 403 Forbidden.
func (s *Server) admitLimitRanges(ctx context.Context, pod *corev1.Pod) error {
	ep := s.byPath["/v1/limitranges"]
	if ep == nil {
		return nil
	}
	res, err := ep.store.List(ctx, storage.ListOptions{Prefix: ep.store.NamespacePrefix(pod.Namespace), ResourceVersion: "0"})
	if err != nil || len(res.Items) == 0 {
		return err
	}
	ranges := make([]*corev1.LimitRange, 0, len(res.Items))
	for _, o := range res.Items {
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
