package rbacapi

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// roleBindingResource is the strategy of rolebindings.
func roleBindingResource() *generic.Resource {
	gv := rbacv1.SchemeGroupVersion
	return &generic.Resource{
		GVR: gv.WithResource("rolebindings"), Kind: "RoleBinding", Namespaced: true, NameValidator: rbacName,
		New: func() runtime.Object { return &rbacv1.RoleBinding{} }, NewList: func() runtime.Object { return &rbacv1.RoleBindingList{} },
		Default: func(obj runtime.Object) {
			b := obj.(*rbacv1.RoleBinding)
			defaultBinding(&b.RoleRef, b.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.RoleBinding)
			return validateBinding(b.RoleRef, b.Subjects, true)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			b, o := obj.(*rbacv1.RoleBinding), old.(*rbacv1.RoleBinding)
			return append(validateBinding(b.RoleRef, b.Subjects, true), immutableRoleRef(b.RoleRef, o.RoleRef)...)
		},
		Columns: bindingColumns(func(o runtime.Object) rbacv1.RoleRef { return o.(*rbacv1.RoleBinding).RoleRef },
			func(o runtime.Object) []rbacv1.Subject { return o.(*rbacv1.RoleBinding).Subjects }),
	}
}
