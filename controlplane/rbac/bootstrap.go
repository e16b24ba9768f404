package rbac

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	rbacclient "k8s.io/client-go/kubernetes/typed/rbac/v1"
)

// Labels and annotations Kubernetes puts on its default policy.
const (
	bootstrapLabel   = "kubernetes.io/bootstrapping"
	autoUpdateAnnot  = "rbac.authorization.kubernetes.io/autoupdate"
	aggregateToAdmin = "rbac.authorization.k8s.io/aggregate-to-admin"
	aggregateToEdit  = "rbac.authorization.k8s.io/aggregate-to-edit"
	aggregateToView  = "rbac.authorization.k8s.io/aggregate-to-view"
	fieldManager     = "petrel-rbac-bootstrap"
)

var (
	read      = []string{"get", "list", "watch"}
	write     = []string{"create", "delete", "deletecollection", "patch", "update"}
	readWrite = append(append([]string{}, read...), write...)
)

func rule(verbs []string, group string, resources ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: verbs, APIGroups: []string{group}, Resources: resources}
}

func meta(name string, extraLabels ...string) metav1.ObjectMeta {
	m := metav1.ObjectMeta{Name: name, Labels: map[string]string{bootstrapLabel: "rbac-defaults"},
		Annotations: map[string]string{autoUpdateAnnot: "true"}}
	for _, l := range extraLabels {
		m.Labels[l] = "true"
	}
	return m
}

func aggregated(name, label string) rbacv1.ClusterRole {
	return rbacv1.ClusterRole{ObjectMeta: meta(name), AggregationRule: &rbacv1.AggregationRule{
		ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{label: "true"}}}}}
}

// DefaultClusterRoles are the roles every cluster has: cluster-admin; the
// user-facing admin, edit and view, filled by aggregation from the
// system:aggregate-to-* roles (and from any ClusterRole a user labels the
// same way); and what every authenticated client may do (discovery, the
// reviews behind `kubectl auth`, health and version).
func DefaultClusterRoles() []rbacv1.ClusterRole {
	return []rbacv1.ClusterRole{
		{ObjectMeta: meta("cluster-admin"), Rules: []rbacv1.PolicyRule{
			{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		}},
		aggregated("admin", aggregateToAdmin),
		aggregated("edit", aggregateToEdit),
		aggregated("view", aggregateToView),
		{ObjectMeta: meta("system:aggregate-to-admin", aggregateToAdmin), Rules: []rbacv1.PolicyRule{
			rule(readWrite, rbacv1.GroupName, "roles", "rolebindings"),
			rule([]string{"create"}, "authorization.k8s.io", "localsubjectaccessreviews"),
		}},
		{ObjectMeta: meta("system:aggregate-to-edit", aggregateToAdmin, aggregateToEdit), Rules: []rbacv1.PolicyRule{
			rule(readWrite, "", "pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"),
			rule([]string{"create"}, "", "pods/eviction", "serviceaccounts/token"),
			rule(readWrite, "", "configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
				"replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy", "endpoints"),
			rule(readWrite, "apps", "daemonsets", "deployments", "deployments/rollback", "deployments/scale",
				"replicasets", "replicasets/scale", "statefulsets", "statefulsets/scale"),
			rule(readWrite, "autoscaling", "horizontalpodautoscalers"),
			rule(readWrite, "batch", "cronjobs", "jobs"),
			rule(readWrite, "networking.k8s.io", "ingresses", "networkpolicies"),
			rule(readWrite, "policy", "poddisruptionbudgets"),
			rule(readWrite, "discovery.k8s.io", "endpointslices"),
			rule(readWrite, "coordination.k8s.io", "leases"),
		}},
		{ObjectMeta: meta("system:aggregate-to-view", aggregateToAdmin, aggregateToEdit, aggregateToView), Rules: []rbacv1.PolicyRule{
			rule(read, "", "pods", "pods/log", "pods/status", "configmaps", "endpoints", "events",
				"persistentvolumeclaims", "persistentvolumeclaims/status", "replicationcontrollers",
				"replicationcontrollers/scale", "replicationcontrollers/status", "serviceaccounts", "services",
				"services/status", "bindings", "limitranges", "resourcequotas", "namespaces", "namespaces/status"),
			rule(read, "apps", "controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
				"deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "replicasets/status",
				"statefulsets", "statefulsets/scale", "statefulsets/status"),
			rule(read, "autoscaling", "horizontalpodautoscalers", "horizontalpodautoscalers/status"),
			rule(read, "batch", "cronjobs", "cronjobs/status", "jobs", "jobs/status"),
			rule(read, "networking.k8s.io", "ingresses", "ingresses/status", "networkpolicies"),
			rule(read, "policy", "poddisruptionbudgets", "poddisruptionbudgets/status"),
			rule(read, "discovery.k8s.io", "endpointslices"),
			rule(read, "events.k8s.io", "events"),
		}},
		// metrics.k8s.io is served built in, so the view, edit and admin
		// roles read it (the role metrics-server's manifest adds, same name).
		{ObjectMeta: meta("system:aggregated-metrics-reader", aggregateToAdmin, aggregateToEdit, aggregateToView), Rules: []rbacv1.PolicyRule{
			rule([]string{"get", "list", "watch"}, "metrics.k8s.io", "pods", "nodes"),
		}},
		{ObjectMeta: meta("system:discovery"), Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"},
			NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"}}}},
		{ObjectMeta: meta("system:basic-user"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "authorization.k8s.io", "selfsubjectaccessreviews", "selfsubjectrulesreviews"),
			rule([]string{"create"}, "authentication.k8s.io", "selfsubjectreviews"),
		}},
		// Service account issuer discovery, which Kubernetes grants every
		// service account so that a workload can verify its peers' tokens.
		{ObjectMeta: meta("system:service-account-issuer-discovery"), Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"},
			NonResourceURLs: []string{"/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"}}}},
		{ObjectMeta: meta("system:public-info-viewer"), Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"},
			NonResourceURLs: []string{"/healthz", "/livez", "/readyz", "/version", "/version/"}}}},
		// What a node may do; the Node authorizer applies these rules to
		// system:node:<name> and narrows them to the node's own objects,
		// so, as in Kubernetes, no binding gives this role to anyone.
		{ObjectMeta: meta("system:node"), Rules: NodeRules()},
		// A node with only a bootstrap token asks for its certificate.
		{ObjectMeta: meta("system:node-bootstrapper"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create", "get", "list", "watch"}, "certificates.k8s.io", "certificatesigningrequests")}},
		// The CSR approver approves a node's client certificate for
		// requesters that may create these (see controllers/csrapproving).
		{ObjectMeta: meta("system:certificates.k8s.io:certificatesigningrequests:nodeclient"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "certificates.k8s.io", "certificatesigningrequests/nodeclient")}},
		{ObjectMeta: meta("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"), Rules: []rbacv1.PolicyRule{
			rule([]string{"create"}, "certificates.k8s.io", "certificatesigningrequests/selfnodeclient")}},
		{ObjectMeta: meta("system:certificates.k8s.io:kube-apiserver-client-kubelet-approver"), Rules: []rbacv1.PolicyRule{{
			Verbs: []string{"approve"}, APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"signers"},
			ResourceNames: []string{"kubernetes.io/kube-apiserver-client-kubelet"}}}},
	}
}

