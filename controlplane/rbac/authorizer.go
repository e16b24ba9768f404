package rbac

import (
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/labels"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

// MastersGroup is the group whose members may do everything without any
// binding, as Kubernetes' system:masters: the admin kubeconfig and the
// cluster's own components carry it, so that a broken or deleted policy
// cannot lock them out.
const MastersGroup = "system:masters"

// Listers are the cached RBAC objects the authorizer reads.
type Listers struct {
	Roles               rbaclisters.RoleLister
	RoleBindings        rbaclisters.RoleBindingLister
	ClusterRoles        rbaclisters.ClusterRoleLister
	ClusterRoleBindings rbaclisters.ClusterRoleBindingLister
	// Synced report whether the caches behind the listers are filled.
	Synced []cache.InformerSynced
}

// Authorizer decides requests from the cluster's Roles and bindings.
type Authorizer struct {
	l Listers
}

// New returns an authorizer over the listers.
func New(l Listers) *Authorizer { return &Authorizer{l: l} }

// HasSynced reports whether the policy caches are filled; until then only
// system:masters is let in.
func (a *Authorizer) HasSynced() bool {
	for _, s := range a.l.Synced {
		if !s() {
			return false
		}
	}
	return true
}

// IsMaster reports whether groups include system:masters.
func IsMaster(groups []string) bool {
	for _, g := range groups {
		if g == MastersGroup {
			return true
		}
	}
	return false
}

// Authorize reports whether the request is allowed. When it is not, reason
// explains what went wrong beyond "no rule allows it" (a binding to a role
// that does not exist), or is empty.
func (a *Authorizer) Authorize(attrs Attributes) (allowed bool, reason string) {
	if IsMaster(attrs.Groups) {
		return true, ""
	}
	if !a.HasSynced() {
		return false, "the authorization policy is still loading; retry in a moment"
	}
	var missing []string
	a.visitRules(attrs.User, attrs.Groups, attrs.Namespace, func(rule *rbacv1.PolicyRule, err error) bool {
		if err != nil {
			missing = append(missing, err.Error())
			return true
		}
		if ruleAllows(attrs, rule) {
			allowed = true
			return false
		}
		return true
	})
	if allowed {
		return true, ""
	}
	if len(missing) > 0 {
		return false, "RBAC: " + strings.Join(missing, ", ")
	}
	return false, ""
}

// RulesFor returns every rule that applies to the user in namespace
// (cluster-wide rules only when namespace is empty), and the problems met
// on the way (bindings to missing roles).
func (a *Authorizer) RulesFor(user string, groups []string, namespace string) (rules []rbacv1.PolicyRule, problems []string) {
	if IsMaster(groups) {
		return []rbacv1.PolicyRule{
			{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		}, nil
	}
	a.visitRules(user, groups, namespace, func(rule *rbacv1.PolicyRule, err error) bool {
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			rules = append(rules, *rule)
		}
		return true
	})
	return rules, problems
}

// visitRules calls visit with each rule bound to the user, cluster-wide and
// then in namespace, until visit returns false.
func (a *Authorizer) visitRules(user string, groups []string, namespace string, visit func(*rbacv1.PolicyRule, error) bool) {
	crbs, err := a.l.ClusterRoleBindings.List(labels.Everything())
	if err != nil {
		visit(nil, err)
		return
	}
	for _, b := range crbs {
		if !bound(b.Subjects, user, groups, "") {
			continue
		}
		if !a.visitRole(b.RoleRef, "", visit) {
			return
		}
	}
	if namespace == "" {
		return
	}
	rbs, err := a.l.RoleBindings.RoleBindings(namespace).List(labels.Everything())
	if err != nil {
		visit(nil, err)
		return
	}
	for _, b := range rbs {
		if !bound(b.Subjects, user, groups, namespace) {
			continue
		}
		if !a.visitRole(b.RoleRef, namespace, visit) {
			return
		}
	}
}

func bound(subjects []rbacv1.Subject, user string, groups []string, namespace string) bool {
	for _, s := range subjects {
		if subjectMatches(s, user, groups, namespace) {
			return true
		}
	}
	return false
}

// visitRole visits the rules of the role a binding refers to; it returns
// false when visit asked to stop.
func (a *Authorizer) visitRole(ref rbacv1.RoleRef, namespace string, visit func(*rbacv1.PolicyRule, error) bool) bool {
	rules, err := a.roleRules(ref, namespace)
	if err != nil {
		return visit(nil, err)
	}
	for i := range rules {
		if !visit(&rules[i], nil) {
			return false
		}
	}
	return true
}

// roleRules returns the rules of the role a binding in namespace refers to.
func (a *Authorizer) roleRules(ref rbacv1.RoleRef, namespace string) ([]rbacv1.PolicyRule, error) {
	switch ref.Kind {
	case "ClusterRole":
		r, err := a.l.ClusterRoles.Get(ref.Name)
		if err != nil {
			return nil, fmt.Errorf("clusterrole.rbac.authorization.k8s.io %q not found", ref.Name)
		}
		return r.Rules, nil
	case "Role":
		if namespace == "" {
			return nil, fmt.Errorf("a cluster role binding refers to Role %q", ref.Name)
		}
		r, err := a.l.Roles.Roles(namespace).Get(ref.Name)
		if err != nil {
			return nil, fmt.Errorf("role.rbac.authorization.k8s.io %q not found", ref.Name)
		}
		return r.Rules, nil
	}
	return nil, fmt.Errorf("unknown role kind %q", ref.Kind)
}
