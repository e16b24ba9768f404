// Package clusterroleaggregation fills the rules of every ClusterRole that
// has an aggregationRule with the rules of the ClusterRoles its selectors
// pick, as Kubernetes' clusterrole-aggregation controller does: that is how
// admin, edit and view grow when a ClusterRole labelled
// rbac.authorization.k8s.io/aggregate-to-view: "true" appears.
package clusterroleaggregation

import (
	"context"
	"sort"

	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/loop"
)

const manager = "clusterrole-aggregation-controller"

// Controller keeps aggregated ClusterRoles' rules up to date.
type Controller struct {
	client kubernetes.Interface
	roles  rbaclisters.ClusterRoleLister
	loop   *loop.Loop
}

// New builds the controller on a shared informer factory.
func New(cs kubernetes.Interface, factory informers.SharedInformerFactory) *Controller {
	inf := factory.Rbac().V1().ClusterRoles()
	c := &Controller{client: cs, roles: inf.Lister()}
	c.loop = loop.New("clusterrole aggregation", loop.Simple(c.sync))
	c.loop.Synced(inf.Informer().HasSynced)
	// Any ClusterRole's change may matter to any aggregated one.
	enqueueAggregated := func(interface{}) {
		all, _ := c.roles.List(labels.Everything())
		for _, r := range all {
			if r.AggregationRule != nil {
				c.loop.Add(r.Name)
			}
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueueAggregated,
		UpdateFunc: func(_, obj interface{}) { enqueueAggregated(obj) },
		DeleteFunc: enqueueAggregated,
	})
	return c
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.loop.Run(ctx, 1)
}

func (c *Controller) sync(ctx context.Context, name string) error {
	role, err := c.roles.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if role.AggregationRule == nil {
		return nil
	}
	rules, err := Aggregate(role, c.roles)
	if err != nil {
		return err
	}
	if apiequality.Semantic.DeepEqual(rules, role.Rules) {
		return nil
	}
	fixed := role.DeepCopy()
	fixed.Rules = rules
	_, err = c.client.RbacV1().ClusterRoles().Update(ctx, fixed, metav1.UpdateOptions{FieldManager: manager})
	if apierrors.IsConflict(err) {
		c.loop.Add(name) // changed meanwhile: the informer brings the new one
		return nil
	}
	return err
}

// Aggregate returns the rules of every ClusterRole (other than role) that one
// of role's selectors picks, in name order, each rule once.
func Aggregate(role *rbacv1.ClusterRole, roles rbaclisters.ClusterRoleLister) ([]rbacv1.PolicyRule, error) {
	picked := map[string]*rbacv1.ClusterRole{}
	for i := range role.AggregationRule.ClusterRoleSelectors {
		sel, err := metav1.LabelSelectorAsSelector(&role.AggregationRule.ClusterRoleSelectors[i])
		if err != nil {
			return nil, err
		}
		matched, err := roles.List(sel)
		if err != nil {
			return nil, err
		}
		for _, m := range matched {
			if m.Name != role.Name {
				picked[m.Name] = m
			}
		}
	}
	names := make([]string, 0, len(picked))
	for n := range picked {
		names = append(names, n)
	}
	sort.Strings(names)
	rules := []rbacv1.PolicyRule{}
	for _, n := range names {
		for _, r := range picked[n].Rules {
			if !contains(rules, r) {
				rules = append(rules, r)
			}
		}
	}
	return rules, nil
}

func contains(rules []rbacv1.PolicyRule, r rbacv1.PolicyRule) bool {
	for i := range rules {
		if apiequality.Semantic.DeepEqual(rules[i], r) {
			return true
		}
	}
	return false
}
