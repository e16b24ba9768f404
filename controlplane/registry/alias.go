package registry

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// The strategy types live with the generic store that runs them; the kinds
// of this package are written against these names.
type (
	// Resource is one kind's strategy.
	Resource = generic.Resource
	// Column is one Table column.
	Column = generic.Column
	// ScaleAccess reads and writes the replica count for /scale.
	ScaleAccess = generic.ScaleAccess
	// Hooks run around writes of a resource.
	Hooks = generic.Hooks
	// StorageMapping keeps a resource in another's storage.
	StorageMapping = generic.StorageMapping
)

// semanticEqual compares as apimachinery's semantic equality (quantities by value).
func semanticEqual(a, b interface{}) bool { return apiequality.Semantic.DeepEqual(a, b) }
