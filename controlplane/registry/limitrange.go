package registry

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// LimitRangeAnnotation lists what the LimitRanger set on a pod, as in
// Kubernetes.
const LimitRangeAnnotation = "kubernetes.io/limit-ranger"

func limitRangeResource() *Resource {
	return &Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("limitranges"), Kind: "LimitRange", Namespaced: true, ShortNames: []string{"limits"},
		New: func() runtime.Object { return &corev1.LimitRange{} }, NewList: func() runtime.Object { return &corev1.LimitRangeList{} },
		Default:        func(obj runtime.Object) { DefaultLimitRange(obj.(*corev1.LimitRange)) },
		Validate:       func(obj runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		Columns:        []Column{createdAtColumn},
	}
}

// DefaultLimitRange fills what Kubernetes fills in a LimitRange: a
// container's default limit is its max, its default request the default
// limit, or else its min.
func DefaultLimitRange(lr *corev1.LimitRange) {
	for i := range lr.Spec.Limits {
		item := &lr.Spec.Limits[i]
		if item.Type != corev1.LimitTypeContainer {
			continue
		}
		fillMissing(&item.Default, item.Max, "")
		fillMissing(&item.DefaultRequest, item.Default, "")
		fillMissing(&item.DefaultRequest, item.Min, "")
	}
}

// validateLimitRange checks min <= defaultRequest <= default <= max for
// every resource of every item, and that only containers have defaults.
func validateLimitRange(lr *corev1.LimitRange) field.ErrorList {
	var errs field.ErrorList
	for i, item := range lr.Spec.Limits {
		p := field.NewPath("spec", "limits").Index(i)
		switch item.Type {
		case corev1.LimitTypeContainer, corev1.LimitTypePod, corev1.LimitTypePersistentVolumeClaim:
		default:
			errs = append(errs, field.NotSupported(p.Child("type"), item.Type, []string{string(corev1.LimitTypeContainer), string(corev1.LimitTypePod), string(corev1.LimitTypePersistentVolumeClaim)}))
		}
		if item.Type != corev1.LimitTypeContainer {
			if len(item.Default) > 0 {
				errs = append(errs, field.Forbidden(p.Child("default"), "may not be specified when `type` is not 'Container'"))
			}
			if len(item.DefaultRequest) > 0 {
				errs = append(errs, field.Forbidden(p.Child("defaultRequest"), "may not be specified when `type` is not 'Container'"))
			}
		}
		order := []struct {
			name string
			list corev1.ResourceList
		}{{"min", item.Min}, {"defaultRequest", item.DefaultRequest}, {"default", item.Default}, {"max", item.Max}}
		for a := 0; a < len(order); a++ {
			for name, q := range order[a].list {
				if q.Sign() < 0 {
					errs = append(errs, field.Invalid(p.Child(order[a].name).Key(string(name)), q.String(), "must be greater than or equal to 0"))
				}
				for b := a + 1; b < len(order); b++ {
					if upper, ok := order[b].list[name]; ok && q.Cmp(upper) > 0 {
						errs = append(errs, field.Invalid(p.Child(order[a].name).Key(string(name)), q.String(),
							fmt.Sprintf("%s value %s is greater than %s value %s", order[a].name, q.String(), order[b].name, upper.String())))
					}
				}
			}
		}
		for name, ratio := range item.MaxLimitRequestRatio {
			if ratio.Cmp(resource.MustParse("1")) < 0 {
				errs = append(errs, field.Invalid(p.Child("maxLimitRequestRatio").Key(string(name)), ratio.String(), "ratio must be greater than or equal to 1"))
			}
		}
	}
	return errs
}

