package builtin

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/petrel-project/petrel/controlplane/admission"
	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/registry/generic"
)

// NodeRestriction limits what a node writes to its own Node, Lease, mirror
// pods and the status of its pods, as Kubernetes' NodeRestriction does.
type NodeRestriction struct {
	reg   *generic.Registry
	nodes *nodeauth.Authorizer
}

// Name names the plugin.
func (p *NodeRestriction) Name() string { return "NodeRestriction" }

// Handles creates, updates and deletes.
func (p *NodeRestriction) Handles(op admission.Operation) bool {
	return op == admission.Create || op == admission.Update || op == admission.Delete
}

// Validate refuses a node's write outside what is its own.
func (p *NodeRestriction) Validate(ctx context.Context, a *admission.Attributes) error {
	if p.nodes == nil || !a.HasUser {
		return nil
	}
	node, ok := nodeauth.NodeName(a.User.Name, a.User.Groups)
	if !ok {
		return nil
	}
	var err error
	switch a.Operation {
	case admission.Create:
		err = nodeauth.AdmitCreate(node, a.Resource.Resource, a.Subresource, a.Object, p.boundPod(ctx, a))
	case admission.Update:
		err = nodeauth.AdmitUpdate(node, a.Resource.Resource, a.Subresource, a.Object, a.OldObject)
	case admission.Delete:
		err = nodeauth.AdmitDelete(node, a.Resource.Resource, a.OldObject)
	}
	if err != nil {
		return apierrors.NewForbidden(a.Resource.GroupResource(), a.Name, err)
	}
	return nil
}

// boundPod is the pod a token request is bound to, or the pod an
// eviction evicts, when it exists.
func (p *NodeRestriction) boundPod(ctx context.Context, a *admission.Attributes) *corev1.Pod {
	var name string
	switch {
	case a.Resource.Resource == "pods" && a.Subresource == "eviction":
		name = a.Name // the pod being evicted
	default:
		tr, ok := a.Object.(*authenticationv1.TokenRequest)
		if !ok || tr.Spec.BoundObjectRef == nil || tr.Spec.BoundObjectRef.Kind != "Pod" {
			return nil
		}
		name = tr.Spec.BoundObjectRef.Name
	}
	st := coreStore(p.reg, "pods")
	if st == nil {
		return nil
	}
	obj, err := st.Lookup(ctx, a.Namespace, name)
	if err != nil {
		return nil
	}
	return obj.(*corev1.Pod)
}
