package registry

import (
	"k8s.io/apimachinery/pkg/runtime"
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// MetricsResources are metrics.k8s.io/v1beta1's nodes and pods: the
// resource usage the nodes report, read only and never stored. The API
// server answers them itself unless an APIService hands the group to
// another server (metrics-server).
func MetricsResources() []*Resource {
	gv := metricsv1beta1.SchemeGroupVersion
	verbs := []string{"get", "list"}
	return []*Resource{
		{GVR: gv.WithResource("nodes"), Kind: "NodeMetrics", Singular: "", Verbs: verbs,
			New: func() runtime.Object { return &metricsv1beta1.NodeMetrics{} }},
		{GVR: gv.WithResource("pods"), Kind: "PodMetrics", Singular: "", Namespaced: true, Verbs: verbs,
			New: func() runtime.Object { return &metricsv1beta1.PodMetrics{} }},
	}
}
