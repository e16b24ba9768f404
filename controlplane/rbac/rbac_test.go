package rbac

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

// policy builds an authorizer over fixed objects, as the informers would
// hold them.
func policy(t *testing.T, objs ...interface{}) *Authorizer {
	t.Helper()
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	roles, rbs, crs, crbs := idx(), idx(), idx(), idx()
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *rbacv1.Role:
			err = roles.Add(o)
		case *rbacv1.RoleBinding:
			err = rbs.Add(o)
		case *rbacv1.ClusterRole:
			err = crs.Add(o)
		case *rbacv1.ClusterRoleBinding:
			err = crbs.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range DefaultClusterRoles() {
		r := r
		if r.AggregationRule == nil {
			_ = crs.Add(&r)
		}
	}
	for _, b := range DefaultClusterRoleBindings() {
		b := b
		_ = crbs.Add(&b)
	}
	return New(Listers{Roles: rbaclisters.NewRoleLister(roles), RoleBindings: rbaclisters.NewRoleBindingLister(rbs),
		ClusterRoles: rbaclisters.NewClusterRoleLister(crs), ClusterRoleBindings: rbaclisters.NewClusterRoleBindingLister(crbs)})
}

func sa(ns, name string) (string, []string) {
	return "system:serviceaccount:" + ns + ":" + name, []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
}

func TestAuthorize(t *testing.T) {
	podReader := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pod-reader"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}}}}
	oneConfig := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "one-config"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"update"}, APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: []string{"settings"}}}}
	scaler := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scaler"},
		Rules: []rbacv1.PolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*/scale"}}}}
	a := policy(t, podReader, oneConfig, scaler,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "b1"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "app"}}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "pod-reader"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "b2"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "one-config"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "dangling"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "bob"}}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "gone"}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "ops"},
			Subjects: []rbacv1.Subject{{Kind: "Group", Name: "ops"}}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "scaler"}},
	)
	appUser, appGroups := sa("team", "app")
	res := func(user string, groups []string, verb, group, resource, sub, ns, name string) Attributes {
		return Attributes{User: user, Groups: groups, Verb: verb, ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
	}
	cases := []struct {
		name  string
		attrs Attributes
		want  bool
	}{
		{"masters do everything", res("admin", []string{MastersGroup}, "delete", "", "nodes", "", "", "n1"), true},
		{"role allows in its namespace", res(appUser, appGroups, "list", "", "pods", "", "team", ""), true},
		{"subresource named in the rule", res(appUser, appGroups, "get", "", "pods", "log", "team", "p"), true},
		{"subresource not named", res(appUser, appGroups, "create", "", "pods", "exec", "team", "p"), false},
		{"verb not in the rule", res(appUser, appGroups, "delete", "", "pods", "", "team", "p"), false},
		{"other namespace", res(appUser, appGroups, "list", "", "pods", "", "other", ""), false},
		{"same account name, other namespace", res("system:serviceaccount:other:app", nil, "list", "", "pods", "", "team", ""), false},
		{"resource name matches", res("alice", nil, "update", "", "configmaps", "", "team", "settings"), true},
		{"resource name differs", res("alice", nil, "update", "", "configmaps", "", "team", "other"), false},
		{"resource names do not allow list", res("alice", nil, "list", "", "configmaps", "", "team", ""), false},
		{"group binding, */scale", res("carol", []string{"ops"}, "update", "apps", "deployments", "scale", "any", "web"), true},
		{"*/scale is not the resource", res("carol", []string{"ops"}, "update", "apps", "deployments", "", "any", "web"), false},
		{"authenticated may discover", Attributes{User: "x", Groups: []string{"system:authenticated"}, Verb: "get", Path: "/apis/apps/v1"}, true},
		{"authenticated may not read metrics", Attributes{User: "x", Groups: []string{"system:authenticated"}, Verb: "get", Path: "/metrics"}, false},
		{"everyone may ask can-i", res("x", []string{"system:authenticated"}, "create", "authorization.k8s.io", "selfsubjectaccessreviews", "", "", ""), true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got, reason := a.Authorize(c.attrs); got != c.want {
				t.Fatalf("Authorize = %v (%s), want %v", got, reason, c.want)
			}
		})
	}
	if ok, reason := a.Authorize(res("bob", nil, "get", "", "pods", "", "team", "p")); ok || !strings.Contains(reason, `role.rbac.authorization.k8s.io "gone" not found`) {
		t.Fatalf("a binding to a missing role: %v %q", ok, reason)
	}
}

