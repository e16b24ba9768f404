package quota

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// LimitRangeAnnotation lists what the LimitRanger set on a pod, as in
// Kubernetes.
const LimitRangeAnnotation = "kubernetes.io/limit-ranger"

func limitRangeResource() *generic.Resource {
	return &generic.Resource{
		GVR: corev1.SchemeGroupVersion.WithResource("limitranges"), Kind: "LimitRange", Namespaced: true, ShortNames: []string{"limits"},
		New: func() runtime.Object { return &corev1.LimitRange{} }, NewList: func() runtime.Object { return &corev1.LimitRangeList{} },
		Default:        func(obj runtime.Object) { DefaultLimitRange(obj.(*corev1.LimitRange)) },
		Validate:       func(obj runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validateLimitRange(obj.(*corev1.LimitRange)) },
		Columns:        []generic.Column{printers.CreatedAtColumn},
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
		FillMissing(&item.Default, item.Max, "")
		FillMissing(&item.DefaultRequest, item.Default, "")
		FillMissing(&item.DefaultRequest, item.Min, "")
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

// FillMissing sets in dst each default it lacks and says what it set
// ("cpu request").
func FillMissing(dst *corev1.ResourceList, defaults corev1.ResourceList, kind string) []string {
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

// AddTo adds l into sum.
func AddTo(sum, l corev1.ResourceList) {
	for name, q := range l {
		cur := sum[name]
		cur.Add(q)
		sum[name] = cur
	}
}
