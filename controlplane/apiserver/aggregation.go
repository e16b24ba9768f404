package apiserver

import (
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/registry"
)

// Aggregator is what the API server needs of API aggregation.
type Aggregator interface {
	// Handler is the proxy of a group version another server serves (an
	// APIService with a service), nil when this server serves it.
	Handler(gv schema.GroupVersion) http.Handler
	// Resources are the aggregated group versions' resources, for
	// discovery.
	Resources() []*registry.Resource
	// OnChange registers a function run when those change.
	OnChange(fn func())
}

// aggregated is the proxy for a request under /apis/<group>/<version>/
// that an APIService hands to another server, nil otherwise. It runs after
// authentication and authorization, as Kubernetes' aggregator does.
func (s *Server) aggregated(r *http.Request) http.Handler {
	if s.cfg.Aggregator == nil || !strings.HasPrefix(r.URL.Path, "/apis/") {
		return nil
	}
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/apis/"), "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil
	}
	return s.cfg.Aggregator.Handler(schema.GroupVersion{Group: parts[0], Version: parts[1]})
}