func TestEscalation(t *testing.T) {
	admin := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "ns-admin"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"*"}, APIGroups: []string{""}, Resources: []string{"pods", "configmaps"}},
		{Verbs: []string{"create", "update"}, APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"roles", "rolebindings"}},
	}}
	binder := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "binder"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"bind"}, APIGroups: []string{"rbac.authorization.k8s.io"}, Resources: []string{"clusterroles"}, ResourceNames: []string{"cluster-admin"}},
	}}
	a := policy(t, admin, binder,
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "dana-admin"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "dana"}}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "ns-admin"}},
		&rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "erin-bind"},
			Subjects: []rbacv1.Subject{{Kind: "User", Name: "erin"}}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "binder"}},
	)
	rule := func(verbs []string, resources ...string) rbacv1.PolicyRule {
		return rbacv1.PolicyRule{Verbs: verbs, APIGroups: []string{""}, Resources: resources}
	}
	if err := a.ConfirmCanWriteRole("dana", nil, "team", "r", []rbacv1.PolicyRule{rule([]string{"get", "delete"}, "pods")}); err != nil {
		t.Fatalf("a role within what dana holds: %v", err)
	}
	err := a.ConfirmCanWriteRole("dana", nil, "team", "r", []rbacv1.PolicyRule{rule([]string{"get"}, "pods", "secrets")})
	if err == nil || !strings.Contains(err.Error(), `{APIGroups:[""], Resources:["secrets"], Verbs:["get"]}`) || strings.Contains(err.Error(), `"pods"`) {
		t.Fatalf("secrets are not dana's to grant; the error should name only them: %v", err)
	}
	if err := a.ConfirmCanWriteRole("dana", nil, "team", "r", []rbacv1.PolicyRule{rule([]string{"*"}, "*")}); err == nil {
		t.Fatal("wildcards grant more than dana holds")
	}
	if err := a.ConfirmCanWriteRole("dana", nil, "other", "r", []rbacv1.PolicyRule{rule([]string{"get"}, "pods")}); err == nil {
		t.Fatal("dana holds nothing in another namespace")
	}
	if err := a.ConfirmCanBind("dana", nil, "team", rbacv1.RoleRef{Kind: "ClusterRole", Name: "ns-admin"}); err != nil {
		t.Fatalf("dana may hand on her own role: %v", err)
	}
	if err := a.ConfirmCanBind("dana", nil, "team", rbacv1.RoleRef{Kind: "ClusterRole", Name: "cluster-admin"}); err == nil {
		t.Fatal("dana may not bind cluster-admin")
	}
	if err := a.ConfirmCanBind("erin", nil, "team", rbacv1.RoleRef{Kind: "ClusterRole", Name: "cluster-admin"}); err != nil {
		t.Fatalf("erin holds bind on cluster-admin: %v", err)
	}
	if err := a.ConfirmCanBind("erin", nil, "team", rbacv1.RoleRef{Kind: "ClusterRole", Name: "ns-admin"}); err == nil {
		t.Fatal("erin's bind is for cluster-admin only")
	}
	if err := a.ConfirmCanBind("root", []string{MastersGroup}, "", rbacv1.RoleRef{Kind: "ClusterRole", Name: "anything"}); err != nil {
		t.Fatalf("masters bind anything: %v", err)
	}
}

func TestRulesFor(t *testing.T) {
	a := policy(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "b"},
		Subjects: []rbacv1.Subject{{Kind: "User", Name: "fay"}}, RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "missing"}})
	rules, problems := a.RulesFor("fay", []string{"system:authenticated"}, "team")
	if len(problems) != 1 || !strings.Contains(problems[0], `"missing" not found`) {
		t.Fatalf("problems %v", problems)
	}
	var reviews bool
	for _, r := range rules {
		reviews = reviews || (len(r.Resources) > 0 && r.Resources[0] == "selfsubjectaccessreviews")
	}
	if !reviews {
		t.Fatalf("system:basic-user's rules missing from %v", rules)
	}
}
