package server

import (
	"context"
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
	custommetrics "k8s.io/metrics/pkg/client/custom_metrics"
	externalmetrics "k8s.io/metrics/pkg/client/external_metrics"

	"github.com/petrel-project/petrel/controlplane/controllers/podautoscaler"
)

// newAutoscaler makes the HPA controller with its clients: metrics.k8s.io
// for usage, and the scale subresource of any kind that has one (found
// through discovery, so custom resources with a scale subresource work).
func newAutoscaler(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, factory informers.SharedInformerFactory, period time.Duration) (*podautoscaler.Controller, error) {
	mc, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("metrics client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(cs.Discovery()))
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cs.Discovery()))
	if err != nil {
		return nil, fmt.Errorf("scale client: %w", err)
	}
	external, err := externalmetrics.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("external metrics client: %w", err)
	}
	c := podautoscaler.New(cs, mc, scales, mapper, factory, period)
	// The custom metrics API's version is found by discovery until an
	// adapter serves one, and looked up again every 5 minutes (as
	// kube-controller-manager does), so an adapter installed or upgraded
	// later is used without a restart.
	versions := custommetrics.NewAvailableAPIsGetter(cs.Discovery())
	go custommetrics.PeriodicallyInvalidate(versions, 5*time.Minute, ctx.Done())
	c.SetMetricsAPIs(custommetrics.NewForConfig(cfg, mapper, versions), external)
	return c, nil
}
