package quota

import (
	"fmt"
	"sort"
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func resourceQuotaResource() *generic.Resource {
	rq := func(o runtime.Object) *corev1.ResourceQuota { return o.(*corev1.ResourceQuota) }
	// usageColumn prints "pods: 1/10, services: 0/5" for the names that
	// pick, as kubectl does (REQUEST: everything but limits.*; LIMIT: limits.*).
	usageColumn := func(name string, pick func(corev1.ResourceName) bool) generic.Column {
		return printers.Col(name, "string", func(o runtime.Object) interface{} {
			q := rq(o)
			var parts []string
			for _, n := range sortedNames(q.Status.Hard) {
				if !pick(n) {
					continue
				}
				used := q.Status.Used[n]
				hard := q.Status.Hard[n]
				parts = append(parts, fmt.Sprintf("%s: %s/%s", n, used.String(), hard.String()))
			}
			return strings.Join(parts, ", ")
		})
	}
	isLimit := func(n corev1.ResourceName) bool { return strings.HasPrefix(string(n), "limits.") }
	return &generic.Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("resourcequotas"), Kind: "ResourceQuota", Namespaced: true, ShortNames: []string{"quota"},
		HasStatus: true,
		New:       func() runtime.Object { return &corev1.ResourceQuota{} }, NewList: func() runtime.Object { return &corev1.ResourceQuotaList{} },
		Validate:       func(obj runtime.Object) field.ErrorList { return validateQuota(rq(obj)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateQuota(rq(obj)) },
		Columns: []generic.Column{printers.AgeColumn,
			usageColumn("Request", func(n corev1.ResourceName) bool { return !isLimit(n) }),
			usageColumn("Limit", isLimit)},
	}
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func validateQuota(q *corev1.ResourceQuota) field.ErrorList {
	var errs field.ErrorList
	for name, v := range q.Spec.Hard {
		if v.Sign() < 0 {
			errs = append(errs, field.Invalid(field.NewPath("spec", "hard").Key(string(name)), v.String(), "must be greater than or equal to 0"))
		}
	}
	for i, scope := range q.Spec.Scopes {
		p := field.NewPath("spec", "scopes").Index(i)
		if !supportedScopes[scope] {
			errs = append(errs, field.NotSupported(p, scope, []string{string(corev1.ResourceQuotaScopeTerminating),
				string(corev1.ResourceQuotaScopeNotTerminating), string(corev1.ResourceQuotaScopeBestEffort), string(corev1.ResourceQuotaScopeNotBestEffort)}))
			continue
		}
		if scope == corev1.ResourceQuotaScopeBestEffort {
			for name := range q.Spec.Hard {
				if name != corev1.ResourcePods && name != "count/pods" {
					errs = append(errs, field.Invalid(field.NewPath("spec", "hard").Key(string(name)), name, "unsupported scope applied to resource: BestEffort tracks pods only"))
				}
			}
		}
	}
	if q.Spec.ScopeSelector != nil {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "scopeSelector"), "scope selectors (priority classes) are not supported by Petrel yet"))
	}
	return errs
}

var supportedScopes = map[corev1.ResourceQuotaScope]bool{
	corev1.ResourceQuotaScopeTerminating: true, corev1.ResourceQuotaScopeNotTerminating: true,
	corev1.ResourceQuotaScopeBestEffort: true, corev1.ResourceQuotaScopeNotBestEffort: true,
}

