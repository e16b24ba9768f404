package builtin

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/quota"
)

// computeNames are what a pod must declare when a quota limits them.
var computeNames = map[corev1.ResourceName]bool{
	corev1.ResourceCPU: true, corev1.ResourceMemory: true, corev1.ResourceRequestsCPU: true, corev1.ResourceRequestsMemory: true,
	corev1.ResourceLimitsCPU: true, corev1.ResourceLimitsMemory: true,
}

// ResourceQuota charges a new object to its namespace's ResourceQuotas, as
// Kubernetes' quota admission does: each quota that limits something the
// object uses has its status.used raised by a compare-and-swap write
// before the object is stored, so concurrent creates cannot both take the
// last unit; an object that would go over gets 403 Forbidden. A dry run is
// checked and not charged. The quota controller recomputes usage from what
// is stored, which gives back what deletions (and failed creates) free.
type ResourceQuota struct {
	reg *generic.Registry
	// emptyUntil remembers, per namespace, until when a read from etcd
	// found no quota there (see quotas).
	emptyUntil sync.Map
}

// liveLookupTTL is how long a namespace found without quotas by a read
// from etcd is taken as such when the cache also has none, as Kubernetes'
// quota admission keeps its live lookups.
const liveLookupTTL = 30 * time.Second

// quotas are the namespace's quotas: from the watch cache, or, when it has
// none, from etcd — a quota created a moment before (the cache a few
// milliseconds behind) must not let the next create through unquota'd.
func (p *ResourceQuota) quotas(ctx context.Context, st *generic.Store, ns string) ([]runtime.Object, error) {
	items, err := st.CachedList(ctx, ns)
	if err != nil || len(items) > 0 {
		return items, err
	}
	if until, ok := p.emptyUntil.Load(ns); ok && time.Now().Before(until.(time.Time)) {
		return nil, nil
	}
	live, err := st.List(ctx, ns, &metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	if len(live.Items) == 0 {
		p.emptyUntil.Store(ns, time.Now().Add(liveLookupTTL))
	}
	return live.Items, nil
}

// Name names the plugin.
func (p *ResourceQuota) Name() string { return "ResourceQuota" }

// Handles creates.
func (p *ResourceQuota) Handles(op admission.Operation) bool { return op == admission.Create }

// Validate charges the new object to its namespace's quotas.
func (p *ResourceQuota) Validate(ctx context.Context, a *admission.Attributes) error {
	ns, obj, dryRun := a.Namespace, a.Object, a.DryRun
	st := coreStore(p.reg, "resourcequotas")
	if ns == "" || st == nil || a.Subresource != "" {
		return nil
	}
	items, err := p.quotas(ctx, st, ns)
	if err != nil || len(items) == 0 {
		return err
	}
	gr := a.Resource.GroupResource()
	use := quota.QuotaUsage(gr, obj)
	for _, item := range items {
		q := item.(*corev1.ResourceQuota)
		if !quota.QuotaCovers(q, obj) {
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
			return apierrors.NewForbidden(gr, a.Name, fmt.Errorf("failed quota: %s: must specify %s", q.Name, strings.Join(missing, ",")))
		}
		if len(charged) == 0 {
			continue
		}
		_, err := st.Modify(ctx, ns, q.Name, func(cur runtime.Object) (runtime.Object, error) {
			next := cur.(*corev1.ResourceQuota).DeepCopy()
			if next.Status.Hard == nil {
				return nil, apierrors.NewForbidden(gr, a.Name, fmt.Errorf("status unknown for quota: %s, resources: %s", q.Name, names(charged)))
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
				return nil, apierrors.NewForbidden(gr, a.Name, fmt.Errorf("exceeded quota: %s, requested: %s, used: %s, limited: %s",
					q.Name, listOf(over, charged), listOf(over, next.Status.Used), listOf(over, next.Spec.Hard)))
			}
			if dryRun {
				return nil, generic.ErrNoChange
			}
			if next.Status.Used == nil {
				next.Status.Used = corev1.ResourceList{}
			}
			for name, v := range used {
				next.Status.Used[name] = v
			}
			return next, nil
		})
		if err != nil {
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
