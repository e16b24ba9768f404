package rbac

import (
	"fmt"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// A user may write a Role or ClusterRole only with rules it holds itself
// (or the escalate verb on it), and bind a role only when it holds the
// role's rules (or the bind verb on it) — otherwise anyone allowed to write
// RBAC objects could grant itself everything.

// ConfirmCanWriteRole checks that the user may create or change a role
// (namespace empty for a ClusterRole) with these rules.
func (a *Authorizer) ConfirmCanWriteRole(user string, groups []string, namespace, name string, rules []rbacv1.PolicyRule) error {
	if ok, _ := a.Authorize(Attributes{User: user, Groups: groups, Verb: "escalate", ResourceRequest: true,
		APIGroup: rbacv1.GroupName, Resource: roleResource(namespace), Namespace: namespace, Name: name}); ok {
		return nil
	}
	return a.confirmHolds(user, groups, namespace, rules)
}

// ConfirmCanBind checks that the user may bind ref in namespace (empty for
// a ClusterRoleBinding).
func (a *Authorizer) ConfirmCanBind(user string, groups []string, namespace string, ref rbacv1.RoleRef) error {
	resource := "clusterroles"
	if ref.Kind == "Role" {
		resource = "roles"
	}
	// Asked in the binding's namespace, as Kubernetes does: bind can be
	// delegated for one namespace only.
	if ok, _ := a.Authorize(Attributes{User: user, Groups: groups, Verb: "bind", ResourceRequest: true,
		APIGroup: rbacv1.GroupName, Resource: resource, Namespace: namespace, Name: ref.Name}); ok {
		return nil
	}
	rules, err := a.roleRules(ref, namespace)
	if err != nil {
		return err
	}
	return a.confirmHolds(user, groups, namespace, rules)
}

func roleResource(namespace string) string {
	if namespace == "" {
		return "clusterroles"
	}
	return "roles"
}

// confirmHolds returns an error naming every permission in rules that the
// user does not hold in namespace.
func (a *Authorizer) confirmHolds(user string, groups []string, namespace string, rules []rbacv1.PolicyRule) error {
	if IsMaster(groups) {
		return nil
	}
	held, _ := a.RulesFor(user, groups, namespace)
	var missing []string
	for _, atom := range breakDown(rules) {
		covered := false
		for i := range held {
			if ruleAllows(atom.attrs, &held[i]) {
				covered = true
				break
			}
		}
		if !covered {
			missing = append(missing, atom.text)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("user %q (groups=%q) is attempting to grant RBAC permissions not currently held:\n%s",
		user, groups, strings.Join(missing, "\n"))
}

type atom struct {
	attrs Attributes
	text  string
}

// breakDown splits rules into single permissions: one verb on one resource
// of one group (and one name), or one verb on one path. A wildcard stays a
// literal "*", which only a wildcard held by the user covers.
func breakDown(rules []rbacv1.PolicyRule) []atom {
	var out []atom
	for _, r := range rules {
		for _, verb := range r.Verbs {
			for _, url := range r.NonResourceURLs {
				out = append(out, atom{Attributes{Verb: verb, Path: url},
					fmt.Sprintf("{NonResourceURLs:[%q], Verbs:[%q]}", url, verb)})
			}
			for _, group := range r.APIGroups {
				for _, res := range r.Resources {
					resource, sub, _ := strings.Cut(res, "/")
					names := r.ResourceNames
					if len(names) == 0 {
						names = []string{""}
					}
					for _, name := range names {
						text := fmt.Sprintf("{APIGroups:[%q], Resources:[%q], Verbs:[%q]}", group, res, verb)
						if name != "" {
							text = fmt.Sprintf("{APIGroups:[%q], Resources:[%q], ResourceNames:[%q], Verbs:[%q]}", group, res, name, verb)
						}
						out = append(out, atom{Attributes{Verb: verb, ResourceRequest: true, APIGroup: group,
							Resource: resource, Subresource: sub, Name: name}, text})
					}
				}
			}
		}
	}
	return out
}