// NodeRules are the rules of the system:node role, as Kubernetes 1.32 has
// them for the parts Petrel serves. The Node authorizer narrows them
// (Secrets, ConfigMaps, PVCs, service account tokens of the node's own
// pods; its own Lease; pods listed by spec.nodeName) and NodeRestriction
// admission the writes (its own Node, pods bound to it).
func NodeRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		rule([]string{"create"}, "authentication.k8s.io", "tokenreviews"),
		rule([]string{"create"}, "authorization.k8s.io", "subjectaccessreviews", "localsubjectaccessreviews"),
		rule(read, "", "services"),
		rule([]string{"create", "get", "list", "watch"}, "", "nodes"),
		rule([]string{"update", "patch"}, "", "nodes/status"),
		rule([]string{"update", "patch", "delete"}, "", "nodes"),
		rule([]string{"create", "update", "patch"}, "", "events"),
		rule([]string{"create", "update", "patch"}, "events.k8s.io", "events"),
		rule(read, "", "pods"),
		rule([]string{"create", "delete"}, "", "pods"),
		rule([]string{"update", "patch"}, "", "pods/status"),
		rule([]string{"create"}, "", "pods/eviction"),
		rule([]string{"get", "list", "watch"}, "", "secrets", "configmaps"),
		rule([]string{"get"}, "", "persistentvolumeclaims", "persistentvolumes"),
		rule([]string{"update", "patch"}, "", "persistentvolumeclaims/status"),
		rule([]string{"get"}, "", "endpoints"),
		rule([]string{"create", "get", "list", "watch"}, "certificates.k8s.io", "certificatesigningrequests"),
		rule([]string{"get", "create", "update", "patch", "delete"}, "coordination.k8s.io", "leases"),
		rule([]string{"get"}, "storage.k8s.io", "volumeattachments"),
		rule([]string{"get", "watch", "list"}, "storage.k8s.io", "csidrivers"),
		rule([]string{"get", "create", "update", "patch", "delete"}, "storage.k8s.io", "csinodes"),
		rule([]string{"get", "list", "watch"}, "node.k8s.io", "runtimeclasses"),
		rule([]string{"create"}, "", "serviceaccounts/token"),
		// Petrel's node is also the service proxy and the cluster DNS
		// (kube-proxy's system:node-proxier, CoreDNS's system:coredns):
		// every Service, EndpointSlice, Endpoints, Node and Namespace.
		rule([]string{"list", "watch"}, "", "endpoints", "namespaces"),
		rule([]string{"get"}, "", "namespaces"),
		rule(read, "discovery.k8s.io", "endpointslices"),
		// And the NetworkPolicy agent (Cilium's agent's role): every policy.
		rule([]string{"get", "list", "watch"}, "networking.k8s.io", "networkpolicies"),
		// And the ingress (Traefik's or Cilium's role): every Ingress and
		// IngressClass; their TLS Secrets by name through the Node authorizer.
		rule([]string{"get", "list", "watch"}, "networking.k8s.io", "ingresses", "ingressclasses"),
	}
}

