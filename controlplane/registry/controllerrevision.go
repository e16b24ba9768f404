package registry

import (
	"strings"

	"github.com/petrel-project/petrel/controlplane/registry/printers"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// controllerRevisionResource is the strategy of controllerrevisions.
func controllerRevisionResource() *Resource {
	apps := appsv1.SchemeGroupVersion
	return &Resource{
		GVR: apps.WithResource("controllerrevisions"), Kind: "ControllerRevision", Namespaced: true,
		New: func() runtime.Object { return &appsv1.ControllerRevision{} }, NewList: func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		Columns: []Column{
			printers.Col("Controller", "string", func(o runtime.Object) interface{} {
				cr := o.(*appsv1.ControllerRevision)
				if ref := metav1.GetControllerOf(cr); ref != nil {
					return strings.ToLower(ref.Kind) + "." + strings.Split(ref.APIVersion, "/")[0] + "/" + ref.Name
				}
				return "<none>"
			}),
			printers.Col("Revision", "integer", func(o runtime.Object) interface{} { return o.(*appsv1.ControllerRevision).Revision }),
			printers.AgeColumn,
		},
	}
}
