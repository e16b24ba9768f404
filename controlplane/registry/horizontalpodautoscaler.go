package registry

import (
	"fmt"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/petrel-project/petrel/controlplane/registry/autoscaling"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// hpaResources are autoscaling/v2 HorizontalPodAutoscalers and the same
// objects through autoscaling/v1 (stored as v2, converted on the way, as
// Kubernetes keeps one stored version).
func hpaResources() []*Resource {
	v2 := func(o runtime.Object) *autoscalingv2.HorizontalPodAutoscaler {
		return o.(*autoscalingv2.HorizontalPodAutoscaler)
	}
	v1 := func(o runtime.Object) *autoscalingv1.HorizontalPodAutoscaler {
		return o.(*autoscalingv1.HorizontalPodAutoscaler)
	}
	columns := func(get func(runtime.Object) *autoscalingv2.HorizontalPodAutoscaler) []Column {
		return []Column{
			printers.Col("Reference", "string", func(o runtime.Object) interface{} {
				r := get(o).Spec.ScaleTargetRef
				return r.Kind + "/" + r.Name
			}),
			printers.Col("Targets", "string", func(o runtime.Object) interface{} { return autoscaling.Targets(get(o)) }),
			printers.Col("MinPods", "string", func(o runtime.Object) interface{} {
				if m := get(o).Spec.MinReplicas; m != nil {
					return fmt.Sprint(*m)
				}
				return "<unset>"
			}),
			printers.Col("MaxPods", "integer", func(o runtime.Object) interface{} { return int64(get(o).Spec.MaxReplicas) }),
			printers.Col("Replicas", "integer", func(o runtime.Object) interface{} { return int64(get(o).Status.CurrentReplicas) }),
		}
	}
	asV2 := func(o runtime.Object) *autoscalingv2.HorizontalPodAutoscaler { return autoscaling.V1ToV2(v1(o)) }
	return []*Resource{{
		GVR: autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers"), Kind: "HorizontalPodAutoscaler", Namespaced: true,
		ShortNames: []string{"hpa"}, Categories: []string{"all"}, HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		NewList: func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		Default: func(o runtime.Object) { autoscaling.Default(v2(o)) },
		Validate: func(o runtime.Object) field.ErrorList {
			return autoscaling.Validate(v2(o))
		},
		ValidateUpdate: func(o, _ runtime.Object) field.ErrorList { return autoscaling.Validate(v2(o)) },
		Columns:        columns(v2),
	}, {
		GVR: autoscalingv1.SchemeGroupVersion.WithResource("horizontalpodautoscalers"), Kind: "HorizontalPodAutoscaler", Namespaced: true,
		ShortNames: []string{"hpa"}, Categories: []string{"all"}, HasStatus: true, GenerationOnSpec: true,
		New:     func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} },
		NewList: func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscalerList{} },
		Default: func(o runtime.Object) {
			h := v1(o)
			if h.Spec.MinReplicas == nil {
				h.Spec.MinReplicas = ptr.To[int32](1)
			}
		},
		Validate: func(o runtime.Object) field.ErrorList {
			return autoscaling.Validate(asV2(o))
		},
		ValidateUpdate: func(o, _ runtime.Object) field.ErrorList { return autoscaling.Validate(asV2(o)) },
		Columns:        columns(asV2),
		Storage: &StorageMapping{
			GVR: autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers"), Kind: "HorizontalPodAutoscaler",
			NewStored: func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
			ToStored: func(o runtime.Object) runtime.Object {
				out := autoscaling.V1ToV2(v1(o))
				out.TypeMeta.APIVersion, out.TypeMeta.Kind = autoscalingv2.SchemeGroupVersion.String(), "HorizontalPodAutoscaler"
				return out
			},
			FromStored: func(o runtime.Object) runtime.Object {
				out := autoscaling.V2ToV1(v2(o))
				out.TypeMeta.APIVersion, out.TypeMeta.Kind = autoscalingv1.SchemeGroupVersion.String(), "HorizontalPodAutoscaler"
				return out
			},
		},
	}}
}