// BootstrapSubjects are the groups the join flow's bindings name: every
// bootstrap token's user is in system:bootstrappers, every node's in
// system:nodes.
const (
	BootstrappersGroup = "system:bootstrappers"
	NodesGroup         = "system:nodes"
)

func group(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

// DefaultClusterRoleBindings give the default roles to their groups.
func DefaultClusterRoleBindings() []rbacv1.ClusterRoleBinding {
	bind := func(role string, subjects ...rbacv1.Subject) rbacv1.ClusterRoleBinding {
		return rbacv1.ClusterRoleBinding{ObjectMeta: meta(role), Subjects: subjects,
			RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role}}
	}
	return []rbacv1.ClusterRoleBinding{
		bind("cluster-admin", group(MastersGroup)),
		bind("system:discovery", group("system:authenticated")),
		bind("system:basic-user", group("system:authenticated")),
		bind("system:public-info-viewer", group("system:authenticated"), group("system:unauthenticated")),
		bind("system:service-account-issuer-discovery", group("system:serviceaccounts")),
		{ObjectMeta: meta("system:node"), RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:node"}},
		bind("system:node-bootstrapper", group(BootstrappersGroup)),
		bind("system:certificates.k8s.io:certificatesigningrequests:nodeclient", group(BootstrappersGroup)),
		bind("system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", group(NodesGroup)),
	}
}

// EnsureDefaults creates the default roles and bindings that are missing
// and puts back the content of those still marked for automatic update
// (the annotation rbac.authorization.kubernetes.io/autoupdate: "true"),
// as Kubernetes' API server does at start. The objects are written
// concurrently: each write waits for etcd's disk, and one by one they
// added seconds to every start.
func EnsureDefaults(ctx context.Context, cs kubernetes.Interface) error {
	var g errgroup.Group
	roles := cs.RbacV1().ClusterRoles()
	for _, want := range DefaultClusterRoles() {
		g.Go(func() error {
			if err := ensureClusterRole(ctx, roles, &want); err != nil {
				return fmt.Errorf("default cluster role %s: %w", want.Name, err)
			}
			return nil
		})
	}
	bindings := cs.RbacV1().ClusterRoleBindings()
	for _, want := range DefaultClusterRoleBindings() {
		g.Go(func() error {
			if err := ensureClusterRoleBinding(ctx, bindings, &want); err != nil {
				return fmt.Errorf("default cluster role binding %s: %w", want.Name, err)
			}
			return nil
		})
	}
	return g.Wait()
}

func ensureClusterRole(ctx context.Context, roles rbacclient.ClusterRoleInterface, want *rbacv1.ClusterRole) error {
	cur, err := roles.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = roles.Create(ctx, want, metav1.CreateOptions{FieldManager: fieldManager})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	case err != nil:
		return err
	case cur.Annotations[autoUpdateAnnot] != "true":
		return nil
	}
	// An aggregated role's rules are the aggregation controller's to fill.
	sameRules := want.AggregationRule != nil || apiequality.Semantic.DeepEqual(cur.Rules, want.Rules)
	if sameRules && apiequality.Semantic.DeepEqual(cur.AggregationRule, want.AggregationRule) {
		return nil
	}
	fixed := cur.DeepCopy()
	fixed.AggregationRule = want.AggregationRule
	if want.AggregationRule == nil {
		fixed.Rules = want.Rules
	}
	_, err = roles.Update(ctx, fixed, metav1.UpdateOptions{FieldManager: fieldManager})
	return err
}

func ensureClusterRoleBinding(ctx context.Context, bindings rbacclient.ClusterRoleBindingInterface, want *rbacv1.ClusterRoleBinding) error {
	cur, err := bindings.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = bindings.Create(ctx, want, metav1.CreateOptions{FieldManager: fieldManager})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	case err != nil:
		return err
	case cur.Annotations[autoUpdateAnnot] != "true" || apiequality.Semantic.DeepEqual(cur.Subjects, want.Subjects):
		return nil
	}
	fixed := cur.DeepCopy()
	fixed.Subjects = want.Subjects
	_, err = bindings.Update(ctx, fixed, metav1.UpdateOptions{FieldManager: fieldManager})
	return err
}
