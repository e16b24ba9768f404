// Package nodeauth is Kubernetes' Node authorizer and NodeRestriction
// admission for Petrel: what a node (user system:node:<name> in
// system:nodes) may read and write. A node reads only the Secrets,
// ConfigMaps, PersistentVolumeClaims and PersistentVolumes of pods bound to
// it, and creates service account tokens only for their service accounts;
// it gets pods bound to it and lists and watches every pod; it changes only its own Node and Lease
// and the pods bound to it (status, deletion); the rest of what it may do is
// the system:node role's rules.
//
// Kubernetes answers these from a graph of pods and their references; here
// the graph is an index of pods by node over the API server's own caches,
// walked at each decision (a node asks for a Secret when a pod starts, not
// in a loop). Unlike Kubernetes 1.32 with AuthorizeNodeWithSelectors, a node
// may list and watch every Node: Petrel's node is also the service proxy and
// the router between nodes, which kube-proxy does with its own identity. For
// the same reason it may list and watch every Pod (as nodes could before
// AuthorizeNodeWithSelectors): it enforces NetworkPolicy, which needs every
// pod's address, labels and named ports, as Cilium's agent reads them with
// its own identity. And because every node serves the cluster's Ingresses
// (dataplane/ingress, as Cilium's agents do), a node may also read, one by
// name, a TLS Secret that an Ingress of Petrel's class names in spec.tls.
package nodeauth

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/selection"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/petrel-project/petrel/controlplane/controllers/ingressstatus"
	"github.com/petrel-project/petrel/controlplane/rbac"
)

// Identity of nodes.
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
	// PodsByNodeIndex indexes pods by spec.nodeName.
	PodsByNodeIndex = "spec.nodeName"
	nodeLeaseNS     = "kube-node-lease"
)

// NodeName returns the node a user is, when it is one: system:node:<name>
// in the group system:nodes.
func NodeName(user string, groups []string) (string, bool) {
	name, ok := strings.CutPrefix(user, NodeUserPrefix)
	if !ok || name == "" {
		return "", false
	}
	for _, g := range groups {
		if g == NodesGroup {
			return name, true
		}
	}
	return "", false
}

// PodsByNode is the indexer function of PodsByNodeIndex.
func PodsByNode(obj interface{}) ([]string, error) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		return []string{p.Spec.NodeName}, nil
	}
	return nil, nil
}

// Authorizer decides what nodes may do.
type Authorizer struct {
	// pods is indexed by PodsByNodeIndex and keyed namespace/name.
	pods cache.Indexer
	// ingresses, when set, are indexed by namespace.
	ingresses cache.Indexer
	pvcs      corelisters.PersistentVolumeClaimLister
	rules     []rbacv1.PolicyRule
	synced    []cache.InformerSynced
}

// New builds the authorizer over a pod indexer (PodsByNodeIndex) and a PVC
// lister; synced report whether their caches are filled.
func New(pods cache.Indexer, pvcs corelisters.PersistentVolumeClaimLister, synced ...cache.InformerSynced) *Authorizer {
	return &Authorizer{pods: pods, pvcs: pvcs, rules: rbac.NodeRules(), synced: synced}
}

// WithIngresses lets nodes read the TLS Secrets that Ingresses served by
// Petrel (IngressServedByPetrel) name; ingresses is indexed by namespace.
func (a *Authorizer) WithIngresses(ingresses cache.Indexer, synced cache.InformerSynced) *Authorizer {
	a.ingresses = ingresses
	a.synced = append(a.synced, synced)
	return a
}

