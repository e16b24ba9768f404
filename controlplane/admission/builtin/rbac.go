package builtin

import (
	"context"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/rbac"
)

// RBACEscalation keeps a user from writing a role with permissions it does
// not hold, or binding one, unless it holds escalate or bind on it.
type RBACEscalation struct {
	authz *rbac.Authorizer
}

// Name names the plugin.
func (p *RBACEscalation) Name() string { return "RBACEscalation" }

// Handles creates and updates.
func (p *RBACEscalation) Handles(op admission.Operation) bool {
	return op == admission.Create || op == admission.Update
}

// Validate refuses an escalation.
func (p *RBACEscalation) Validate(ctx context.Context, a *admission.Attributes) error {
	if p.authz == nil || !a.HasUser || rbac.IsMaster(a.User.Groups) {
		return nil
	}
	u, az := a.User, p.authz
	var err error
	var gr schema.GroupResource
	var name string
	switch o := a.Object.(type) {
	case *rbacv1.Role:
		gr, name = rbacv1.Resource("roles"), o.Name
		err = az.ConfirmCanWriteRole(u.Name, u.Groups, o.Namespace, o.Name, o.Rules)
	case *rbacv1.ClusterRole:
		gr, name = rbacv1.Resource("clusterroles"), o.Name
		rules := o.Rules
		if o.AggregationRule != nil {
			// Its rules will be whatever its selectors pick: only a user
			// who may do everything (or holds escalate) may write one.
			rules = []rbacv1.PolicyRule{
				{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
				{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
			}
		}
		err = az.ConfirmCanWriteRole(u.Name, u.Groups, "", o.Name, rules)
	case *rbacv1.RoleBinding:
		gr, name = rbacv1.Resource("rolebindings"), o.Name
		err = az.ConfirmCanBind(u.Name, u.Groups, o.Namespace, o.RoleRef)
	case *rbacv1.ClusterRoleBinding:
		gr, name = rbacv1.Resource("clusterrolebindings"), o.Name
		err = az.ConfirmCanBind(u.Name, u.Groups, "", o.RoleRef)
	default:
		return nil
	}
	if err != nil {
		return apierrors.NewForbidden(gr, name, err)
	}
	return nil
}
