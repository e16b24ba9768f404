package rbacapi

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// clusterRoleBindingResource is the strategy of clusterrolebindings.
func clusterRoleBindingResource() *generic.Resource {
	gv := rbacv1.SchemeGroupVersion
	return &generic.Resource{
		GVR: gv.WithResource("clusterrolebindings"), Kind: "ClusterRoleBinding", NameValidator: rbacName,
		New: func() runtime.Object { return &rbacv1.ClusterRoleBinding{} }, NewList: func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
		Default: func(obj runtime.Object) {
			b := obj.(*rbacv1.ClusterRoleBinding)
			defaultBinding(&b.RoleRef, b.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.ClusterRoleBinding)
			return validateBinding(b.RoleRef, b.Subjects, false)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			b, o := obj.(*rbacv1.ClusterRoleBinding), old.(*rbacv1.ClusterRoleBinding)
			return append(validateBinding(b.RoleRef, b.Subjects, false), immutableRoleRef(b.RoleRef, o.RoleRef)...)
		},
		Columns: bindingColumns(func(o runtime.Object) rbacv1.RoleRef { return o.(*rbacv1.ClusterRoleBinding).RoleRef },
			func(o runtime.Object) []rbacv1.Subject { return o.(*rbacv1.ClusterRoleBinding).Subjects }),
	}
}
