package apiserver

import (
	metricsv1beta1 "k8s.io/metrics/pkg/apis/metrics/v1beta1"

	"github.com/petrel-project/petrel/controlplane/apiserver/proxy"
	"github.com/petrel-project/petrel/controlplane/metricsapi"
	"github.com/petrel-project/petrel/controlplane/registry"
)

// setupMetricsAPI makes the built-in metrics.k8s.io/v1beta1 when the server
// can reach nodes: kubectl top and the HPA controller work without an
// add-on.
func (s *Server) setupMetricsAPI() {
	if s.cfg.NodeTransport == nil {
		return
	}
	s.metricsAPI = &metricsapi.Fetcher{Transport: s.cfg.NodeTransport, Address: proxy.NodeServer}
	s.metricsRes = registry.MetricsResources()
}

// extraDiscovery are the resources discovery lists beyond the stored ones
// and the reviews: the built-in metrics.k8s.io.
func (s *Server) extraDiscovery() []*registry.Resource {
	var out []*registry.Resource
	if s.cfg.Aggregator == nil || s.cfg.Aggregator.Handler(metricsv1beta1.SchemeGroupVersion) == nil {
		out = append(out, s.metricsRes...)
	}
	if s.cfg.Aggregator != nil {
		out = append(out, s.cfg.Aggregator.Resources()...)
	}
	return out
}
