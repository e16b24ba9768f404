package apiserver

import (
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/conversion"

	"github.com/petrel-project/petrel/controlplane/registry/autoscaling"
)

// addConversions registers the conversions between versions of one stored
// kind that the Scheme needs beyond its own: managed fields recorded
// through one version are converted when the object is written through
// another (an HPA made with autoscaling/v1 and updated through v2).
func addConversions() {
	utilRuntimeMust(Scheme.AddConversionFunc((*autoscalingv1.HorizontalPodAutoscaler)(nil), (*autoscalingv2.HorizontalPodAutoscaler)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			*b.(*autoscalingv2.HorizontalPodAutoscaler) = *autoscaling.V1ToV2(a.(*autoscalingv1.HorizontalPodAutoscaler))
			return nil
		}))
	utilRuntimeMust(Scheme.AddConversionFunc((*autoscalingv2.HorizontalPodAutoscaler)(nil), (*autoscalingv1.HorizontalPodAutoscaler)(nil),
		func(a, b interface{}, _ conversion.Scope) error {
			*b.(*autoscalingv1.HorizontalPodAutoscaler) = *autoscaling.V2ToV1(a.(*autoscalingv2.HorizontalPodAutoscaler))
			return nil
		}))
}
