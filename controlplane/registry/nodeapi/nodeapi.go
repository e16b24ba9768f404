// Package nodeapi holds the strategy of node.k8s.io/v1 RuntimeClasses for
// the generic store (the RuntimeClass admission plugin applies them to pods).
package nodeapi

import "github.com/petrel-project/petrel/controlplane/registry/generic"

// Resources are the group's kinds.
func Resources() []*generic.Resource {
	return []*generic.Resource{runtimeClassResource()}
}
