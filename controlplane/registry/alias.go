package registry

import (
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

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

// CopyStatus copies the Status field of from into to.
func CopyStatus(to, from runtime.Object) { generic.CopyStatus(to, from) }

// CopyField copies the named top-level field of from into to.
func CopyField(to, from runtime.Object, name string) { generic.CopyField(to, from, name) }

// ClearStatus zeroes the Status field.
func ClearStatus(obj runtime.Object) { generic.ClearStatus(obj) }

// SpecChanged reports whether the Spec field (when the type has one) differs.
func SpecChanged(obj, old runtime.Object) bool { return generic.SpecChanged(obj, old) }

func creationTime(obj runtime.Object) metav1.Time { return generic.CreationTime(obj) }

// semanticEqual compares as apimachinery's semantic equality (quantities by value).
func semanticEqual(a, b interface{}) bool { return apiequality.Semantic.DeepEqual(a, b) }
