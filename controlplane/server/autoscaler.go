package server

import (
	"fmt"
	"time"

	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"

	"github.com/petrel-project/petrel/controlplane/controllers/podautoscaler"
)

// newAutoscaler makes the HPA controller with its clients: metrics.k8s.io
// for usage, and the scale subresource of any kind that has one (found
// through discovery, so custom resources with a scale subresource work).
func newAutoscaler(cfg *rest.Config, cs kubernetes.Interface, factory informers.SharedInformerFactory, period time.Duration) (*podautoscaler.Controller, error) {
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metrics client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cs.Discovery()))
	if err != nil {
		return nil, fmt.Errorf("scale client: %w", err)
	}
	return podautoscaler.New(cs, mc, scales, mapper, factory, period), nil
}