// ApplyLimitRanges gives the pod's containers the default requests and
// limits of the namespace's LimitRanges and checks their bounds, as
// Kubernetes' LimitRanger admission does. It returns the violations (the
// caller answers 403 Forbidden); the pod is changed only when there are none.
func ApplyLimitRanges(pod *corev1.Pod, ranges []*corev1.LimitRange) []string {
	var set []string
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
				for i := range cs {
					c := &cs[i]
					what := fillMissing(&c.Resources.Limits, item.Default, "limit")
					what = append(what, fillMissing(&c.Resources.Requests, item.DefaultRequest, "request")...)
					if len(what) > 0 {
						sort.Strings(what)
						set = append(set, strings.Join(what, ", ")+" for container "+c.Name)
					}
				}
			}
		}
	}
	var problems []string
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			switch item.Type {
			case corev1.LimitTypeContainer:
				for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
					for _, c := range cs {
						problems = append(problems, checkBounds("Container", item, c.Resources.Requests, c.Resources.Limits)...)
					}
				}
			case corev1.LimitTypePod:
				req, lim := corev1.ResourceList{}, corev1.ResourceList{}
				for _, c := range pod.Spec.Containers {
					addTo(req, c.Resources.Requests)
					addTo(lim, c.Resources.Limits)
				}
				problems = append(problems, checkBounds("Pod", item, req, lim)...)
			}
		}
	}
	if len(problems) == 0 && len(set) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[LimitRangeAnnotation] = "LimitRanger plugin set: " + strings.Join(set, "; ")
	}
	return problems
}

// fillMissing copies into *dst each default it lacks and says which ("cpu
// limit").
func fillMissing(dst *corev1.ResourceList, defaults corev1.ResourceList, kind string) []string {
	var what []string
	for name, q := range defaults {
		if _, ok := (*dst)[name]; ok {
			continue
		}
		if *dst == nil {
			*dst = corev1.ResourceList{}
		}
		(*dst)[name] = q.DeepCopy()
		what = append(what, string(name)+" "+kind)
	}
	return what
}

func addTo(sum, l corev1.ResourceList) {
	for name, q := range l {
		cur := sum[name]
		cur.Add(q)
		sum[name] = cur
	}
}

// checkBounds words its findings as Kubernetes does.
func checkBounds(scope string, item corev1.LimitRangeItem, requests, limits corev1.ResourceList) []string {
	var out []string
	names := func(l corev1.ResourceList) []corev1.ResourceName {
		var ns []corev1.ResourceName
		for n := range l {
			ns = append(ns, n)
		}
		sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
		return ns
	}
	for _, name := range names(item.Min) {
		min := item.Min[name]
		req, ok := requests[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("minimum %s usage per %s is %s.  No request is specified", name, scope, min.String()))
		case req.Cmp(min) < 0:
			out = append(out, fmt.Sprintf("minimum %s usage per %s is %s, but request is %s", name, scope, min.String(), req.String()))
		}
	}
	for _, name := range names(item.Max) {
		max := item.Max[name]
		lim, ok := limits[name]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("maximum %s usage per %s is %s.  No limit is specified", name, scope, max.String()))
		case lim.Cmp(max) > 0:
			out = append(out, fmt.Sprintf("maximum %s usage per %s is %s, but limit is %s", name, scope, max.String(), lim.String()))
		}
	}
	for _, name := range names(item.MaxLimitRequestRatio) {
		ratio := item.MaxLimitRequestRatio[name]
		lim, lok := limits[name]
		req, rok := requests[name]
		if !lok || !rok || req.IsZero() {
			if !lok || !rok {
				out = append(out, fmt.Sprintf("%s max limit to request ratio per %s is %s, but no request or limit is specified", name, scope, ratio.String()))
			}
			continue
		}
		if float64(lim.MilliValue())/float64(req.MilliValue()) > float64(ratio.MilliValue())/1000 {
			out = append(out, fmt.Sprintf("%s max limit to request ratio per %s is %s, but provided ratio is %.6f", name, scope, ratio.String(),
				float64(lim.MilliValue())/float64(req.MilliValue())))
		}
	}
	return out
}