// QuotaCovers reports whether a quota counts obj: a quota with scopes
// counts only pods in all of them (Terminating: with activeDeadlineSeconds;
// BestEffort: no container asks for or limits anything).
func QuotaCovers(q *corev1.ResourceQuota, obj runtime.Object) bool {
	if len(q.Spec.Scopes) == 0 {
		return true
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	bestEffort := true
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if len(c.Resources.Requests) > 0 || len(c.Resources.Limits) > 0 {
				bestEffort = false
			}
		}
	}
	terminating := pod.Spec.ActiveDeadlineSeconds != nil
	for _, scope := range q.Spec.Scopes {
		switch scope {
		case corev1.ResourceQuotaScopeTerminating:
			if !terminating {
				return false
			}
		case corev1.ResourceQuotaScopeNotTerminating:
			if terminating {
				return false
			}
		case corev1.ResourceQuotaScopeBestEffort:
			if !bestEffort {
				return false
			}
		case corev1.ResourceQuotaScopeNotBestEffort:
			if bestEffort {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// QuotaUsage is what one object counts against a namespace's quotas, as
// Kubernetes' quota evaluators count it: every object as
// count/<resource>[.<group>], core objects also under their short names
// (pods, services, configmaps ...), pods their CPU and memory requests and
// limits (finished pods count nothing), Services their NodePorts and load
// balancers, claims their storage.
func QuotaUsage(gr schema.GroupResource, obj runtime.Object) corev1.ResourceList {
	one := resource.MustParse("1")
	count := "count/" + gr.Resource
	if gr.Group != "" {
		count += "." + gr.Group
	}
	use := corev1.ResourceList{corev1.ResourceName(count): one}
	switch o := obj.(type) {
	case *corev1.Pod:
		if o.Status.Phase == corev1.PodSucceeded || o.Status.Phase == corev1.PodFailed {
			return corev1.ResourceList{}
		}
		use[corev1.ResourcePods] = one
		req, lim := corev1.ResourceList{}, corev1.ResourceList{}
		for _, c := range o.Spec.Containers {
			AddTo(req, c.Resources.Requests)
			AddTo(lim, c.Resources.Limits)
		}
		// An init container runs alone: the pod needs the larger of it
		// and the sum of the others.
		for _, c := range o.Spec.InitContainers {
			for n, v := range c.Resources.Requests {
				if cur := req[n]; v.Cmp(cur) > 0 {
					req[n] = v.DeepCopy()
				}
			}
			for n, v := range c.Resources.Limits {
				if cur := lim[n]; v.Cmp(cur) > 0 {
					lim[n] = v.DeepCopy()
				}
			}
		}
		for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
			if v, ok := req[n]; ok {
				use[n] = v.DeepCopy()
				use["requests."+n] = v.DeepCopy()
			}
			if v, ok := lim[n]; ok {
				use["limits."+n] = v.DeepCopy()
			}
		}
		// Extended resources (example.com/dongle) are quota'd by their
		// requests only, as Kubernetes does.
		for n, v := range req {
			if strings.Contains(string(n), "/") && !strings.HasPrefix(string(n), corev1.ResourceDefaultNamespacePrefix) {
				use[corev1.DefaultResourceRequestsPrefix+n] = v.DeepCopy()
			}
		}
	case *corev1.Service:
		use[corev1.ResourceServices] = one
		// Every port of a NodePort Service takes a node port, and of a
		// LoadBalancer one unless it opts out: counted from the spec, since
		// admission runs before the ports are allocated.
		ports := len(o.Spec.Ports)
		if o.Spec.Type == corev1.ServiceTypeLoadBalancer {
			use[corev1.ResourceServicesLoadBalancers] = one
			if o.Spec.AllocateLoadBalancerNodePorts != nil && !*o.Spec.AllocateLoadBalancerNodePorts {
				ports = 0
				for _, p := range o.Spec.Ports {
					if p.NodePort != 0 {
						ports++
					}
				}
			}
		}
		if o.Spec.Type == corev1.ServiceTypeNodePort || o.Spec.Type == corev1.ServiceTypeLoadBalancer {
			use[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(int64(ports), resource.DecimalSI)
		}
	case *corev1.ConfigMap:
		use[corev1.ResourceConfigMaps] = one
	case *corev1.Secret:
		use[corev1.ResourceSecrets] = one
	case *corev1.ResourceQuota:
		use[corev1.ResourceQuotas] = one
	case *corev1.ReplicationController:
		use[corev1.ResourceReplicationControllers] = one
	case *corev1.PersistentVolumeClaim:
		use[corev1.ResourcePersistentVolumeClaims] = one
		storage, hasStorage := o.Spec.Resources.Requests[corev1.ResourceStorage]
		if hasStorage {
			use[corev1.ResourceRequestsStorage] = storage.DeepCopy()
		}
		// And per storage class: <class>.storageclass.storage.k8s.io/...
		if sc := o.Spec.StorageClassName; sc != nil && *sc != "" {
			prefix := corev1.ResourceName(*sc + ".storageclass.storage.k8s.io/")
			use[prefix+corev1.ResourcePersistentVolumeClaims] = one
			if hasStorage {
				use[prefix+corev1.ResourceRequestsStorage] = storage.DeepCopy()
			}
		}
	}
	return use
}
