package rbacapi

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
	"github.com/petrel-project/petrel/controlplane/registry/printers"
)

// roleResource is the strategy of roles.
func roleResource() *generic.Resource {
	gv := rbacv1.SchemeGroupVersion
	return &generic.Resource{
		GVR: gv.WithResource("roles"), Kind: "Role", Namespaced: true, NameValidator: rbacName,
		New: func() runtime.Object { return &rbacv1.Role{} }, NewList: func() runtime.Object { return &rbacv1.RoleList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateRules(obj.(*rbacv1.Role).Rules, true)
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return validateRules(obj.(*rbacv1.Role).Rules, true)
		},
		Columns: []generic.Column{printers.CreatedAtColumn},
	}
}
