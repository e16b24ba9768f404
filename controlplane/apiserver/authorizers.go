package apiserver

import (
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
