package clusterroleaggregation

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

func TestAggregate(t *testing.T) {
	pods := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}
	jobs := rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{"batch"}, Resources: []string{"jobs"}}
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	view := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "view", Labels: map[string]string{"to-view": "true"}},
		AggregationRule: &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"to-view": "true"}}}},
		Rules:           []rbacv1.PolicyRule{{Verbs: []string{"stale"}}}}
	for _, r := range []*rbacv1.ClusterRole{
		view,
		{ObjectMeta: metav1.ObjectMeta{Name: "b-jobs", Labels: map[string]string{"to-view": "true"}}, Rules: []rbacv1.PolicyRule{jobs, pods}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a-pods", Labels: map[string]string{"to-view": "true"}}, Rules: []rbacv1.PolicyRule{pods}},
		{ObjectMeta: metav1.ObjectMeta{Name: "unlabelled"}, Rules: []rbacv1.PolicyRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}},
	} {
		if err := idx.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Aggregate(view, rbaclisters.NewClusterRoleLister(idx))
	if err != nil {
		t.Fatal(err)
	}
	// Name order, each rule once, not the role's own (stale) rules, nothing
	// from roles the selector does not pick.
	if len(got) != 2 || got[0].Resources[0] != "pods" || got[1].Resources[0] != "jobs" {
		t.Fatalf("aggregated rules %+v", got)
	}
}
