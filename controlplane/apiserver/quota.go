package apiserver

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/registry"
	"github.com/petrel-project/petrel/controlplane/storage"
)

// admissionList returns the objects of the resource at path (group/
// version/resource) in namespace, for admission. It reads the watch cache as
// it is (resourceVersion 0), as Kubernetes' admission reads informer
// listers: a fresh read would cost every create an etcd round trip and a
// wait for the cache; decisions that must not race are compare-and-swap
// writes. A resource that is not served gives no objects.
func (s *Server) admissionList(ctx context.Context, path, namespace string) (*endpoint, []runtime.Object, error) {
	ep := s.byPath[path]
	if ep == nil {
		return nil, nil, nil
	}
	res, err := ep.store.List(ctx, storage.ListOptions{Prefix: ep.store.NamespacePrefix(namespace), ResourceVersion: "0"})
	if err != nil {
		return nil, nil, err
	}
	return ep, res.Items, nil
}

// computeNames are what a pod must declare when a quota limits them.
var computeNames = map[corev1.ResourceName]bool{
	corev1.ResourceCPU: true, corev1.ResourceMemory: true, corev1.ResourceRequestsCPU: true, corev1.ResourceRequestsMemory: true,
	corev1.ResourceLimitsCPU: true, corev1.ResourceLimitsMemory: true,
}

// admitQuota charges a new object to its namespace's ResourceQuotas, as
// Kubernetes' quota admission does: each quota that limits something the
// object uses has its status.used raised by a compare-and-swap write
// before the object is stored, so concurrent creates cannot both take the
// last unit; an object that would go over gets 403 Forbidden. A dry run is
// checked and not charged. The quota controller recomputes usage from what
// is stored, which gives back what deletions (and failed creates) free.
func (s *Server) admitQuota(ctx context.Context, req *request, obj runtime.Object, dryRun bool) error {
	ns := accessor(obj).GetNamespace()
	if ns == "" {
		return nil
	}
	ep, items, err := s.admissionList(ctx, "/v1/resourcequotas", ns)
	if err != nil || len(items) == 0 {
		return err
	}
	gr := req.ep.res.GVR.GroupResource()
	use := registry.QuotaUsage(gr, obj)
	for _, item := range items {
		q := item.(*corev1.ResourceQuota)
		if !registry.QuotaCovers(q, obj) {
			continue
		}
		charged := corev1.ResourceList{}
		var missing []string
		for name := range q.Spec.Hard {
			if v, ok := use[name]; ok {
				charged[name] = v
			} else if _, isPod := obj.(*corev1.Pod); isPod && computeNames[name] && len(use) > 0 {
				missing = append(missing, string(name))
			}
		}
		if len(missing) > 0 {
			sort.Strings(missing)
			return apierrors.NewForbidden(gr, accessor(obj).GetName(), fmt.Errorf("failed quota: %s: must specify %s", q.Name, strings.Join(missing, ",")))
		}
		if len(charged) == 0 {
			continue
		}
		key := ep.store.Key(ns, q.Name)
		_, _, err := ep.store.GuaranteedUpdate(ctx, key, q.Name, func(cur runtime.Object) (runtime.Object, error) {
			next := cur.(*corev1.ResourceQuota).DeepCopy()
			if next.Status.Hard == nil {
				return nil, apierrors.NewForbidden(gr, accessor(obj).GetName(), fmt.Errorf("status unknown for quota: %s, resources: %s", q.Name, names(charged)))
			}
			var over []string
			used := corev1.ResourceList{}
			for name, v := range charged {
				total := next.Status.Used[name].DeepCopy()
				total.Add(v)
				used[name] = total
				if hard, ok := next.Spec.Hard[name]; ok && total.Cmp(hard) > 0 {
					over = append(over, string(name))
				}
			}
			if len(over) > 0 {
				sort.Strings(over)
				return nil, apierrors.NewForbidden(gr, accessor(obj).GetName(), fmt.Errorf("exceeded quota: %s, requested: %s, used: %s, limited: %s",
					q.Name, listOf(over, charged), listOf(over, next.Status.Used), listOf(over, next.Spec.Hard)))
			}
			if dryRun {
				return nil, errDryRun{next}
			}
			if next.Status.Used == nil {
				next.Status.Used = corev1.ResourceList{}
			}
			for name, v := range used {
				next.Status.Used[name] = v
			}
			return next, nil
		})
		var dr errDryRun
		if err != nil && !errors.As(err, &dr) {
			return err
		}
	}
	return nil
}

func names(l corev1.ResourceList) string {
	var out []string
	for n := range l {
		out = append(out, string(n))
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

// listOf prints "pods=1,requests.cpu=500m" for the names given.
func listOf(names []string, l corev1.ResourceList) string {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		v := l[corev1.ResourceName(n)]
		parts = append(parts, n+"="+v.String())
	}
	return strings.Join(parts, ",")
}
