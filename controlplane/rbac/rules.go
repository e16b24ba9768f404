// Package rbac authorizes API requests with Kubernetes' role-based access
// control: Roles and ClusterRoles hold rules, RoleBindings and
// ClusterRoleBindings give them to users, groups and service accounts. It
// also holds the default roles every cluster has and the escalation checks
// that keep a user from granting more than it holds.
package rbac

import (
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
)

// Attributes describe one request as the authorizer sees it.
type Attributes struct {
	User   string
	Groups []string
	// Verb is get, list, watch, create, update, patch, delete,
	// deletecollection (resources) or the lower-case HTTP method (paths).
	Verb string
	// ResourceRequest is false for paths outside the resource API
	// (/healthz, /version, /api discovery, /openapi).
	ResourceRequest bool
	APIGroup        string
	Resource        string
	Subresource     string
	Namespace       string
	Name            string
	Path            string
	// FieldSelector is a list or watch's fieldSelector parameter (the Node
	// authorizer lets a node list only its own pods).
	FieldSelector string
}

// RulesAllow reports whether any of rules grants the request.
func RulesAllow(a Attributes, rules []rbacv1.PolicyRule) bool {
	for i := range rules {
		if ruleAllows(a, &rules[i]) {
			return true
		}
	}
	return false
}

// ruleAllows reports whether one policy rule grants the request.
func ruleAllows(a Attributes, r *rbacv1.PolicyRule) bool {
	if !a.ResourceRequest {
		return hasVerb(r.Verbs, a.Verb) && urlMatches(r.NonResourceURLs, a.Path)
	}
	resource := a.Resource
	if a.Subresource != "" {
		resource += "/" + a.Subresource
	}
	return hasVerb(r.Verbs, a.Verb) &&
		hasGroup(r.APIGroups, a.APIGroup) &&
		resourceMatches(r.Resources, resource, a.Subresource) &&
		nameMatches(r.ResourceNames, a.Name)
}

func hasVerb(verbs []string, verb string) bool {
	for _, v := range verbs {
		if v == rbacv1.VerbAll || v == verb {
			return true
		}
	}
	return false
}

func hasGroup(groups []string, group string) bool {
	for _, g := range groups {
		if g == rbacv1.APIGroupAll || g == group {
			return true
		}
	}
	return false
}

// resourceMatches accepts "*" (every resource and subresource), the exact
// "resource/subresource" and "*/subresource", as Kubernetes does.
func resourceMatches(rules []string, resource, subresource string) bool {
	for _, r := range rules {
		if r == rbacv1.ResourceAll || r == resource || (subresource != "" && r == "*/"+subresource) {
			return true
		}
	}
	return false
}

// nameMatches: no names in the rule means every name.
func nameMatches(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// urlMatches accepts exact paths and prefixes ending in "*".
func urlMatches(urls []string, path string) bool {
	for _, u := range urls {
		if u == rbacv1.NonResourceAll || u == path {
			return true
		}
		if prefix, ok := strings.CutSuffix(u, "*"); ok && strings.HasPrefix(path, prefix) {
			return true
		}
	}
	return false
}

// subjectMatches reports whether a binding's subject names the user
// (namespace is the binding's, the default for service accounts).
func subjectMatches(s rbacv1.Subject, user string, groups []string, namespace string) bool {
	switch s.Kind {
	case rbacv1.UserKind:
		return s.Name == user
	case rbacv1.GroupKind:
		for _, g := range groups {
			if g == s.Name {
				return true
			}
		}
		return false
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = namespace
		}
		return ns != "" && user == "system:serviceaccount:"+ns+":"+s.Name
	}
	return false
}
