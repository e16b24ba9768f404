package rbacapi

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// clusterRoleResource is the strategy of clusterroles.
func clusterRoleResource() *generic.Resource {
	gv := rbacv1.SchemeGroupVersion
	return &generic.Resource{
		GVR: gv.WithResource("clusterroles"), Kind: "ClusterRole", NameValidator: rbacName,
		New: func() runtime.Object { return &rbacv1.ClusterRole{} }, NewList: func() runtime.Object { return &rbacv1.ClusterRoleList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateClusterRole(obj.(*rbacv1.ClusterRole))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateClusterRole(obj.(*rbacv1.ClusterRole))
		},
		Columns: []generic.Column{printers.CreatedAtColumn},
	}
}
