package apiserver

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/petrel-project/petrel/controlplane/nodeauth"
	"github.com/petrel-project/petrel/controlplane/rbac"
)

// allowed decides a request: for a node the Node authorizer first, then
// RBAC, as Kubernetes' --authorization-mode=Node,RBAC. The reason is the
// Node authorizer's when it has one and RBAC none.
func (s *Server) allowed(attrs rbac.Attributes) (bool, string) {
	var nodeReason string
	if s.cfg.NodeAuthorizer != nil {
		if node, ok := nodeauth.NodeName(attrs.User, attrs.Groups); ok {
			ok, reason := s.cfg.NodeAuthorizer.Authorize(node, attrs)
			if ok {
				return true, ""
			}
			nodeReason = reason
		}
	}
	ok, reason := s.cfg.Authorizer.Authorize(attrs)
	if !ok && reason == "" {
		reason = nodeReason
	}
	return ok, reason
}

// requestingNode is the node a request comes from, when NodeRestriction
// applies to it.
func (s *Server) requestingNode(ctx context.Context) (string, bool) {
	if s.cfg.NodeAuthorizer == nil {
		return "", false
	}
	u, ok := userFrom(ctx)
	if !ok {
		return "", false
	}
	return nodeauth.NodeName(u.Name, u.Groups)
}

// nodeForbidden is NodeRestriction's 403.
func nodeForbidden(req *request, name string, err error) error {
	return apierrors.NewForbidden(req.ep.res.GVR.GroupResource(), name, err)
}

// admitNodeCreate applies NodeRestriction to a create.
func (s *Server) admitNodeCreate(ctx context.Context, req *request, obj runtime.Object, pod *corev1.Pod) error {
	node, ok := s.requestingNode(ctx)
	if !ok {
		return nil
	}
	if err := nodeauth.AdmitCreate(node, req.ep.res.GVR.Resource, req.subresource, obj, pod); err != nil {
		return nodeForbidden(req, req.name, err)
	}
	return nil
}

// admitNodeUpdate applies NodeRestriction to an update or patch.
func (s *Server) admitNodeUpdate(ctx context.Context, req *request, obj, old runtime.Object) error {
	node, ok := s.requestingNode(ctx)
	if !ok {
		return nil
	}
	if err := nodeauth.AdmitUpdate(node, req.ep.res.GVR.Resource, req.subresource, obj, old); err != nil {
		return nodeForbidden(req, req.name, err)
	}
	return nil
}

// admitNodeDelete applies NodeRestriction to a delete.
func (s *Server) admitNodeDelete(ctx context.Context, req *request, old runtime.Object) error {
	node, ok := s.requestingNode(ctx)
	if !ok {
		return nil
	}
	if err := nodeauth.AdmitDelete(node, req.ep.res.GVR.Resource, old); err != nil {
		return nodeForbidden(req, req.name, err)
	}
	return nil
}