// HasSynced reports whether the caches are filled.
func (a *Authorizer) HasSynced() bool {
	for _, s := range a.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Authorize decides a request of node: allowed, or not with the reason
// (then other authorizers, RBAC, may still allow it).
func (a *Authorizer) Authorize(node string, attrs rbac.Attributes) (bool, string) {
	if !attrs.ResourceRequest {
		return false, ""
	}
	if !a.HasSynced() {
		return false, "the node authorizer's caches are still loading; retry in a moment"
	}
	switch attrs.APIGroup + "/" + attrs.Resource {
	case "/secrets", "/configmaps":
		return a.readReferenced(node, attrs)
	case "/persistentvolumeclaims":
		if attrs.Subresource == "status" {
			if attrs.Verb != "update" && attrs.Verb != "patch" {
				return false, "can only update or patch the status of a persistentvolumeclaim"
			}
		} else if attrs.Verb != "get" {
			return false, "can only get individual persistentvolumeclaims"
		}
		return a.related(node, attrs)
	case "/persistentvolumes":
		if attrs.Verb != "get" {
			return false, "can only get individual persistentvolumes"
		}
		return a.related(node, attrs)
	case "/serviceaccounts":
		if attrs.Subresource != "token" || attrs.Verb != "create" {
			return false, "can only create tokens for individual service accounts"
		}
		return a.related(node, attrs)
	case "coordination.k8s.io/leases":
		return authorizeLease(node, attrs)
	case "/nodes":
		return true, "" // every verb it may use: NodeRestriction keeps writes to its own
	case "/pods":
		if attrs.Subresource == "" {
			switch attrs.Verb {
			case "get":
				return a.related(node, attrs)
			case "list", "watch":
				// Every pod: NetworkPolicy (dataplane/policy) needs them all.
				return true, ""
			}
		}
	}
	if rbac.RulesAllow(attrs, a.rules) {
		return true, ""
	}
	return false, ""
}

// readReferenced: Secrets and ConfigMaps only by name (get; list or watch
// of one named object), and only those of its pods.
func (a *Authorizer) readReferenced(node string, attrs rbac.Attributes) (bool, string) {
	switch attrs.Verb {
	case "get":
	case "list", "watch":
		if name, ok := selectedName(attrs.FieldSelector); ok {
			attrs.Name = name
			break
		}
		return false, fmt.Sprintf("node %q can only read individual %s of pods bound to it, not list them", node, attrs.Resource)
	default:
		return false, fmt.Sprintf("node %q can only read %s", node, attrs.Resource)
	}
	if attrs.Resource == "secrets" && a.ingressTLS(attrs.Namespace, attrs.Name) {
		return true, ""
	}
	return a.related(node, attrs)
}

// ingressTLS: an Ingress that Petrel's nodes serve names the Secret in
// spec.tls.
func (a *Authorizer) ingressTLS(namespace, name string) bool {
	if a.ingresses == nil {
		return false
	}
	objs, err := a.ingresses.ByIndex(cache.NamespaceIndex, namespace)
	if err != nil {
		return false
	}
	for _, obj := range objs {
		ing, ok := obj.(*networkingv1.Ingress)
		if !ok || !IngressServedByPetrel(ing) {
			continue
		}
		for _, t := range ing.Spec.TLS {
			if t.SecretName == name {
				return true
			}
		}
	}
	return false
}

// IngressServedByPetrel says, from the Ingress alone, whether Petrel's
// nodes may serve it: class petrel by name or annotation, or no class (the
// default class decides; the nodes check that). An IngressClass of another
// name with Petrel's controller is not followed here: its Secrets stay
// unreadable to nodes until that is needed.
func IngressServedByPetrel(ing *networkingv1.Ingress) bool {
	if ing.Spec.IngressClassName != nil {
		return *ing.Spec.IngressClassName == ingressstatus.ClassName
	}
	if c, ok := ing.Annotations[ingressstatus.LegacyClassAnnotation]; ok {
		return c == ingressstatus.ClassName
	}
	return true
}

// related: a pod bound to node refers to the object.
func (a *Authorizer) related(node string, attrs rbac.Attributes) (bool, string) {
	pods, err := a.pods.ByIndex(PodsByNodeIndex, node)
	if err != nil {
		return false, err.Error()
	}
	for _, obj := range pods {
		pod := obj.(*corev1.Pod)
		if attrs.Resource != "persistentvolumes" && pod.Namespace != attrs.Namespace {
			continue
		}
		if a.refers(pod, attrs) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("no relationship found between node %q and this object", node)
}

func (a *Authorizer) refers(pod *corev1.Pod, attrs rbac.Attributes) bool {
	switch attrs.Resource {
	case "pods":
		return pod.Name == attrs.Name
	case "secrets":
		return visitNames(pod, secretRefs, attrs.Name)
	case "configmaps":
		return visitNames(pod, configMapRefs, attrs.Name)
	case "persistentvolumeclaims":
		return visitNames(pod, claimRefs, attrs.Name)
	case "serviceaccounts":
		return pod.Spec.ServiceAccountName == attrs.Name || (pod.Spec.ServiceAccountName == "" && attrs.Name == "default")
	case "persistentvolumes":
		found := false
		visitRefs(pod, func(kind refKind, claim string) bool {
			if kind != claimRefs || a.pvcs == nil {
				return true
			}
			if pvc, err := a.pvcs.PersistentVolumeClaims(pod.Namespace).Get(claim); err == nil && pvc.Spec.VolumeName == attrs.Name {
				found = true
				return false
			}
			return true
		})
		return found
	}
	return false
}

// authorizeLease: its own Lease in kube-node-lease (create: NodeRestriction
// checks the name, unknown here).
func authorizeLease(node string, attrs rbac.Attributes) (bool, string) {
	switch attrs.Verb {
	case "get", "create", "update", "patch", "delete":
	default:
		return false, "can only get, create, update, patch, or delete a node lease"
	}
	if attrs.Namespace != nodeLeaseNS {
		return false, fmt.Sprintf("can only access leases in the %q namespace", nodeLeaseNS)
	}
	if attrs.Verb != "create" && attrs.Name != node {
		return false, "can only access node lease with the same name as the requesting node"
	}
	return true, ""
}

// selectedName is the name a metadata.name=<name> field selector picks.
func selectedName(selector string) (string, bool) {
	sel, err := fields.ParseSelector(selector)
	if err != nil {
		return "", false
	}
	for _, r := range sel.Requirements() {
		if r.Field == "metadata.name" && (r.Operator == selection.Equals || r.Operator == selection.DoubleEquals) && r.Value != "" {
			return r.Value, true
		}
	}
	return "", false
}
