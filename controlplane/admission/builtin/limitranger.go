package builtin

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/quota"
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
	problems := applyLimitRanges(pod, ranges)
	if len(problems) == 0 {
		return nil
	}
	errs := make([]error, 0, len(problems))
	for _, p := range problems {
		errs = append(errs, errors.New(p))
	}
	return apierrors.NewForbidden(corev1.Resource("pods"), pod.Name, utilerrors.NewAggregate(errs))
}

// applyLimitRanges gives the pod's containers the default requests and
// limits of the namespace's LimitRanges and checks their bounds, as
// Kubernetes' LimitRanger admission does. It returns the violations (the
// caller answers 403 Forbidden); the pod is changed only when there are none.
func applyLimitRanges(pod *corev1.Pod, ranges []*corev1.LimitRange) []string {
	var set []string
	for _, lr := range ranges {
		for _, item := range lr.Spec.Limits {
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
				for i := range cs {
					c := &cs[i]
					what := quota.FillMissing(&c.Resources.Limits, item.Default, "limit")
					what = append(what, quota.FillMissing(&c.Resources.Requests, item.DefaultRequest, "request")...)
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
					quota.AddTo(req, c.Resources.Requests)
					quota.AddTo(lim, c.Resources.Limits)
				}
				problems = append(problems, checkBounds("Pod", item, req, lim)...)
			}
		}
	}
	if len(problems) == 0 && len(set) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[quota.LimitRangeAnnotation] = "LimitRanger plugin set: " + strings.Join(set, "; ")
	}
	return problems
}

// fillMissing copies into *dst each default it lacks and says which ("cpu
// limit").
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
